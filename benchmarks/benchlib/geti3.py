"""The Geti 3 scenario: a pre-labelled COCO detection dataset into the local Geti 3
(``geti-bulk serve --dialect geti3``, HTTPS with its self-signed certificate, no token)
with its ``locked`` model on: beyond ``LOCKED_WRITERS`` writes in flight (media uploads
and annotation POSTs), a write waits ``LOCKED_MS`` and then answers a plain 500 with
nothing committed, SQLite's "database is locked" (GETI3_API.md §5, issue #7614; the
real wait is 30 s, scaled down here so a run takes seconds). Every write request also
waits ``LATENCY_MS`` (one commit).

geti-bulk's defaults against fixed concurrency 4, 10 and 32 (``--fixed-concurrency
--concurrency N``) and the adaptive limiter under a ceiling of 32. Each run: images/s
(media and annotation together), duplicates (the server's count of same bytes stored
twice, must be 0), the 500s the lock model answered, and the files left failed because
of them (``locked left``, must be 0), then ``geti-bulk verify``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from .data import coco_images, listing
from .measure import run_measured
from .server import geti_bulk_exe

PROJECT = "Vehicle detection"
LOCKED_WRITERS = 10      # the local server's default (the UI caps itself at 10, PR #7615)
# the wait before the 500 (real Geti 3: 30 s); GETI3_BENCH_LOCKED_MS=30000 for the real one
LOCKED_MS = int(os.environ.get("GETI3_BENCH_LOCKED_MS", "2000"))
LATENCY_MS = 100         # every request waits this long (a commit with its fsync, a thumbnail)

CONTENDERS: dict[str, tuple[str, ...]] = {
    "geti-bulk": (),
    "geti-bulk fixed c=4": ("--fixed-concurrency", "--concurrency", "4"),
    "geti-bulk fixed c=10": ("--fixed-concurrency", "--concurrency", "10"),
    "geti-bulk fixed c=32": ("--fixed-concurrency", "--concurrency", "32"),
    "geti-bulk c=32 (adaptive)": ("--concurrency", "32"),
}


class Geti3Server:
    """``geti-bulk serve --dialect geti3`` as a child process, fresh per run."""

    def __init__(self, data_dir: Path, source: Path | None) -> None:
        self.data_dir = data_dir
        self.source = source
        self.proc: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}

    def start(self) -> Geti3Server:
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.data_dir.mkdir(parents=True)
        env = {k: v for k, v in os.environ.items() if k not in ("GETI_TOKEN", "PYTHONPATH")}
        if self.source is not None:
            env["PYTHONPATH"] = str(self.source)
        argv = [geti_bulk_exe(), "serve", "--dialect", "geti3", "--host", "127.0.0.1",
                "--port", "0", "--data-dir", str(self.data_dir), "--seed", "0",
                "--locked-writers", str(LOCKED_WRITERS), "--locked-ms", str(LOCKED_MS),
                "--latency-ms", str(LATENCY_MS)]
        with open(self.data_dir / "server.log", "wb") as log:
            self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, env=env,
                                         cwd=self.data_dir)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(10)
            raise RuntimeError("the Geti 3 server did not start: " + (
                self.data_dir / "server.log").read_text(errors="replace")[-2000:])
        self.info = json.loads(line)
        return self

    @property
    def base_url(self) -> str:
        return str(self.info["base_url"])

    @property
    def cert(self) -> str:
        return str(self.info["cert_path"])

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stats(self) -> dict[str, Any]:
        req = urllib.request.Request(self.base_url + "/_admin/stats",
                                     headers={"x-admin-token": self.info["admin_token"]})
        ctx = ssl.create_default_context(cafile=self.cert)
        with urllib.request.urlopen(req, timeout=30, context=ctx) as resp:
            data: dict[str, Any] = json.loads(resp.read())
        data.pop("duplicate_groups", None)
        return data

    def stop(self, keep_log: Path | None = None) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None
        if keep_log is not None and (self.data_dir / "server.log").is_file():
            shutil.copyfile(self.data_dir / "server.log", keep_log)
        shutil.rmtree(self.data_dir, ignore_errors=True)


def _env(run_dir: Path, source: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")
           and k not in ("GETI_TOKEN", "PYTHONPATH", "GETI_CA_BUNDLE", "SSL_CERT_FILE")}
    env.update(NO_PROXY="127.0.0.1,localhost", XDG_STATE_HOME=str(run_dir / "state"),
               PYTHONDONTWRITEBYTECODE="1")
    if source is not None:
        env["PYTHONPATH"] = str(source)
    return env


def _report_counts(path: Path) -> dict[str, int]:
    """geti-bulk's report: files failed, and those failed because of the lock's 500s."""
    out = {"failed": 0, "locked_left": 0, "adopted": 0}
    if not path.is_file():
        return {"failed": -1, "locked_left": -1, "adopted": -1}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if row.get("status") == "failed":
            out["failed"] += 1
            reason = str(row.get("reason", ""))
            if "500" in reason or "locked" in reason:
                out["locked_left"] += 1
        elif row.get("adopted"):
            out["adopted"] += 1
    return out


def _verify(server: Geti3Server, folder: Path, run_dir: Path, env: dict[str, str],
            timeout: float) -> dict[str, int]:
    report = run_dir / "verify.jsonl"
    argv = [geti_bulk_exe(), "verify", str(folder), "--project", PROJECT, "--host",
            server.base_url, "--ca-bundle", server.cert, "--report", str(report)]
    with open(run_dir / "verify.log", "wb") as log:
        done = subprocess.run(argv, env=env, cwd=run_dir, stdout=log, stderr=log,
                              stdin=subprocess.DEVNULL, timeout=timeout)
    counts = {"exit_code": done.returncode, "ok": 0, "other": 0}
    rows = report.read_text().splitlines() if report.is_file() else []
    for line in rows:
        counts["ok" if json.loads(line).get("status") == "ok" else "other"] += 1
    return counts


def run_one(out: Path, folder: Path, name: str, rep: int, source: Path | None,
            timeout: float) -> dict[str, Any]:
    run_dir = out / "runs" / "geti3-locked" / f"{name.replace(' ', '-').replace('=', '')}-{rep + 1}"
    run_dir.mkdir(parents=True, exist_ok=True)
    images = len(coco_images(folder))
    _, size = listing(folder)
    server = Geti3Server(out / "geti3-server-data", source).start()
    try:
        env = _env(run_dir, source)
        argv = [geti_bulk_exe(), "upload", str(folder), "--host", server.base_url,
                "--project", PROJECT, "--ca-bundle", server.cert, "--progress", "none",
                "--journal", str(run_dir / "journal.sqlite"),
                "--report", str(run_dir / "report.jsonl"), *CONTENDERS[name]]
        (run_dir / "argv.json").write_text(json.dumps(argv))
        m = run_measured(argv, env, run_dir, timeout=timeout, cwd=run_dir)
        if server.alive():
            stats = server.stats()
            checked = _verify(server, folder, run_dir, env, timeout)
        else:
            stats = {"media_total": -1, "duplicates": -1, "locked_errors": -1,
                     "annotated_media": -1, "peak_writers": -1}
            checked = {"exit_code": -1, "ok": 0, "other": 0}
    finally:
        server.stop(keep_log=run_dir / "server.log")
    counts = _report_counts(run_dir / "report.jsonl")
    rec = {"case": "geti3 locked", "contender": name, "repeat": rep + 1, "files": images,
           "bytes": size, "wall_s": m.wall_s, "files_per_s": images / m.wall_s,
           "peak_rss_mb": m.peak_rss_mb, "cpu_s": m.cpu_s, "exit_code": m.exit_code,
           "timed_out": m.timed_out, "stored": stats["media_total"],
           "duplicates": stats["duplicates"], "annotated": stats["annotated_media"],
           "locked_500s": stats["locked_errors"], "peak_writers": stats["peak_writers"],
           **counts, "verify": checked}
    if m.exit_code != 0:
        rec["stderr_tail"] = m.stderr_tail[-600:]
    print(f"[geti3 locked] {name} #{rep + 1}: {images:,} images {m.wall_s:.2f} s "
          f"{rec['files_per_s']:,.1f} images/s stored {rec['stored']} dups "
          f"{rec['duplicates']} annotated {rec['annotated']} locked 500s "
          f"{rec['locked_500s']} locked left {rec['locked_left']} failed {rec['failed']} "
          f"peak writers {rec['peak_writers']} verify ok {checked['ok']}/{images} exit "
          f"{m.exit_code}" + (" TIMEOUT" if m.timed_out else ""), flush=True)
    return rec


def run_case(out: Path, folder: Path, repeats: int, source: Path | None, timeout: float,
             names: tuple[str, ...] = tuple(CONTENDERS)) -> list[dict[str, Any]]:
    records = []
    for rep in range(repeats):
        for name in (names if rep % 2 == 0 else names[::-1]):
            records.append(run_one(out, folder, name, rep, source, timeout))
            time.sleep(0.2)
    return records


def _median(values: list[float]) -> float:
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def _span(values: list[Any]) -> str:
    v = sorted(values)
    return str(v[0]) if v[0] == v[-1] else f"{v[0]}–{v[-1]}"


def markdown(records: list[dict[str, Any]]) -> str:
    if not records:
        return ""
    by: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by.setdefault(r["contender"], []).append(r)
    ref = _median([r["files_per_s"] for r in by.get("geti-bulk", records)])
    lines = [f"### Geti 3, locked beyond {LOCKED_WRITERS} writers [https]", "",
             f"Local Geti 3 (`geti-bulk serve --dialect geti3 --locked-writers "
             f"{LOCKED_WRITERS} --locked-ms {LOCKED_MS} --latency-ms {LATENCY_MS}`, HTTPS, "
             "self-signed, no token), a fresh server per run; a pre-labelled COCO detection "
             "dataset, so every image is two writes (media, then its boxes). `locked 500s`: "
             "the server's \"database is locked\" answers; `locked left`: files that ended "
             "failed because of them; `dups`: same bytes stored twice. The last column is "
             "the defaults' images/s ÷ this row's.", "",
             "| contender | images | runs | wall s | images/s | peak RSS MB | stored | dups "
             "| annotated | locked 500s | locked left | failed | peak writers | verify ok "
             "| exit | geti-bulk × |", "|" + "---|" * 16]
    for name, runs in by.items():
        rate = _median([r["files_per_s"] for r in runs])
        ratio = "—" if name == "geti-bulk" or rate <= 0 else f"{ref / rate:.2f}×"
        lines.append("| " + " | ".join([
            f"**{name}**" if name == "geti-bulk" else name, f"{runs[0]['files']:,}",
            str(len(runs)), f"{_median([r['wall_s'] for r in runs]):.2f}", f"{rate:.1f}",
            f"{_median([r['peak_rss_mb'] for r in runs]):.0f}",
            _span([r["stored"] for r in runs]), _span([r["duplicates"] for r in runs]),
            _span([r["annotated"] for r in runs]), _span([r["locked_500s"] for r in runs]),
            _span([r["locked_left"] for r in runs]), _span([r["failed"] for r in runs]),
            _span([r["peak_writers"] for r in runs]),
            _span([r["verify"]["ok"] for r in runs]),
            "/".join(sorted({str(r["exit_code"]) for r in runs})), ratio]) + " |")
    return "\n".join(lines) + "\n"
