"""The COCO index: streams instances files with ijson (C backend) into SQLite, so a
1,000,000-image file is never held in memory.

Run by `coco.CocoReader` as a child process (`python -m geti_bulk.sources.coco_index DB`,
so the parse holds no lock of the uploader's interpreter and its memory is its own) or,
if asked, in a thread. The reader creates the database, writes the spec into `meta` and
polls it; this module fills it in three steps:

1. images: one `images.item` pass per file, committed every 5,000 rows or 0.25 s, so
   `items()` can stream while the rest is read (state `images_done` when all are in);
2. annotations: one `annotations.item` pass per file; each entry is checked and stored
   as a row (box columns, or polygon parts as JSON, or the reason it was dropped);
   entries naming an image id the file does not define are counted, not stored;
3. categories (`read_categories`), the `(fid, img)` index, the final stats: state `ready`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geti_bulk.sources.coco_rules import (
    Row,
    ann_row,
    image_row,
    is_int,
    read_categories,
    resolve_base,
)
from geti_bulk.sources.common import join_rel
from geti_bulk.sources.rle import load_decoder

INDEX_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files(fid INTEGER PRIMARY KEY, path TEXT NOT NULL, subset TEXT);
CREATE TABLE IF NOT EXISTS images(key INTEGER PRIMARY KEY, fid INTEGER NOT NULL,
    cid INTEGER NOT NULL, rel TEXT NOT NULL, width INTEGER, height INTEGER);
CREATE UNIQUE INDEX IF NOT EXISTS images_cid ON images(fid, cid);
CREATE UNIQUE INDEX IF NOT EXISTS images_rel ON images(rel);
CREATE TABLE IF NOT EXISTS anns(fid INTEGER NOT NULL, img INTEGER NOT NULL, cat INTEGER,
    x REAL, y REAL, w REAL, h REAL, poly TEXT, problem TEXT);
CREATE TABLE IF NOT EXISTS cats(fid INTEGER NOT NULL, cid INTEGER NOT NULL,
    name TEXT NOT NULL, PRIMARY KEY(fid, cid));
"""


def connect(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(db, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")        # a lost index is rebuilt, never trusted
    conn.execute("PRAGMA cache_size=-32768")
    return conn


def meta(conn: sqlite3.Connection, key: str) -> str:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return str(row[0]) if row else ""


def log_tail(db: Path) -> str:
    """The last line the indexer process wrote to `<db>.log` (its traceback's end)."""
    try:
        with open(f"{db}.log", "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 2048))
            lines = f.read().decode("utf-8", "replace").strip().splitlines()
    except OSError:
        lines = []
    return lines[-1] if lines else f"see {db}.log"


@dataclass
class Tally:
    """What the final stats are made of, counted while streaming."""

    images: int = 0
    subsets: Counter[str] = field(default_factory=Counter)
    objects: Counter[tuple[int, int]] = field(default_factory=Counter)   # (fid, cat) → shapes
    rows: Counter[tuple[int, int]] = field(default_factory=Counter)      # (fid, cat) → entries
    problems: Counter[str] = field(default_factory=Counter)   # annotations dropped
    missing: list[str] = field(default_factory=list)          # image entries naming no file
    missing_count: int = 0
    notes: Counter[str] = field(default_factory=Counter)      # everything else
    examples: dict[str, str] = field(default_factory=dict)

    def problem(self, text: str, example: str = "", kind: str = "dropped") -> None:
        (self.problems if kind == "dropped" else self.notes)[text] += 1
        if example:
            self.examples.setdefault(text, example)


class _Stop(Exception):
    pass


class Indexer:
    def __init__(self, db: Path, stop: threading.Event | None = None) -> None:
        self.conn = connect(db)
        self.spec = json.loads(meta(self.conn, "spec"))
        self.root = Path(self.spec["root"])
        self.decoder = load_decoder() if self.spec.get("rle_decoder") else None
        self.stop = stop
        self.tally = Tally()
        self.timings: dict[str, float] = {}
        self.t0 = time.monotonic()

    def _set(self, **values: object) -> None:
        self.conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                              [(k, str(v)) for k, v in values.items()])

    def _check_stop(self) -> None:
        if self.stop is not None and self.stop.is_set():
            raise _Stop

    def run(self) -> None:
        import ijson
        current = ""
        t0 = self.t0
        try:
            files = self.spec["files"]
            for fid, entry in enumerate(files):
                current = entry["path"]
                self.index_images(fid, self.root / current, entry["subset"])
            self.timings["images_s"] = round(time.monotonic() - t0, 2)
            self._set(state="images_done")
            self.conn.commit()
            for fid, entry in enumerate(files):
                current = entry["path"]
                self.index_annotations(fid, self.root / current)
            self.timings["annotations_s"] = round(time.monotonic() - t0, 2)
            self.finish(files)
        except _Stop:
            self.conn.rollback()
        except (ijson.JSONError, ValueError, OSError, UnicodeDecodeError) as e:
            self.conn.rollback()
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            self._set(state="failed", error=f"{current}: cannot be read as COCO JSON ({first})")
            self.conn.commit()
        finally:
            self.conn.close()

    def _flush(self, sql: str, batch: list[Any], **meta: object) -> int:
        before = self.conn.total_changes
        self.conn.executemany(sql, batch)
        added = self.conn.total_changes - before
        if meta:
            self._set(**meta)
        self.conn.commit()
        self._check_stop()
        batch.clear()
        return added

    def index_images(self, fid: int, path: Path, subset: str | None) -> None:
        import ijson
        sql = "INSERT OR IGNORE INTO images(fid, cid, rel, width, height) VALUES (?,?,?,?,?)"
        base: str | None = None
        batch: list[tuple[int, int, str, int | None, int | None]] = []
        last = time.monotonic()
        with path.open("rb") as f:
            for img in ijson.items(f, "images.item", use_float=True):
                row = image_row(img)
                if isinstance(row, str):
                    self.tally.missing_count += 1
                    if len(self.tally.missing) < 100:
                        self.tally.missing.append(f"{row}: {img!r:.80}")
                    continue
                if base is None:
                    base = resolve_base(self.root, path, subset, row[1])
                batch.append((fid, row[0], join_rel(base, row[1]), row[2], row[3]))
                if len(batch) >= 5000 or (len(batch) % 256 == 0 and time.monotonic() - last > .25):
                    self._count_images(self._flush(sql, batch, images=self.tally.images),
                                       len(batch), subset)
                    last = time.monotonic()
        self._count_images(self._flush(sql, batch), len(batch), subset)

    def _count_images(self, added: int, tried: int, subset: str | None) -> None:
        self.tally.images += added
        if subset is not None:
            self.tally.subsets[subset] += added
        if tried > added:
            self.tally.notes["image entry with a duplicate id or file name"] += tried - added

    def index_annotations(self, fid: int, path: Path) -> None:
        import ijson
        known = {r[0] for r in self.conn.execute("SELECT cid FROM images WHERE fid=?", (fid,))}
        sql = "INSERT INTO anns VALUES (?,?,?,?,?,?,?,?,?)"
        batch: list[Row] = []
        tally = self.tally
        with path.open("rb") as f:
            for a in ijson.items(f, "annotations.item", use_float=True):
                img = a.get("image_id") if isinstance(a, dict) else None
                if not is_int(img) or img not in known:
                    tally.problem("annotation points to an unknown image id", f"image_id {img!r}")
                    continue
                row, n = ann_row(fid, img, a, self.decoder)
                batch.append(row)
                if row[8] is not None:
                    tally.problems[row[8]] += 1
                if n and row[2] is not None:
                    tally.objects[(fid, row[2])] += n
                    tally.rows[(fid, row[2])] += 1
                if len(batch) >= 20000:
                    self._flush(sql, batch)
        self._flush(sql, batch)

    def finish(self, files: list[dict[str, Any]]) -> None:
        names: dict[tuple[int, int], str] = {}
        for fid, entry in enumerate(files):
            cats, problems = read_categories(self.root / entry["path"])
            for text in problems:
                self.tally.problem(text, kind="note")
            names.update({(fid, cid): name for cid, name in cats.items()})
        self.conn.executemany("INSERT OR REPLACE INTO cats VALUES (?,?,?)",
                              [(fid, cid, name) for (fid, cid), name in names.items()])
        self.timings["categories_s"] = round(time.monotonic() - self.t0, 2)
        self.conn.execute("CREATE INDEX IF NOT EXISTS anns_img ON anns(fid, img)")
        self.timings["ready_s"] = round(time.monotonic() - self.t0, 2)
        self._set(stats=json.dumps(final_stats(self.tally, names)), state="ready",
                  timings=json.dumps(self.timings))
        self.conn.commit()


def final_stats(t: Tally, names: dict[tuple[int, int], str]) -> dict[str, Any]:
    labels: Counter[str] = Counter()
    for key, n in t.objects.items():
        if key in names:
            labels[names[key]] += n
        else:
            t.problem("annotation uses a category id that is not defined", f"id {key[1]}")
            t.problems["annotation uses a category id that is not defined"] += t.rows[key] - 1
    problems = [f"{n} × {text}" + (f" (e.g. {t.examples[text]})" if text in t.examples else "")
                for text, n in (t.problems + t.notes).most_common(100)]
    if t.missing:
        problems.append(f"{t.missing_count} × image entry naming no usable file "
                        f"(e.g. {t.missing[0]})")
    return {"images": t.images, "subsets": dict(t.subsets), "labels": dict(labels),
            "dropped": sum(t.problems.values()), "problems": problems[:100],
            "missing_count": t.missing_count, "missing_files": t.missing}


def _watch_parent() -> None:
    """Exit when the reader's end of our stdin closes (the reader or its process died)."""
    sys.stdin.buffer.read()
    os._exit(3)


def main(argv: list[str]) -> int:
    threading.Thread(target=_watch_parent, daemon=True).start()
    Indexer(Path(argv[1])).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
