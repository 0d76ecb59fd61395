"""Four `--shard K/4` processes at once vs one process at its best fixed concurrency,
against one OOM-prone upload service (the local server's overload model).

    .venv/bin/python benchmarks/shards.py [--files 1500] [--shards 4] [--out DIR]
                                          [--budget-s 170]

The server: `geti-bulk serve --discard --no-decode --latency-ms 20 --overload oom
--workers 4 --service-ms 20 --max-inflight 12 --restart-ms 2000`: 4 uploads processed
at once (20 ms each, so 200 files/s at most), 12 held, and a 13th OOM-kills it (every
upload in flight gets a 503, 2 s down). A fresh server for every measured run.

* baseline: one `geti-bulk upload --fixed-concurrency --concurrency C` for each C of
  the sweep (the best is kept: the number a user who guessed right would get);
* shards: N `geti-bulk upload --shard K/N` processes started together with the default
  (adaptive) concurrency; their files/s is all files over the wall time from the first
  start to the last exit.

Prints one table and the ratio shards ÷ best baseline, and writes `shards.json` to the
out folder. Its run time is bounded by `--budget-s` (default 170 s): runs that would
start after it are skipped and named. The machine's load (1-minute load average and the
CPU other processes used during each run) is printed next to each figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import data  # noqa: E402
from benchlib.server import LocalServer, geti_bulk_exe, make_token  # noqa: E402

HERE = Path(__file__).resolve().parent
SERVER = ("--overload", "oom", "--restart-ms", "2000", "--workers", "4", "--service-ms", "20")
MAX_INFLIGHT = 12
LATENCY_MS = 20
SWEEP = (4, 6, 8, 10)
PROJECT = "Vehicle detection"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--files", type=int, default=1500, help="tiny PNGs to upload (default 1500)")
    p.add_argument("--shards", type=int, default=4)
    p.add_argument("--sweep", type=int, nargs="+", default=list(SWEEP),
                   help="fixed concurrencies tried for the single process")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--budget-s", type=float, default=170.0,
                   help="no run starts after this many seconds (default 170)")
    return p.parse_args(argv)


def busy_cpu() -> float:
    t = psutil.cpu_times()
    return float(t.user + t.system + getattr(t, "nice", 0.0))


def start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    fh = log.open("wb")
    try:
        return subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, env=env)
    finally:
        fh.close()


def measure(label: str, commands: list[list[str]], workdir: Path, token_file: Path,
            files: int) -> dict[str, Any]:
    """Start a fresh server, run `commands` together, and read the server's counts."""
    srv = LocalServer(workdir / "srv", token_file, latency_ms=LATENCY_MS,
                      max_inflight=MAX_INFLIGHT, extra_args=SERVER).start()
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GETI_")}
        env["GETI_TOKEN_FILE"] = str(token_file)   # never on the command line
        env["GETI_HOST"] = srv.base_url
        env["GETI_PROJECT"] = PROJECT
        env["XDG_STATE_HOME"] = str(workdir / f"state-{_slug(label)}")
        _children_cpu_delta()
        cpu0, t0 = busy_cpu(), time.monotonic()
        srv.mark()
        procs = [start(c, env, workdir / f"{_slug(label)}-{i}.log")
                 for i, c in enumerate(commands)]
        codes = [p.wait(timeout=600) for p in procs]
        wall = time.monotonic() - t0
        total_cpu = busy_cpu() - cpu0
        clients_cpu = _children_cpu_delta()     # rusage of the waited-for clients
        stats = srv.stats()
        server_cpu = srv.cpu_since_start()
    finally:
        srv.stop()
    other = max(0.0, total_cpu - server_cpu - clients_cpu)
    return {"label": label, "wall_s": round(wall, 3),
            "files_per_s": round(files / wall, 1) if wall > 0 else 0.0,
            "exit_codes": codes, "stored": stats.get("media_total", -1),
            "duplicates": stats.get("duplicates", -1),
            "overload_503": stats.get("overload_503", 0), "restarts": stats.get("restarts", 0),
            "peak_inflight": stats.get("peak_inflight"),
            "clients_cpu_s": round(clients_cpu, 2), "server_cpu_s": round(server_cpu, 2),
            "other_cpu_cores": round(other / wall, 2) if wall > 0 else 0.0,
            "load1": round(os.getloadavg()[0], 2)}


_last_children = [0.0]


def _children_cpu_delta() -> float:
    r = os.times()
    now = r.children_user + r.children_system
    delta, _last_children[0] = now - _last_children[0], now
    return delta


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text).strip("-")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t_begin = time.monotonic()
    out = args.out or Path(tempfile.mkdtemp(prefix="geti-bulk-shards-"))
    out.mkdir(parents=True, exist_ok=True)
    dataset = data.tiny(out / "data", args.files)
    data.warm(dataset)
    _, token_file = make_token(out / "secrets")
    exe = geti_bulk_exe()
    base = [exe, "upload", str(dataset), "--labels", "none", "--progress", "none"]
    plan: list[tuple[str, list[list[str]]]] = []
    for c in args.sweep:
        plan.append((f"1 process, fixed c={c}",
                     [[*base, "--fixed-concurrency", "--concurrency", str(c),
                       "--journal", str(out / f"j-fixed{c}.sqlite")]]))
    n = args.shards
    from geti_bulk.config import DEFAULT_CEILING, shard_concurrency

    each = shard_concurrency(DEFAULT_CEILING, n)
    plan.append((f"{n} shards, adaptive, default ceiling ({each} each)",
                 [[*base, "--shard", f"{k}/{n}", "--journal", str(out / f"j-shard{k}.sqlite")]
                  for k in range(n)]))
    plan.append((f"{n} shards, adaptive, --concurrency 8 each",
                 [[*base, "--shard", f"{k}/{n}", "--concurrency", "8",
                   "--journal", str(out / f"j-shard{k}.sqlite")] for k in range(n)]))
    plan.append(("1 process, adaptive (default)",
                 [[*base, "--journal", str(out / "j-adaptive.sqlite")]]))
    results, skipped = [], []
    for label, commands in plan:
        if time.monotonic() - t_begin > args.budget_s:
            skipped.append(label)
            continue
        for j in out.glob("j-*.sqlite*"):
            j.unlink()
        rec = measure(label, commands, out, token_file, args.files)
        results.append(rec)
        print(f"  {label}: {rec['files_per_s']} files/s, stored {rec['stored']}, "
              f"dups {rec['duplicates']}, restarts {rec['restarts']}, 503s "
              f"{rec['overload_503']}, exit {rec['exit_codes']}, other CPU "
              f"{rec['other_cpu_cores']} cores, load {rec['load1']}", flush=True)
    fixed = [r for r in results if "fixed" in r["label"] and r["stored"] == args.files
             and r["duplicates"] == 0]
    shards = next((r for r in results if "default ceiling" in r["label"]), None)
    summary: dict[str, Any] = {"files": args.files, "server": ["geti-bulk", "serve", "--discard",
                               "--no-decode", "--latency-ms", str(LATENCY_MS), "--max-inflight",
                               str(MAX_INFLIGHT), *SERVER], "results": results,
                               "skipped": skipped, "elapsed_s": round(time.monotonic() - t_begin, 1)}
    print()
    print("| run | files/s | stored | duplicates | OOM restarts | 503s | clients' CPU s | "
          "server CPU s | other CPU (cores) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['label']} | {r['files_per_s']} | {r['stored']} | {r['duplicates']} | "
              f"{r['restarts']} | {r['overload_503']} | {r['clients_cpu_s']} | "
              f"{r['server_cpu_s']} | {r['other_cpu_cores']} |")
    if fixed and shards:
        best = max(fixed, key=lambda r: r["files_per_s"])
        ratio = shards["files_per_s"] / best["files_per_s"]
        summary.update(best_fixed=best["label"], ratio=round(ratio, 3))
        print()
        for r in results:
            if "shards" in r["label"]:
                print(f"{r['label']} ÷ best {best['label']}: "
                      f"{r['files_per_s'] / best['files_per_s']:.1%} (goal ≥ 90 %, with 0 "
                      f"duplicates and 0 OOM restarts: {r['duplicates']} and {r['restarts']})")
    if skipped:
        print(f"skipped (over the {args.budget_s:.0f} s budget): {', '.join(skipped)}")
    (out / "shards.json").write_text(json.dumps(summary, indent=2))
    print(f"results: {out / 'shards.json'} ({summary['elapsed_s']} s)")
    ok = shards is not None and shards["stored"] == args.files and shards["duplicates"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
