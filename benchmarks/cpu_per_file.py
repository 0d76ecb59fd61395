"""Client CPU per file for small files at 0 ms: geti-bulk against bare aiohttp.

    python benchmarks/cpu_per_file.py [--files 3000] [--repeats 3] [--profile OUT.prof]
        [--contenders "defaults" "fixed 32" "bare c=64" "defaults rich" "base fixed 32"]
        [--base DIR]    # 'base …' contenders run a `git archive` export of another commit

Every run is its own client process against a fresh local server (``geti-bulk serve
--discard --no-decode``, its own process); the contenders alternate, run by run. Per
run: the client's user + system CPU (``wait4``) per file, files/s (stored files / the
client's wall time, start-up included) and the server's CPU per file. Journal on,
report on, ``--progress none`` unless the contender says ``rich`` (the rich display
under a pseudo-terminal). Prints the medians.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import data  # noqa: E402
from benchlib.contenders import CONTENDERS, RunContext, script_available  # noqa: E402
from benchlib.measure import run_measured  # noqa: E402
from benchlib.server import TARGET_PROJECT, LocalServer, geti_bulk_exe, make_token  # noqa: E402

HERE = Path(__file__).resolve().parent


def argv_for(name: str, ctx: RunContext, run_dir: Path, profile: str | None) -> list[str]:
    if name.startswith("bare c="):
        argv = CONTENDERS["bare_aiohttp"].argv(ctx)
        if profile and profile.endswith(".prof"):
            argv = [argv[0], "-m", "cProfile", "-o", profile, *argv[1:]]
        return [*argv[:-1], "--concurrency", name.split("=")[1], argv[-1]]
    exe = [geti_bulk_exe()]
    if profile and profile.endswith(".prof"):
        exe = [sys.executable, "-m", "cProfile", "-o", profile, geti_bulk_exe()]
    elif profile:   # pyinstrument's text tree (pip install pyinstrument)
        exe = [sys.executable, "-m", "pyinstrument", "-i", "0.0005", "-r", "text",
               "--show-all", "-o", profile, geti_bulk_exe()]
    cmd = [*exe, "upload", str(ctx.folder), "--project", TARGET_PROJECT,
           "--host", ctx.server.base_url, "--labels", "none",
           "--journal", str(run_dir / "journal.sqlite"), "--report", str(run_dir / "report.jsonl")]
    words = name.split()
    if "rich" in words:
        cmd += ["--progress", "rich"]
    else:
        cmd += ["--progress", "none"]
    if "no-journal" in words:   # to see the journal's share
        cmd = [c for c in cmd if c != str(run_dir / "journal.sqlite")]
        cmd.remove("--journal")
        cmd.append("--no-journal")
    if "fixed" in words:
        cmd += ["--fixed-concurrency", "--concurrency", words[words.index("fixed") + 1]]
    if "rich" in words and script_available():
        return ["script", "-qefc", shlex.join(cmd), "/dev/null"]
    return cmd


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--files", type=int, default=3000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--contenders", nargs="+", default=["defaults", "fixed 32", "bare c=64"])
    p.add_argument("--profile", help="profile the contender into this file: .prof cProfile, else pyinstrument text\n(geti-bulk only)")
    p.add_argument("--data", type=Path, default=HERE / "results" / "data")
    p.add_argument("--base", type=Path, help="a geti_bulk export (git archive) that the "
                   "contenders named 'base …' run instead of the working tree")
    a = p.parse_args()
    folder = data.small(a.data.resolve(), a.files)
    data.warm(folder)
    work = Path(tempfile.mkdtemp(prefix="cpu-per-file-"))
    token, token_file = make_token(work / "secrets")
    results: dict[str, list[tuple[float, float, float]]] = {c: [] for c in a.contenders}
    for rep in range(a.repeats):
        order = a.contenders if rep % 2 == 0 else a.contenders[::-1]
        for name in order:
            run_dir = work / f"{name.replace(' ', '-').replace('=', '')}-{rep}"
            run_dir.mkdir(parents=True)
            server = LocalServer(run_dir / "server", token_file)
            server.start()
            try:
                source = a.base if "base" in name.split() else None
                ctx = RunContext(server=server, folder=folder, run_dir=run_dir, token=token,
                                 tls=None, source=source)
                env = CONTENDERS["geti-bulk"].env(ctx)
                server.mark()
                m = run_measured(argv_for(name, ctx, run_dir, a.profile), env, run_dir,
                                 timeout=300, cwd=run_dir)
                stats = server.stats()
                server_cpu = server.cpu_since_start()
            finally:
                server.stop()
            stored = int(stats.get("media_total", 0))
            if m.exit_code != 0 or stored != a.files:
                print(f"{name}: exit {m.exit_code}, stored {stored}: {m.stderr_tail[-500:]}")
            n = max(stored, 1)
            row = (m.cpu_s / n * 1000, stored / m.wall_s, server_cpu / n * 1000)
            results[name].append(row)
            print(f"{name:>16}  client {row[0]:.3f} ms/file (user {m.user_s / n * 1000:.3f})  "
                  f"{row[1]:6.1f} files/s  server {row[2]:.3f} ms/file", flush=True)
            time.sleep(0.2)
    print("medians:")
    for name, rows in results.items():
        cpu = statistics.median(r[0] for r in rows)
        rate = statistics.median(r[1] for r in rows)
        srv = statistics.median(r[2] for r in rows)
        print(f"{name:>16}  client {cpu:.3f} ms/file  {rate:6.1f} files/s  server {srv:.3f} "
              f"ms/file  (runs: {', '.join(f'{r[0]:.2f}' for r in rows)})")
    if os.environ.get("KEEP") is None:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
