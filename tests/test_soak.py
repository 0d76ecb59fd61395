"""Soak: 20,000 small files against the local server with every fault kind mixed in,
ending with every file stored exactly once and every byte verified.

Run with `pytest -m soak tests/test_soak.py -s` (it prints its figures). Deselected in CI
(`-m "not soak and not slow"`) and skipped when no `-m` expression asks for it.
"""

from __future__ import annotations

import hashlib
import os
import time

import pytest

from geti_bulk.config import UploadConfig
from geti_bulk.events import FileDone, FileFailed, FileRetrying, RecordingReporter
from geti_bulk.geti.client import Secret
from geti_bulk.journal import JournalReader
from geti_bulk.pipeline import Run
from geti_bulk.sampledata import make_labelled_tree
from geti_bulk.server import LocalGeti, ServerConfig
from geti_bulk.server.admin import stats_of
from tests.conftest import label_ids

FILES = int(os.environ.get("GETI_BULK_SOAK_FILES", "20000"))
LABELS = ["cat", "dog", "horse"]
FAULTS = ("502=0.01,503=0.02,504=0.01,429=0.01,429ra=0.005,503ra=0.005,"
          "reset=0.02,stored500=0.02,slow=0.002,crash=0.0005")


@pytest.fixture(autouse=True)
def only_when_asked(request: pytest.FixtureRequest) -> None:
    if "soak" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("soak run: select it with -m soak")


@pytest.mark.soak
@pytest.mark.timeout(1800)
async def test_soak_every_fault_kind_every_file_once_every_byte_verified(tmp_path, token):
    t0 = time.monotonic()
    data = tmp_path / "data"
    paths = make_labelled_tree(data, LABELS, FILES, seed=7, size=(64, 48), png_every=10)
    local = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}
    assert len(set(local.values())) == FILES, "every sample file is distinct"
    generated = time.monotonic() - t0

    srv = LocalGeti(ServerConfig(data_dir=tmp_path / "server", token=token, seed=11,
                                 faults=FAULTS, slow_ms=50, restart_ms=300))
    async with srv:
        cfg = UploadConfig(host=srv.base_url, project="Pets classification", token=Secret(token),
                           sources=(data,), journal=tmp_path / "journal.sqlite",
                           report=tmp_path / "report.jsonl", concurrency=8)
        rec = RecordingReporter()
        t1 = time.monotonic()
        result = await Run(cfg, rec).execute()
        wall = time.monotonic() - t1
        stats = stats_of(srv.state)
        records = srv.store.list_media()
        ids = label_ids(srv, "Pets classification")

    by_sha: dict[str, list[object]] = {}
    for r in records:
        by_sha.setdefault(r.sha256, []).append(r)
    stored_once = sum(1 for sha in local.values() if len(by_sha.get(sha, [])) == 1)
    lost = [p for p, sha in local.items() if sha not in by_sha]
    duplicates = stats["duplicates"]
    done = [e for e in rec.events if isinstance(e, FileDone)]
    failed = [e for e in rec.events if isinstance(e, FileFailed)]
    retried = [e for e in rec.events if isinstance(e, FileRetrying)]
    journal = JournalReader(tmp_path / "journal.sqlite")
    counts = journal.counts()
    journal.close()

    print(f"\nsoak: {FILES} files ({sum(p.stat().st_size for p in paths) / 1e6:.1f} MB), "
          f"generated in {generated:.1f} s, uploaded in {wall:.1f} s "
          f"({FILES / wall:.0f} files/s), peak concurrency {result.peak_concurrency}")
    print(f"  faults injected: {dict(sorted(stats['faults'].items()))} "
          f"(total {sum(stats['faults'].values())}; uploads received {stats['uploads_received']})")
    print(f"  retries by cause: {dict(sorted(result.retries.items()))} "
          f"(total {sum(result.retries.values())}); FileRetrying events {len(retried)}")
    print(f"  uploaded {result.uploaded}, adopted after an ambiguous failure "
          f"{sum(1 for e in done if e.adopted)}, failed {result.failed}, "
          f"stored {stats['media_total']}, duplicates {duplicates}, lost {len(lost)}, "
          f"journal {counts}")

    assert result.fatal is None and result.exit_code == 0, result
    assert failed == []
    assert (result.uploaded, result.failed, result.skipped) == (FILES, 0, 0)
    assert stats["media_total"] == FILES and duplicates == 0
    assert lost == [] and stored_once == FILES        # every byte verified by sha256
    assert counts.get("uploaded") == FILES
    label_of = {sha: ids[p.parent.name] for p, sha in local.items()}
    assert all(r.label_ids == (label_of[r.sha256],) for r in records)
    # every kind really happened, and every retryable one was retried
    assert set(stats["faults"]) >= {"502", "503", "504", "429", "429ra", "503ra", "reset",
                                    "stored500", "slow"}
    assert set(result.retries) >= {"502", "503", "504", "429", "network", "500"}
