"""Start-up: from spawning ``geti-bulk upload`` to the first upload's headers at the server.

    .venv/bin/python benchmarks/startup.py [--runs 10] [--latency 0 50] [--before REV]

Each run starts a fresh local server (``geti-bulk serve``, with ``--latency-ms`` for the
WAN rows), spawns one contender on a folder of 8 small JPEGs (warm in the page cache), and
reads the server's ``/_admin/stats``: ``first_upload_at`` (the headers of the first
``POST …/media/images`` arrived) and ``first_request_at`` (the first API request), both on
the server's wall clock, minus the harness's ``time.time()`` just before the spawn. The
figures are thus what the matrix's ``startup_ms`` records, split in two:

- *to first request*: interpreter start, imports, configuration, until discovery begins;
- *discovery*: from the first request to the first upload (round trips and whatever the
  client does between them).

Contenders, alternated run by run so that a noisy neighbour hits them alike:

- ``geti-bulk@REV`` for ``--before REV`` (default: none) and ``HEAD``: each a ``git archive``
  export of ``geti_bulk/``, byte-compiled once, on ``PYTHONPATH`` (a commit, not a tree
  someone edits mid-run); ``--working-tree`` measures the editable install instead of HEAD;
- ``bare aiohttp``: ``contenders/bare_aiohttp.py``, given the upload URL, so it does no
  discovery at all: the floor of Python + aiohttp + one connection;
- ``bare aiohttp, lean import``: the same after ``geti_bulk/lean_import.py`` (aiohttp
  imported as the CLI imports it, without the CAs of its unused default contexts).

Besides wall time, *CPU to upload* is the CPU time the contender had used (all its
threads, from ``/proc/<pid>/task/*/schedstat`` sampled every ~2 ms) when the server saw
its first upload: on a machine shared with other work it is the steadier figure.

Medians (and min, max) per contender and latency are printed and written to
``results/startup.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from benchlib import data  # noqa: E402
from benchlib.contenders import CONTENDERS, RunContext, _geti_bulk  # noqa: E402
from benchlib.server import LocalServer, make_token  # noqa: E402
from benchlib.snapshot import export_rev  # noqa: E402

FILES = 8
# bare_aiohttp.py after geti_bulk/lean_import.py (loaded alone, not the package): the floor
# of Python + aiohttp imported as the CLI imports it + one upload
LEAN_BARE = """
import importlib.util, runpy, sys
spec = importlib.util.spec_from_file_location("lean_import", sys.argv[1].replace(
    "benchmarks/contenders/bare_aiohttp.py", "geti_bulk/lean_import.py"))
mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod); mod.import_aiohttp()
sys.argv = sys.argv[1:]; sys.path.insert(0, sys.argv[0].rsplit("/", 1)[0])
runpy.run_path(sys.argv[0], run_name="__main__")
"""


class CpuSampler(threading.Thread):
    """CPU time of a process (all its threads, ns resolution from ``schedstat``) every
    ~2 ms, so the CPU it had used when the server saw its first upload can be read back:
    a figure the other agents' load on a shared machine does not inflate as it inflates
    wall time."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[tuple[float, float]] = []
        self.dead: dict[str, float] = {}   # threads that ended: their last figure

    def _cpu(self) -> float | None:
        total = 0.0
        seen: dict[str, float] = {}
        try:
            tasks = os.listdir(f"/proc/{self.pid}/task")
        except OSError:
            return None
        for tid in tasks:
            try:
                with open(f"/proc/{self.pid}/task/{tid}/schedstat") as f:
                    seen[tid] = int(f.read().split()[0]) / 1e9
            except (OSError, ValueError, IndexError):
                continue
        for tid, cpu in list(self.last.items()):
            if tid not in seen:
                self.dead[tid] = cpu
        self.last = seen
        total = sum(seen.values()) + sum(self.dead.values())
        return total

    def run(self) -> None:
        self.last: dict[str, float] = {}
        while True:
            now = time.time()
            cpu = self._cpu()
            if cpu is None:
                return
            self.samples.append((now, cpu))
            time.sleep(0.002)

    def cpu_before(self, when: float) -> float:
        before = [cpu for t, cpu in self.samples if t <= when]
        return before[-1] if before else float("nan")


def one_run(name: str, source: Path | None, latency: int, folder: Path, token: str,
            token_file: Path, run_dir: Path, server_source: Path | None) -> dict[str, Any]:
    run_dir.mkdir(parents=True, exist_ok=True)
    journal = run_dir / "journal.sqlite"
    for p in run_dir.glob("journal.sqlite*"):
        p.unlink()
    server = LocalServer(run_dir / "server", token_file, latency_ms=latency,
                         source=server_source)
    server.start()
    try:
        ctx = RunContext(server=server, folder=folder, run_dir=run_dir, token=token, tls=None,
                         source=source)
        bare = [str(HERE / "contenders" / "bare_aiohttp.py"), "--url", server.upload_url(),
                "--concurrency", "8", str(folder)]
        if name == "bare aiohttp":
            argv = [sys.executable, *bare]
        elif name == "bare aiohttp, lean import":
            argv = [sys.executable, "-c", LEAN_BARE, *bare]
        else:
            argv = [*_geti_bulk()(ctx), "--journal", str(journal)]
        env = CONTENDERS["geti-bulk"].env(ctx)
        spawned = time.time()
        proc = subprocess.Popen(argv, env=env, cwd=run_dir, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        samples = CpuSampler(proc.pid)
        samples.start()
        _, err = proc.communicate(timeout=120)
        samples.join()
        stats = server.stats()
    finally:
        server.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"{name} exited {proc.returncode}: {err.decode()[-600:]}")
    first, req = stats.get("first_upload_at"), stats.get("first_request_at")
    return {"contender": name, "latency_ms": latency,
            "startup_ms": (first - spawned) * 1000,
            "cpu_to_upload_ms": samples.cpu_before(first) * 1000,
            "to_first_request_ms": (req - spawned) * 1000,
            "discovery_ms": (first - req) * 1000,
            "requests": stats.get("requests"), "stored": stats.get("media_total")}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--latency", type=int, nargs="+", default=[0, 50])
    p.add_argument("--before", help="also measure this revision (e.g. a commit before a change)")
    p.add_argument("--working-tree", action="store_true",
                   help="measure the working tree (the editable install) instead of HEAD")
    p.add_argument("--no-bare", action="store_true", help="leave out the bare aiohttp floor")
    p.add_argument("--out", type=Path, default=HERE / "results" / "startup")
    a = p.parse_args()
    a.out = a.out.resolve()     # the server runs in its own folder
    a.out.mkdir(parents=True, exist_ok=True)
    folder = data.small(HERE / "results" / "data", FILES)
    data.warm(folder)
    token, token_file = make_token(a.out / "secrets")
    contenders: list[tuple[str, Path | None]] = []
    if a.before:
        contenders.append((f"geti-bulk@{a.before}", export_rev(HERE.parent, a.before, a.out / "src")))
    head = None if a.working_tree else export_rev(HERE.parent, "HEAD", a.out / "src")
    contenders.append(("geti-bulk@" + ("working tree" if a.working_tree else "HEAD"), head))
    if not a.no_bare:
        contenders += [("bare aiohttp", None), ("bare aiohttp, lean import", None)]
    server_source = contenders[0][1]     # one server build for every run
    records: list[dict[str, Any]] = []
    for latency in a.latency:
        for i in range(a.runs):
            order = contenders if i % 2 == 0 else contenders[::-1]
            for name, source in order:
                rec = one_run(name, source, latency, folder, token, token_file,
                              a.out / "run", server_source)
                records.append(rec)
                print(f"+{latency} ms {name}: {rec['startup_ms']:.0f} ms, CPU "
                      f"{rec['cpu_to_upload_ms']:.0f} ms "
                      f"(first request {rec['to_first_request_ms']:.0f}, discovery "
                      f"{rec['discovery_ms']:.0f}, {rec['requests']} requests)", flush=True)
    summary = []
    for latency in a.latency:
        for name, _ in contenders:
            rs = [r for r in records if r["contender"] == name and r["latency_ms"] == latency]
            row = {"contender": name, "latency_ms": latency, "runs": len(rs)}
            for k in ("startup_ms", "to_first_request_ms", "discovery_ms", "cpu_to_upload_ms"):
                vals = [r[k] for r in rs]
                row[k] = {"median": statistics.median(vals), "min": min(vals), "max": max(vals)}
            summary.append(row)
    print(f"\n{'contender':30} {'latency':>7} {'start-up':>22} {'to 1st request':>15} "
          f"{'discovery':>10} {'CPU to upload':>14}")
    for row in summary:
        s = row["startup_ms"]
        print(f"{row['contender']:30} {'+' + str(row['latency_ms']) + ' ms':>7} "
              f"{s['median']:8.0f} ({s['min']:.0f}-{s['max']:.0f}) ms "
              f"{row['to_first_request_ms']['median']:12.0f} ms "
              f"{row['discovery_ms']['median']:7.0f} ms "
              f"{row['cpu_to_upload_ms']['median']:11.0f} ms")
    (a.out.parent / "startup.json").write_text(json.dumps(
        {"summary": summary, "runs": records, "load": os.getloadavg()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
