"""`geti-bulk demo`: the local server, a generated labelled dataset, a real upload.

Everything runs in this process over real sockets on 127.0.0.1: the server injects a
few faults so the live display shows retries, and the result is verified against what
the server stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import sys
import tempfile
from pathlib import Path

from geti_bulk.config import UploadConfig
from geti_bulk.geti.client import Secret
from geti_bulk.sampledata import image_bytes, make_labelled_tree

LABELS = ("cat", "dog", "horse")


def _make_dataset(root: Path, files: int) -> list[Path]:
    paths = make_labelled_tree(root, LABELS, files, seed=7, size=(320, 240))
    # a few larger images so the per-file bars have something to show
    for i, label in enumerate(LABELS):
        p = root / label / f"{label}_large_{i}.png"
        p.write_bytes(image_bytes(1600, 1200, "PNG", seed=1000 + i, noise=0.9))
        paths.append(p)
    return paths


async def _demo(work: Path, files: int, faults: str, latency_ms: int, progress: str,
                kept: bool) -> int:
    from geti_bulk.display import make_reporter
    from geti_bulk.pipeline import Run
    from geti_bulk.server import LocalGeti, ServerConfig
    from geti_bulk.server.seed import generate_pat

    data = work / "dataset"
    print(f"making {files + len(LABELS)} labelled images in {data} …", flush=True)
    paths = await asyncio.to_thread(_make_dataset, data, files)
    token = generate_pat()
    server = LocalGeti(ServerConfig(data_dir=work / "server", token=token, faults=faults,
                                    latency_ms=latency_ms, seed=1))
    async with server:
        print(f"local Geti at {server.base_url} (faults: {faults or 'none'})\n", flush=True)
        cfg = UploadConfig(host=server.base_url, project="Pets classification",
                           token=Secret(token), sources=(data,), concurrency=8,
                           journal=work / "journal.sqlite", report=work / "report.jsonl",
                           progress=progress)
        reporter = make_reporter(progress, stream=sys.stdout)
        reporter.start()
        try:
            result = await Run(cfg, reporter).execute(handle_signals=True)
        finally:
            reporter.stop()
        if result.fatal:
            print(f"geti-bulk: error: {result.fatal}", file=sys.stderr)
            return result.exit_code
        records = server.store.list_media()
        stored = {r.sha256 for r in records}
        dupes = sum(g["count"] - 1 for g in server.store.duplicate_groups())
        local = {hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}
        missing = len(local - stored)
        where = (f"report: {result.report_path}" if kept else
                 "the demo folder is removed on exit (--keep DIR keeps the dataset, the "
                 "server's data and the report)")
        print(f"\nverified: {len(local) - missing}/{len(local)} files stored byte-for-byte on the "
              f"server; {dupes} duplicates; {where}")
        return result.exit_code if not missing else 1


def run_demo(*, files: int = 300, faults: str = "", latency_ms: int = 0, progress: str = "auto",
             keep: Path | None = None) -> int:
    work = keep or Path(tempfile.mkdtemp(prefix="geti-bulk-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        return asyncio.run(_demo(work, files, faults, latency_ms, progress, keep is not None))
    finally:
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)
