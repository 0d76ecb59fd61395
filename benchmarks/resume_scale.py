"""A million files: a resume with nothing to do, and the first upload of a fresh run.

    python benchmarks/resume_scale.py [--files N] [--base DIR] [--repeats R] [--no-write]

Builds once under DIR (default /tmp/geti-bulk-resume-scale, reused when present) a tree
of N tiny PNGs in folders of 1,000 (hard links to 1,000 distinct files,
``benchlib.data.resume_tree``) and a journal that holds every one of them as uploaded
(filled directly through the journal module by ``benchlib.resume.build_journal``, keyed
by the scanner's own walk, rather than by uploading N files for real). Then, against
``geti-bulk serve --discard --no-decode`` started as its own process, with the real CLI:

(i)  resume with nothing to do: ``geti-bulk upload TREE --journal COPY --labels none
     --progress none`` on a fresh copy of that journal; wall time, CPU seconds and peak
     RSS (VmHWM of the process tree, ``benchlib.measure.run_measured``), and a check that
     the server received no media and the report is one summary row;
(ii) time to the first upload on a fresh journal over the same tree: the same command
     with an empty journal and ``--progress json``; seconds from spawn to the first
     ``file_started`` and ``bytes_sent`` events (then the run is interrupted);
(iii) with ``--growth S``: that fresh upload left running for S seconds, the uploader's
     VmRSS sampled every second against the ``file_done`` events so far; the growth after
     the first quarter of the window, per file uploaded (memory that grows per file stored
     would show here: a set of every media id once cost ~150 bytes a file).

Prints the figures (and the machine's load average, since it may be shared) and, unless
``--no-write``, replaces the "Resume at scale" section of benchmarks/RESULTS.md. Not part
of the test suite nor of ``run.py`` (whose ``--quick`` resume case stays at 5,000 rows).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from benchlib.data import resume_tree  # noqa: E402
from benchlib.measure import run_measured  # noqa: E402
from benchlib.resume import build_journal, fresh_copy  # noqa: E402
from benchlib.server import LocalServer, geti_bulk_exe, make_token  # noqa: E402

PROJECT = "Vehicle detection"
SECTION = "## Resume at scale (benchmarks/resume_scale.py)"


def command(server: LocalServer, tree: Path, journal: Path, report: Path,
            progress: str) -> list[str]:
    return [geti_bulk_exe(), "upload", str(tree), "--host", server.base_url, "--project",
            PROJECT, "--labels", "none", "--journal", str(journal), "--report", str(report),
            "--progress", progress]


def resume(server: LocalServer, tree: Path, journal: Path, run_dir: Path,
           env: dict[str, str]) -> dict[str, Any]:
    copy = fresh_copy(journal, run_dir)
    report = run_dir / "report.jsonl"
    before = server.stats()["media_total"]
    m = run_measured(command(server, tree, copy, report, "none"), env, run_dir / "logs",
                     timeout=600)
    rows = report.read_text().splitlines() if report.is_file() else []
    return {"exit": m.exit_code, "wall_s": round(m.wall_s, 2), "cpu_s": round(m.cpu_s, 2),
            "peak_rss_mib": round(m.peak_rss_mb, 1), "report_rows": len(rows),
            "settled": json.loads(rows[-1]).get("files") if rows else None,
            "stored_by_the_run": server.stats()["media_total"] - before,
            "stderr": m.stderr_tail[-500:]}


def first_upload(server: LocalServer, tree: Path, run_dir: Path,
                 env: dict[str, str]) -> dict[str, Any]:
    """Seconds from spawn to the first file_started / bytes_sent event, fresh journal."""
    run_dir.mkdir(parents=True, exist_ok=True)
    journal = run_dir / "fresh.sqlite"
    for p in run_dir.glob("fresh.sqlite*"):
        p.unlink()
    argv = command(server, tree, journal, run_dir / "report-fresh.jsonl", "json")
    first: dict[str, float] = {}
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            name = json.loads(line).get("event", "")
            first.setdefault(name, time.perf_counter() - t0)
            if "bytes_sent" in first and "file_started" in first:
                break
            if time.perf_counter() - t0 > 120:
                break
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stdout.close()
    return {k: round(v, 3) for k, v in first.items()
            if k in ("run_started", "file_queued", "file_started", "bytes_sent")}


def growth(server: LocalServer, tree: Path, run_dir: Path, env: dict[str, str],
           seconds: float) -> dict[str, Any]:
    """RSS of a fresh upload over `seconds`, per file uploaded after the first quarter."""
    run_dir.mkdir(parents=True, exist_ok=True)
    argv = command(server, tree, run_dir / "grow.sqlite", run_dir / "report-grow.jsonl", "json")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    assert proc.stdout is not None
    done = [0]

    def count() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            done[0] += b'"file_done"' in line

    reader = threading.Thread(target=count, daemon=True)
    reader.start()
    samples: list[tuple[int, int]] = []       # (files done, VmRSS KiB)
    t0 = time.perf_counter()
    try:
        while time.perf_counter() - t0 < seconds and proc.poll() is None:
            time.sleep(1)
            samples.append((done[0], _vm_rss_kib(proc.pid)))
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(60)
        reader.join(10)
    (n0, r0), (n1, r1) = samples[len(samples) // 4], samples[-1]
    return {"seconds": seconds, "files": n1, "rss_mib_from": round(r0 / 1024, 1),
            "rss_mib_to": round(r1 / 1024, 1),
            "bytes_per_file": round((r1 - r0) * 1024 / max(1, n1 - n0), 1)}


def _vm_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", "rb") as fh:
        for line in fh:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1])
    return 0


def markdown(r: dict[str, Any]) -> str:
    runs = r["resume"]
    best = min(runs, key=lambda x: x["wall_s"])
    lines = [
        SECTION, "",
        f"{r['files']:,} files (tiny PNGs in folders of 1,000), measured {r['when']} with "
        f"`python benchmarks/resume_scale.py`, which runs `{r['command']}`; load average before the runs {r['load_before']}, after "
        f"{r['load_after']} on {os.cpu_count()} cores (the machine may be shared).", "",
        "| run | wall s | CPU s | peak RSS MiB | report rows | stored by the run | exit |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, x in enumerate(runs, 1):
        lines.append(f"| resume {i}, nothing to do | {x['wall_s']} | {x['cpu_s']} | "
                     f"{x['peak_rss_mib']} | {x['report_rows']} | {x['stored_by_the_run']} | "
                     f"{x['exit']} |")
    f = r["first_upload"]
    lines += ["",
              f"Resume with nothing to do (best of {len(runs)}): {best['wall_s']} s wall, "
              f"{best['cpu_s']} s CPU, {best['peak_rss_mib']} MiB peak RSS; the report is "
              f"{best['report_rows']} row ({best['settled']:,} files settled by the journal).",
              f"Fresh journal over the same tree: first `file_started` {f.get('file_started')} s "
              f"and first `bytes_sent` {f.get('bytes_sent')} s after spawn (`run_started` at "
              f"{f.get('run_started')} s).", ""]
    g = r.get("growth")
    if g:
        lines[-1:] = [f"Fresh upload left running {g['seconds']:.0f} s: {g['files']:,} files "
                      f"uploaded, uploader RSS {g['rss_mib_from']} → {g['rss_mib_to']} MiB "
                      f"from the first quarter of the window on, {g['bytes_per_file']} bytes "
                      "per file uploaded.", ""]
    return "\n".join(lines)


def write_results(text: str) -> None:
    path = HERE / "RESULTS.md"
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    start = old.find(SECTION)
    if start >= 0:
        end = old.find("\n## ", start + len(SECTION))
        old = old[:start] + (old[end + 1:] if end >= 0 else "")
    path.write_text(old.rstrip("\n") + "\n\n" + text, encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=1_000_000)
    ap.add_argument("--base", type=Path, default=Path("/tmp/geti-bulk-resume-scale"))
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md")
    ap.add_argument("--growth", type=float, default=0, metavar="S",
                    help="also upload for S seconds and report RSS growth per file")
    a = ap.parse_args()
    a.base.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    tree = resume_tree(a.base, a.files)
    journal = build_journal(tree, a.base / f"journal-{a.files}.sqlite")
    print(f"# tree and journal ready in {time.perf_counter() - t:.1f} s: {tree}, {journal}",
          file=sys.stderr, flush=True)
    run_dir = a.base / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    token, token_file = make_token(run_dir / "secrets")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GETI_")}
    env.update(GETI_TOKEN=token, XDG_STATE_HOME=str(run_dir / "xdg"))
    result: dict[str, Any] = {"files": a.files, "when": time.strftime("%Y-%m-%d %H:%M UTC",
                                                                      time.gmtime()),
                              "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg())}
    with LocalServer(run_dir / "server", token_file) as server:
        argv = command(server, tree, Path("JOURNAL"), Path("REPORT"), "none")[1:]
        result["command"] = "geti-bulk " + " ".join(
            shlex.quote(x) for x in argv).replace(server.base_url, "URL")
        result["resume"] = [resume(server, tree, journal, run_dir / f"resume-{i}", env)
                            for i in range(a.repeats)]
        result["first_upload"] = first_upload(server, tree, run_dir / "fresh", env)
        if a.growth:
            result["growth"] = growth(server, tree, run_dir / "growth", env, a.growth)
    result["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    text = markdown(result)
    print(text)
    print(json.dumps(result))
    if not a.no_write:
        write_results(text)


if __name__ == "__main__":
    main()
