"""COCO instances JSON: one file per subset (`annotations/instances_train2017.json` →
subset `train`), images found under `images/<subset>2017/`, `images/<subset>/`,
`<subset>2017/`, `images/` or the dataset root (whichever holds the first image).

Scale: a 1,000,000-image, 7,000,000-box file (1–2 GB) is never loaded. `coco_index`
streams it with ijson into an SQLite file in `index_dir` (default: a temp dir removed on
close; pass the journal's folder to keep it: an index whose files' size and mtime still
match is reused, so a resume starts at once). The indexer runs in a child process;
`items()` yields images as soon as their rows are committed, with `deferred=True` while
annotations are still being indexed; `annotation_for(rel)` blocks until the index is
complete, then answers from SQLite. Measured on 1,000,000 images / 7,000,000 boxes
(1.07 GiB, benchmarks/coco_scale.py, 2 cores): first item 0.13 s, all items 23 s, index
ready 73 s, peak RSS 47 MiB here and 136 MiB in the indexer. A second live reader of the
same index_dir never rebuilds the index under the first: it builds a private one.

Categories: COCO writes `categories` after the 7,000,000 annotations. A categories-only
ijson pass over the 1.07 GiB file takes 13.7 s with the yajl2_c backend (it still
tokenises everything before the key), so `label_names()` first reads the last 4 MiB of
each file and takes the top-level `"categories"` array found there if `{` + the rest of
the file parses as one complete object (0.02 s); only when that fails (categories not
near the end) does it block on the categories-only pass, which stops right after the
array: instant when they come first, at most that 14 s per GiB otherwise.

Conventions: an instance with a polygon `segmentation` gives one Polygon per part (its
`bbox` is the polygons' bounds, so nothing is lost for detection); one without gives its
`bbox` as a Box; an RLE mask (`iscrowd`, `counts` as list or string) gives polygons when
the optional decoder is installed (`rle.py`), otherwise it is dropped with the reason. An
image listed in `images` with no annotation entry is known-empty (`empty=True`, COCO's
convention for negatives); one whose entries were all dropped is not. Undefined category
ids, boxes with no area and entries naming unknown image ids are dropped and counted
(per file in `problems`, in total in `stats`). The reader never opens images and checks
only whether each file's first image exists (to pick the folder); a listed file that does
not exist is reported by the uploader when it opens it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO, cast

from geti_bulk.sources import coco_index
from geti_bulk.sources.coco_rules import find_coco_files, read_categories, subset_of
from geti_bulk.sources.coco_rules import probe as probe
from geti_bulk.sources.common import DatasetError
from geti_bulk.sources.model import (
    Box,
    Polygon,
    ReaderStats,
    SourceAnnotation,
    SourceItem,
    SourceObject,
)
from geti_bulk.sources.rle import load_decoder

BATCH = 1000
POLL_S = 0.02
_PROJECT_ROOT = Path(__file__).resolve().parents[2]


class CocoReader:
    format = "coco"
    wanted: Callable[[str], bool] | None = None    # see DatasetReader.wanted

    def __init__(self, root: Path, index_dir: Path | None = None, *,
                 files: Sequence[Path] | None = None, indexer: str = "process") -> None:
        self.root = root
        self.files = list(files) if files is not None else find_coco_files(root)
        if not self.files:
            raise DatasetError(f"no COCO annotation file (annotations/*.json) in {root}")
        self.subsets = [subset_of(p) for p in self.files]
        self._tmp = None if index_dir is not None else tempfile.mkdtemp(prefix="geti-coco-")
        folder = index_dir if index_dir is not None else Path(cast(str, self._tmp))
        folder.mkdir(parents=True, exist_ok=True)
        key = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:12]
        self.db = folder / f"coco-index-{key}.sqlite"
        self._indexer = indexer
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._ready = False
        self._names: set[str] | None = None
        self._stats: ReaderStats | None = None
        self._lockfile: BinaryIO | None = None

    # -- the index --------------------------------------------------------------------
    def _fingerprint(self) -> str:
        parts: list[Any] = [coco_index.INDEX_VERSION, _decoder_available()]
        for p in self.files:
            st = p.stat()
            parts.append([p.relative_to(self.root).as_posix(), st.st_size, st.st_mtime_ns])
        return json.dumps(parts)

    def _start(self) -> sqlite3.Connection:
        with self._lock:
            if self._stop.is_set():
                raise DatasetError("the COCO reader is closed")
            if self._conn is None:
                self._conn = self._open_index()
            return self._conn

    def _lock_index(self) -> None:
        """Hold `<db>.lock` while this reader owns the index; if another live reader holds
        it (same dataset, same index_dir), build a private index in a temp dir instead of
        deleting the one in use."""
        try:
            import fcntl
        except ImportError:          # no flock on this platform: one reader per index_dir
            return
        for _ in range(2):
            handle = open(f"{self.db}.lock", "ab")     # held until close()
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._lockfile = handle
                return
            except OSError:
                handle.close()
                self._tmp = tempfile.mkdtemp(prefix="geti-coco-")
                self.db = Path(self._tmp) / self.db.name

    def _open_index(self) -> sqlite3.Connection:
        self._lock_index()
        fingerprint = self._fingerprint()
        if self.db.exists():
            conn = coco_index.connect(self.db)
            if (coco_index.meta(conn, "fingerprint") == fingerprint and coco_index.meta(conn, "state") == "ready"):
                return conn
            conn.close()
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.db}{suffix}").unlink(missing_ok=True)
        conn = coco_index.connect(self.db)
        conn.executescript(coco_index.SCHEMA)
        files = [{"path": p.relative_to(self.root).as_posix(), "subset": s}
                 for p, s in zip(self.files, self.subsets, strict=True)]
        spec = {"root": str(self.root.resolve()), "rle_decoder": _decoder_available(), "files": files}
        conn.executemany("INSERT INTO files VALUES (?, ?, ?)",
                         [(i, f["path"], f["subset"]) for i, f in enumerate(files)])
        conn.executemany("INSERT INTO meta VALUES (?, ?)", [
            ("spec", json.dumps(spec)), ("fingerprint", fingerprint), ("state", "indexing")])
        conn.commit()
        self._launch()
        return conn

    def _launch(self) -> None:
        if self._indexer == "thread":
            indexer = coco_index.Indexer(self.db, self._stop)
            self._thread = threading.Thread(target=indexer.run, daemon=True,
                                            name="coco-index")
            self._thread.start()
            return
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(_PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
        with open(f"{self.db}.log", "wb") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "geti_bulk.sources.coco_index", str(self.db)],
                stdin=subprocess.PIPE, stdout=log, stderr=log, env=env)

    def _state(self) -> str:
        with self._lock:
            return coco_index.meta(self._start(), "state")

    def _query(self, sql: str, args: tuple[Any, ...]) -> list[Any]:
        with self._lock:
            return self._start().execute(sql, args).fetchall()

    def _check_alive(self) -> None:
        state = self._state()
        if state == "failed":
            raise DatasetError(coco_index.meta(self._start(), "error"))
        if state == "ready":
            return
        died = (self._proc is not None and self._proc.poll() is not None) or (
            self._thread is not None and not self._thread.is_alive())
        if died and self._state() not in ("ready", "failed"):
            code = self._proc.returncode if self._proc is not None else None
            raise DatasetError(f"the COCO indexer stopped (exit code {code}): {coco_index.log_tail(self.db)}")

    # -- DatasetReader ----------------------------------------------------------------
    def describe(self) -> str:
        names = ", ".join(p.relative_to(self.root).as_posix() for p in self.files)
        return f"COCO instances: {names}; annotations indexed in {self.db}"

    def annotations_ready(self) -> bool:
        if not self._ready:
            self._check_alive()
            self._ready = self._state() == "ready"
        return self._ready

    def wait_ready(self, timeout: float | None = None) -> bool:
        end = None if timeout is None else time.monotonic() + timeout
        while not self.annotations_ready():
            if end is not None and time.monotonic() > end:
                return False
            time.sleep(POLL_S * 5)
        return True

    def label_names(self) -> set[str]:
        if self._names is None:
            if self.annotations_ready():
                rows = self._query("SELECT DISTINCT name FROM cats", ())
                self._names = {r[0] for r in rows}
            else:
                self._names = {name for p in self.files
                               for name in read_categories(p)[0].values()}
        return set(self._names)

    def items(self) -> Iterator[SourceItem]:
        last = 0
        while True:
            done = self._state() in ("images_done", "ready")
            rows = self._query("SELECT key, fid, cid, rel, width, height FROM images "
                               "WHERE key > ? ORDER BY key LIMIT ?", (last, BATCH))
            if not rows:
                if done:
                    return
                self._check_alive()
                time.sleep(POLL_S)
                continue
            ready = self.annotations_ready()
            for key, fid, cid, rel, width, height in rows:
                last = key
                if self.wanted is not None and not self.wanted(rel):
                    continue
                ann = self._annotation(fid, cid, width, height) if ready else None
                yield SourceItem(path=self.root / rel, rel=rel, subset=self.subsets[fid],
                                 annotation=ann, deferred=not ready)

    def annotation_for(self, rel: str) -> SourceAnnotation | None:
        self.wait_ready()
        rows = self._query("SELECT fid, cid, width, height FROM images WHERE rel=?", (rel,))
        return self._annotation(*rows[0]) if rows else None

    def _annotation(self, fid: int, cid: int, width: int | None,
                    height: int | None) -> SourceAnnotation:
        rows = self._query(
            "SELECT a.cat, a.x, a.y, a.w, a.h, a.poly, a.problem, c.name FROM anns a "
            "LEFT JOIN cats c ON c.fid = a.fid AND c.cid = a.cat "
            "WHERE a.fid = ? AND a.img = ? ORDER BY a.rowid", (fid, cid))
        if not rows:
            return SourceAnnotation(width=width, height=height, empty=True)
        objects: list[SourceObject] = []
        problems: list[str] = []
        for cat, x, y, w, h, poly, problem, name in rows:
            if problem:
                problems.append(problem)
            if cat is None or (poly is None and x is None):
                continue
            if name is None:
                problems.append(f"category id {cat} is not defined")
                continue
            if poly is not None:
                objects.extend(SourceObject((name,), Polygon(tuple(zip(p[0::2], p[1::2],
                                                                       strict=True))))
                               for p in json.loads(poly))
            elif problem is None:
                objects.append(SourceObject((name,), Box(x, y, w, h)))
        return SourceAnnotation(objects=tuple(objects), width=width, height=height,
                                problems=tuple(problems))

    @property
    def stats(self) -> ReaderStats:
        if self._stats is not None:
            return self._stats
        if not self.annotations_ready():
            count = self._query("SELECT count(*) FROM images", ())[0][0]
            return ReaderStats(images=count)
        raw = json.loads(coco_index.meta(self._start(), "stats"))
        self._stats = ReaderStats(
            images=raw["images"], dropped=raw["dropped"], subsets=raw["subsets"],
            labels=raw["labels"], problems=raw["problems"],
            missing_count=raw["missing_count"], missing_files=raw["missing_files"])
        return self._stats

    def close(self) -> None:
        self._stop.set()
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
            self._proc.wait(timeout=10)
            if self._proc.stdin is not None:
                self._proc.stdin.close()
            self._proc = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        if self._lockfile is not None:
            self._lockfile.close()
            self._lockfile = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)


@functools.cache
def _decoder_available() -> bool:
    return load_decoder() is not None
