"""A journal that says every file of a tree is already uploaded, for the resume test.

Built with the same SQL geti-bulk uses (``geti_bulk.journal.SCHEMA`` and ``UPSERT``'s
column order), with keys exactly as the scanner makes them (``<root name>/<relative
path>``) and each file's real size and mtime, so a rerun finds every file settled and
sends nothing. Uploading 1,000,000 files to fill it for real would take about 20
minutes here; the rows are the same either way.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from pathlib import Path

from geti_bulk.journal import SCHEMA


def build_journal(tree: Path, path: Path) -> Path:
    marker = path.with_suffix(".complete")
    if marker.is_file() and path.is_file():
        return path
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(SCHEMA)
    root = tree.resolve().name
    now = time.time()

    def rows():   # noqa: ANN202
        n = 0
        for dirpath, dirnames, filenames in os.walk(tree):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            rel_dir = os.path.relpath(dirpath, tree)
            for f in sorted(filenames):
                st = os.stat(os.path.join(dirpath, f))
                rel = f if rel_dir == "." else f"{rel_dir}/{f}"
                media_id = f"{n:024x}"
                n += 1
                yield (f"{root}/{rel}", os.path.join(dirpath, f), st.st_size, st.st_mtime_ns,
                       "uploaded", media_id, None, 0, 1, now)

    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO files (key, path, size, mtime_ns, state, media_id, reason, uncertain, "
        "attempts, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows())
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    marker.write_text("ok")
    return path


def fresh_copy(journal: Path, run_dir: Path) -> Path:
    """Each run resumes from its own copy, as the first rerun after a finished upload."""
    run_dir.mkdir(parents=True, exist_ok=True)
    target = run_dir / "journal.sqlite"
    shutil.copyfile(journal, target)
    return target
