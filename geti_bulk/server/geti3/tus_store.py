"""Resumable uploads: rows in ``geti.db``, bytes in ``uploads/<id>.part``
(GETI3_API.md §6; ``app/services/upload_service.py``). The row's offset is the truth: a
file longer than it is truncated before the next write (``reconcile``)."""

from __future__ import annotations

import os
import sqlite3
import time
import unicodedata
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

from .store import Store

_SCHEMA = """
CREATE TABLE IF NOT EXISTS uploads (
    id TEXT PRIMARY KEY, filename TEXT NOT NULL, content_type TEXT, size INTEGER,
    "offset" INTEGER NOT NULL, state TEXT NOT NULL, checksum TEXT,
    created_at REAL NOT NULL, expires_at REAL NOT NULL);
"""
_DEFAULT_FILENAME = "upload"
_MAX_FILENAME = 255
_MAX_EXTENSION = 16


@dataclass(frozen=True, slots=True)
class Upload:
    id: str
    filename: str
    content_type: str | None
    size: int | None  # None: deferred length
    offset: int
    state: str  # pending | in_progress | completed | consumed
    created_at: float
    expires_at: float

    @property
    def complete(self) -> bool:
        return self.size is not None and self.offset == self.size


def state_for(offset: int, size: int | None) -> str:
    if size is not None and offset == size:
        return "completed"
    return "in_progress" if offset > 0 else "pending"


def sanitize_filename(raw: str | None) -> str:
    """A printable basename without leading dots, ≤ 255 chars, else ``upload`` (§6, §15)."""
    name = unicodedata.normalize("NFC", raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c.isprintable()).strip().lstrip(".").strip()
    if not name:
        return _DEFAULT_FILENAME
    if len(name) > _MAX_FILENAME:
        stem, dot, ext = name.rpartition(".")
        if dot and stem and len(ext) <= _MAX_EXTENSION:
            name = f"{stem[: _MAX_FILENAME - len(ext) - 1]}.{ext}"
        else:
            name = name[:_MAX_FILENAME]
    return name


class UploadStore:
    def __init__(self, store: Store) -> None:
        self._db = store.db
        self.dir = store.data_dir / "uploads"
        self.dir.mkdir(exist_ok=True)
        self._db.executescript(_SCHEMA)

    def path(self, upload_id: str) -> Path:
        return self.dir / f"{upload_id}.part"

    def create(self, filename: str, content_type: str | None, size: int | None,
               ttl_s: float) -> Upload:
        now = time.time()
        upload = Upload(str(uuid.uuid4()), filename, content_type, size, 0, state_for(0, size),
                        now, now + ttl_s)
        self._db.execute(
            'INSERT INTO uploads (id, filename, content_type, size, "offset", state, created_at,'
            " expires_at) VALUES (?,?,?,?,?,?,?,?)",
            (upload.id, upload.filename, upload.content_type, upload.size, 0, upload.state,
             upload.created_at, upload.expires_at))
        self.path(upload.id).touch()
        return upload

    def get(self, upload_id: str) -> Upload | None:
        row = self._db.execute("SELECT * FROM uploads WHERE id = ?", (upload_id,)).fetchone()
        return _upload(row) if row else None

    def list_all(self) -> list[Upload]:
        rows = self._db.execute("SELECT * FROM uploads ORDER BY created_at DESC").fetchall()
        return [_upload(r) for r in rows]

    def reconcile(self, upload: Upload) -> Upload:
        """Align the file with the acknowledged offset (the row is the truth)."""
        path = self.path(upload.id)
        try:
            on_disk = path.stat().st_size
        except FileNotFoundError:
            path.touch()
            on_disk = 0
        if on_disk > upload.offset:
            os.truncate(path, upload.offset)
        elif on_disk < upload.offset:
            upload = replace(upload, offset=on_disk, state=state_for(on_disk, upload.size))
            self._save(upload)
        return upload

    def commit(self, upload: Upload, offset: int, size: int | None, checksum: str | None,
               ttl_s: float) -> Upload:
        """Acknowledge ``offset``; each write extends the expiry (§6)."""
        updated = replace(upload, offset=offset, size=size, state=state_for(offset, size),
                          expires_at=time.time() + ttl_s)
        self._save(updated, checksum)
        return updated

    def set_state(self, upload: Upload, state: str) -> Upload:
        updated = replace(upload, state=state)
        self._save(updated)
        return updated

    def delete(self, upload_id: str) -> bool:
        cursor = self._db.execute("DELETE FROM uploads WHERE id = ?", (upload_id,))
        self.path(upload_id).unlink(missing_ok=True)
        return cursor.rowcount > 0

    def collectable(self, now: float) -> list[str]:
        rows = self._db.execute("SELECT id FROM uploads WHERE state = 'consumed' OR expires_at"
                                " < ?", (now,)).fetchall()
        return [r[0] for r in rows]

    def _save(self, upload: Upload, checksum: str | None = None) -> None:
        self._db.execute(
            'UPDATE uploads SET "offset" = ?, size = ?, state = ?, expires_at = ?,'
            " checksum = COALESCE(?, checksum) WHERE id = ?",
            (upload.offset, upload.size, upload.state, upload.expires_at, checksum, upload.id))


def _upload(row: sqlite3.Row) -> Upload:
    return Upload(row["id"], row["filename"], row["content_type"], row["size"], row["offset"],
                  row["state"], row["created_at"], row["expires_at"])
