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
from typing import Any

from geti_bulk.config import UploadConfig
from geti_bulk.geti.client import Secret
from geti_bulk.sampledata import image_bytes, make_coco_dataset, make_labelled_tree

LABELS = ("cat", "dog", "horse")
FAULTS = {"geti2": "503=0.05,stored500=0.02,reset=0.02",
          # Geti 3 has no gateway (no 503s): its SQLite lock instead, scaled to 1.5 s
          "geti3": "locked=0.03,stored500=0.02,reset=0.02"}
GETI3_LOCKED_MS = 1500


def _make_dataset(root: Path, files: int) -> list[Path]:
    paths = make_labelled_tree(root, LABELS, files, seed=7, size=(320, 240))
    # a few larger images so the per-file bars have something to show
    for i, label in enumerate(LABELS):
        p = root / label / f"{label}_large_{i}.png"
        p.write_bytes(image_bytes(1600, 1200, "PNG", seed=1000 + i, noise=0.9))
        paths.append(p)
    return paths


async def _demo(work: Path, files: int, faults: str, latency_ms: int, progress: str,
                kept: bool, task: str = "classification", dialect: str = "geti2") -> int:
    from geti_bulk.display import make_reporter
    from geti_bulk.pipeline import Run
    from geti_bulk.server import LocalGeti, ServerConfig
    from geti_bulk.server.seed import generate_pat

    data = work / "dataset"
    detection = task == "detection"
    if detection:
        print(f"making a COCO detection dataset of {files} images in {data} …", flush=True)
        paths = await asyncio.to_thread(make_coco_dataset, data, files, seed=7)
    else:
        print(f"making {files + len(LABELS)} labelled images in {data} …", flush=True)
        paths = await asyncio.to_thread(_make_dataset, data, files)
    if dialect == "geti3":
        return await _demo3(work, data, paths, faults, latency_ms, progress, kept, detection)
    token = generate_pat()
    server = LocalGeti(ServerConfig(data_dir=work / "server", token=token, faults=faults,
                                    latency_ms=latency_ms, seed=1))
    if detection:
        server.set_annotation_faults(faults)
    async with server:
        print(f"local Geti at {server.base_url} (faults: {faults or 'none'}"
              f"{', on media and annotations' if detection and faults else ''})\n", flush=True)
        project = "Vehicle detection" if detection else "Pets classification"
        cfg = UploadConfig(host=server.base_url, project=project,
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
        if detection:
            verified = await _verify_annotations(cfg, work)
            print(verified.summary())
            if verified.exit_code:
                return 1
        return result.exit_code if not missing else 1


async def _demo3(work: Path, data: Path, paths: list[Path], faults: str, latency_ms: int,
                 progress: str, kept: bool, detection: bool) -> int:
    """The same against the local Geti 3: HTTPS with its self-signed certificate (trusted
    with --ca-bundle, as a user would), no token, every label an annotation."""
    from geti_bulk.display import make_reporter
    from geti_bulk.pipeline import Run
    from geti_bulk.server import Geti3Config, LocalGeti3

    server = LocalGeti3(Geti3Config(data_dir=work / "server", faults=faults,
                                    latency_ms=latency_ms, locked_ms=GETI3_LOCKED_MS, seed=1))
    async with server:
        print(f"local Geti 3 at {server.base_url} (self-signed certificate {server.cert_path}; "
              f"faults: {faults or 'none'}, on media and annotations)\n", flush=True)
        project = "Vehicle detection" if detection else "Pets classification"
        cfg = UploadConfig(host=server.base_url, project=project, token=Secret(""),
                           sources=(data,), ca_bundle=str(server.cert_path),
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
        store = server.state.store
        stored = {m.sha256 for m in store.all_media()}
        dupes = sum(g["count"] - 1 for g in store.duplicate_groups())
        local = {hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}
        missing = len(local - stored)
        where = (f"report: {result.report_path}" if kept else
                 "the demo folder is removed on exit (--keep DIR keeps the dataset, the "
                 "server's data and the report)")
        print(f"\nverified: {len(local) - missing}/{len(local)} files stored byte-for-byte on the "
              f"server; {dupes} duplicates; {where}")
        verified = await _verify_annotations(cfg, work)
        print(verified.summary())
        if verified.exit_code or missing or dupes:
            return 1
        return result.exit_code


async def _verify_annotations(cfg: UploadConfig, work: Path) -> Any:
    """What `geti-bulk verify` does: every annotation read back and compared (±1 px)."""
    from dataclasses import replace

    from geti_bulk.events import RecordingReporter
    from geti_bulk.pipeline import Run

    run = Run(replace(cfg, use_journal=False), RecordingReporter(),
              verify_report=work / "verify.jsonl")
    result = await run.execute()
    if result.fatal:
        raise RuntimeError(result.fatal)
    return run.verify_result


def run_demo(*, files: int = 300, faults: str | None = None, latency_ms: int = 0,
             progress: str = "auto", keep: Path | None = None, task: str = "classification",
             dialect: str = "geti2") -> int:
    """`faults=None`: the dialect's default faults (FAULTS)."""
    work = keep or Path(tempfile.mkdtemp(prefix="geti-bulk-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    spec = FAULTS[dialect] if faults is None else faults
    try:
        return asyncio.run(_demo(work, files, spec, latency_ms, progress, keep is not None,
                                 task, dialect))
    finally:
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)
