"""A journal that says every file of a tree is already uploaded, for the resume test.

Filled directly through the journal module, not by uploading: ``geti_bulk.journal.Journal``
creates the schema, its indexes and its meta, then the rows go in with the journal's own
``UPSERT`` in one transaction, keyed by the scanner's own ``geti_bulk.scan.walk`` (each
file's identity, real size and mtime), so a rerun finds every file settled and sends
nothing. Uploading 1,000,000 files to fill it for real would take about 20 minutes here;
the rows are the same either way (state ``uploaded``, a media id each).
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import time
from pathlib import Path

from geti_bulk.journal import UPSERT, Journal
from geti_bulk.scan import ScanOptions, walk

VERSION = "identity-1"   # the marker's content: a journal of older keys is built again


def build_journal(tree: Path, path: Path) -> Path:
    marker = path.with_suffix(".complete")
    if marker.is_file() and marker.read_text() == VERSION and path.is_file():
        return path
    path.unlink(missing_ok=True)
    asyncio.run(Journal(path).close())        # the schema, indexes and meta of a real one
    conn = sqlite3.connect(path, isolation_level=None)
    now = time.time()

    def rows():   # noqa: ANN202
        for n, job in enumerate(walk(tree, ScanOptions(labels="none"))):
            yield (job.key, job.path, job.size, job.mtime_ns, "uploaded", f"{n:024x}", None,
                   0, 1, now, None, None, None, None, "bench-fill", job.rel, None)

    conn.execute("BEGIN")
    conn.executemany(UPSERT, rows())
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    marker.write_text(VERSION)
    return path


def fresh_copy(journal: Path, run_dir: Path) -> Path:
    """Each run resumes from its own copy, as the first rerun after a finished upload."""
    run_dir.mkdir(parents=True, exist_ok=True)
    target = run_dir / "journal.sqlite"
    shutil.copyfile(journal, target)
    return target
