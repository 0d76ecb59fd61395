"""Media metadata (and annotation scenes, ``scene_store.py``) in SQLite, media bytes as
files named by media id.

Blobs live under ``<data_dir>/blobs/<id[:2]>/<id><ext>``; uploads are spooled to
``<data_dir>/tmp/`` and renamed into place only once accepted, so a failed or aborted
upload leaves nothing behind. A filename from the client never becomes a path.
"""

from __future__ import annotations

import itertools
import json
import os
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .scene_store import SceneStore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS media (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    dataset_id TEXT NOT NULL,
    type TEXT NOT NULL,
    name TEXT NOT NULL,
    extension TEXT NOT NULL,
    original_filename TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    label_ids TEXT NOT NULL,
    upload_time TEXT NOT NULL,
    upload_ts REAL NOT NULL,
    uploader_id TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    frame_count INTEGER,
    frame_rate REAL,
    frame_stride INTEGER,
    duration INTEGER,
    stored INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS media_dataset_name ON media(dataset_id, name);
CREATE INDEX IF NOT EXISTS media_dataset_time ON media(dataset_id, upload_ts);
"""


@dataclass(frozen=True, slots=True)
class MediaRecord:
    """One stored image or video, as the metadata table holds it."""

    id: str
    project_id: str
    dataset_id: str
    type: str  # "image" | "video"
    name: str
    extension: str  # stored extension, e.g. ".jpeg" for an uploaded .tif
    original_filename: str
    size: int
    sha256: str
    label_ids: tuple[str, ...]
    upload_time: str
    upload_ts: float
    uploader_id: str
    width: int
    height: int
    frame_count: int | None = None
    frame_rate: float | None = None
    frame_stride: int | None = None
    duration: int | None = None
    stored: bool = True  # False in discard mode: only the hash was kept

    def to_admin(self) -> dict[str, Any]:
        data = asdict(self)
        data["label_ids"] = list(self.label_ids)
        return data


_COLUMNS = [f for f in MediaRecord.__dataclass_fields__]


class Store:
    """SQLite metadata plus blob files inside one data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self.blob_dir = self.data_dir / "blobs"
        self.tmp_dir = self.data_dir / "tmp"
        for folder in (self.data_dir, self.blob_dir, self.tmp_dir):
            folder.mkdir(parents=True, exist_ok=True)
        for leftover in self.tmp_dir.iterdir():  # spool files of a crashed run
            leftover.unlink(missing_ok=True)
        self._spool_ids = itertools.count()
        self._db = sqlite3.connect(self.data_dir / "media.sqlite3", check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self.scenes = SceneStore(self._db)

    @property
    def connection(self) -> sqlite3.Connection:
        """The database, for other tables kept beside the media (project configuration)."""
        return self._db

    def close(self) -> None:
        self._db.close()

    # -- spooling -------------------------------------------------------------------
    def new_temp_path(self) -> Path:
        # a counter, not uuid4: os.urandom costs ~0.5 ms a call on these VMs
        return self.tmp_dir / f"{os.getpid()}-{next(self._spool_ids)}.part"

    def blob_path(self, media_id: str, extension: str) -> Path:
        return self.blob_dir / media_id[:2] / f"{media_id}{extension}"

    def exists(self, media_id: str) -> bool:
        row = self._db.execute("SELECT 1 FROM media WHERE id = ?", (media_id,)).fetchone()
        return row is not None

    def add(self, record: MediaRecord, spooled: Path | None) -> None:
        """Move the spooled bytes into place (if kept) and insert the record."""
        if spooled is not None and record.stored:
            target = self.blob_path(record.id, record.extension)
            target.parent.mkdir(exist_ok=True)
            os.replace(spooled, target)
        values = [getattr(record, c) for c in _COLUMNS]
        values[_COLUMNS.index("label_ids")] = json.dumps(list(record.label_ids))
        placeholders = ", ".join("?" for _ in _COLUMNS)
        with self._db:
            self._db.execute(
                f"INSERT INTO media ({', '.join(_COLUMNS)}) VALUES ({placeholders})", values
            )

    # -- reading --------------------------------------------------------------------
    def get(self, dataset_id: str, media_id: str, media_type: str) -> MediaRecord | None:
        row = self._db.execute(
            "SELECT * FROM media WHERE id = ? AND dataset_id = ? AND type = ?",
            (media_id, dataset_id, media_type),
        ).fetchone()
        return _record(row) if row else None

    def delete(self, record: MediaRecord) -> None:
        """Remove the media, its annotation scenes and its bytes."""
        with self._db:
            self._db.execute("DELETE FROM media WHERE id = ?", (record.id,))
            self._db.execute("DELETE FROM annotation_scenes WHERE media_id = ?", (record.id,))
        self.blob_path(record.id, record.extension).unlink(missing_ok=True)

    def query(
        self,
        dataset_id: str,
        where: Sequence[str],
        params: Sequence[Any],
        order_by: str,
        skip: int,
        limit: int,
    ) -> list[MediaRecord]:
        clause = " AND ".join(["dataset_id = ?", *where])
        rows = self._db.execute(
            f"SELECT * FROM media WHERE {clause} ORDER BY {order_by} LIMIT ? OFFSET ?",
            [dataset_id, *params, limit, skip],
        ).fetchall()
        return [_record(r) for r in rows]

    def counts(
        self, dataset_id: str, where: Sequence[str] = (), params: Sequence[Any] = ()
    ) -> tuple[int, int, int]:
        """(images, videos, video frames) among the media matching ``where``."""
        clause = " AND ".join(["dataset_id = ?", *where])
        row = self._db.execute(
            "SELECT COALESCE(SUM(type = 'image'), 0), COALESCE(SUM(type = 'video'), 0),"
            " COALESCE(SUM(CASE WHEN type = 'video' THEN frame_count ELSE 0 END), 0)"
            f" FROM media WHERE {clause}",
            [dataset_id, *params],
        ).fetchone()
        return int(row[0]), int(row[1]), int(row[2])

    def iter_media(self, dataset_id: str | None = None) -> Iterator[MediaRecord]:
        if dataset_id is None:
            rows = self._db.execute("SELECT * FROM media ORDER BY upload_ts, id")
        else:
            rows = self._db.execute(
                "SELECT * FROM media WHERE dataset_id = ? ORDER BY upload_ts, id", (dataset_id,)
            )
        for row in rows:
            yield _record(row)

    def list_media(self, dataset_id: str | None = None) -> list[MediaRecord]:
        return list(self.iter_media(dataset_id))

    def count(self, dataset_id: str | None = None) -> int:
        if dataset_id is None:
            return int(self._db.execute("SELECT COUNT(*) FROM media").fetchone()[0])
        row = self._db.execute("SELECT COUNT(*) FROM media WHERE dataset_id = ?", (dataset_id,))
        return int(row.fetchone()[0])

    def media_per_dataset(self) -> dict[str, int]:
        rows = self._db.execute("SELECT dataset_id, COUNT(*) FROM media GROUP BY dataset_id")
        return {r[0]: int(r[1]) for r in rows}

    def project_size(self, project_id: str) -> int:
        row = self._db.execute(
            "SELECT COALESCE(SUM(size), 0) FROM media WHERE project_id = ?", (project_id,)
        ).fetchone()
        return int(row[0])

    def duplicate_groups(self) -> list[dict[str, Any]]:
        """Groups of media sharing (dataset, name, sha256): extra copies are duplicates."""
        rows = self._db.execute(
            "SELECT dataset_id, name, sha256, COUNT(*) AS n, GROUP_CONCAT(id) AS ids"
            " FROM media GROUP BY dataset_id, name, sha256 HAVING n > 1 ORDER BY dataset_id, name"
        )
        return [
            {"dataset_id": r[0], "name": r[1], "sha256": r[2], "count": int(r[3]),
             "ids": str(r[4]).split(",")}
            for r in rows
        ]


def _record(row: sqlite3.Row) -> MediaRecord:
    data = {c: row[c] for c in _COLUMNS}
    data["label_ids"] = tuple(json.loads(data["label_ids"]))
    data["stored"] = bool(data["stored"])
    return MediaRecord(**data)
