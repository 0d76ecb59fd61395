"""SQLite state of the local Geti 3 (``geti.db`` plus files in the data dir, GETI3_API.md §1).

Tables mirror ``app/db/schema.py``: projects, labels, media, dataset items (one per image,
same id), the item↔label join, uploads (``tus_store.py``). ``media.created_at`` is SQLite's
``CURRENT_TIMESTAMP`` — one-second text — as in Geti (§8, §15). Blobs live at
``projects/<project>/dataset/<media>.<format>``; no client filename ever becomes a path.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS projects (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, task_type TEXT NOT NULL,
    exclusive_labels INTEGER NOT NULL, created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE IF NOT EXISTS labels (
    id TEXT PRIMARY KEY, project_id TEXT NOT NULL, name TEXT NOT NULL, color TEXT NOT NULL,
    hotkey TEXT, UNIQUE (project_id, name), UNIQUE (project_id, hotkey));
CREATE TABLE IF NOT EXISTS media (
    id TEXT PRIMARY KEY, project_id TEXT NOT NULL, type TEXT NOT NULL, name TEXT NOT NULL,
    format TEXT NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL,
    size INTEGER NOT NULL, sha256 TEXT NOT NULL, fps REAL, frame_count INTEGER,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP);
CREATE INDEX IF NOT EXISTS media_project_created ON media (project_id, created_at);
CREATE TABLE IF NOT EXISTS dataset_items (
    id TEXT PRIMARY KEY, project_id TEXT NOT NULL, annotation_data TEXT,
    user_reviewed INTEGER NOT NULL, subset TEXT NOT NULL DEFAULT 'unassigned');
CREATE TABLE IF NOT EXISTS dataset_item_labels (
    item_id TEXT NOT NULL, label_id TEXT NOT NULL, PRIMARY KEY (item_id, label_id));
CREATE TABLE IF NOT EXISTS frame_items (
    media_id TEXT NOT NULL, frame_index INTEGER NOT NULL, annotation_data TEXT NOT NULL,
    subset TEXT NOT NULL DEFAULT 'unassigned', PRIMARY KEY (media_id, frame_index));
"""


@dataclass(frozen=True, slots=True)
class Label:
    id: str
    name: str
    color: str
    hotkey: str | None


@dataclass(frozen=True, slots=True)
class Project:
    id: str
    name: str
    task_type: str  # classification | detection | instance_segmentation (§4)
    exclusive_labels: bool
    created_at: str
    labels: tuple[Label, ...]


@dataclass(frozen=True, slots=True)
class Media:
    id: str
    project_id: str
    type: str  # image | video
    name: str
    format: str
    width: int
    height: int
    size: int
    sha256: str
    fps: float | None = None
    frame_count: int | None = None
    created_at: str = ""


@dataclass(frozen=True, slots=True)
class Item:
    """A dataset item: ``annotation_data`` is None (never annotated) or JSON text (§7)."""

    id: str
    annotation_data: str | None
    user_reviewed: bool
    subset: str


class Conflict(Exception):
    """A unique or primary key constraint refused the write."""


_MEDIA_COLUMNS = ("id", "project_id", "type", "name", "format", "width", "height", "size",
                  "sha256", "fps", "frame_count")


class Store:
    """One SQLite connection, used from the event loop only (every statement is short)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self.tmp_dir = self.data_dir / "tmp"
        for folder in (self.data_dir, self.tmp_dir, self.data_dir / "projects"):
            folder.mkdir(parents=True, exist_ok=True)
        for leftover in self.tmp_dir.iterdir():  # spool files of a crashed run
            leftover.unlink(missing_ok=True)
        self._spool_seq = 0
        self.db = sqlite3.connect(self.data_dir / "geti.db", check_same_thread=False,
                                  isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    def new_temp_path(self) -> Path:
        self._spool_seq += 1
        return self.tmp_dir / f"{os.getpid()}-{self._spool_seq}.part"

    def blob_path(self, media: Media) -> Path:
        return self.data_dir / "projects" / media.project_id / "dataset" / f"{media.id}.{media.format}"

    # -- projects -------------------------------------------------------------------
    def add_project(self, project_id: str, name: str, task_type: str, exclusive: bool,
                    labels: Sequence[Label]) -> None:
        """Insert a project with its labels in one transaction; ``Conflict`` names the clash."""
        try:
            with self.db:
                self.db.execute("BEGIN")
                self.db.execute(
                    "INSERT INTO projects (id, name, task_type, exclusive_labels) VALUES (?,?,?,?)",
                    (project_id, name, task_type, int(exclusive)))
                for label in labels:
                    self.db.execute(
                        "INSERT INTO labels (id, project_id, name, color, hotkey) VALUES (?,?,?,?,?)",
                        (label.id, project_id, label.name, label.color, label.hotkey))
        except sqlite3.IntegrityError as exc:
            raise Conflict(str(exc)) from None

    def project_exists(self, project_id: str) -> bool:
        row = self.db.execute("SELECT 1 FROM projects WHERE id = ?", (project_id,)).fetchone()
        return row is not None

    def label_exists(self, label_id: str) -> bool:
        row = self.db.execute("SELECT 1 FROM labels WHERE id = ?", (label_id,)).fetchone()
        return row is not None

    def get_project(self, project_id: str) -> Project | None:
        row = self.db.execute("SELECT * FROM projects WHERE id = ?", (project_id,)).fetchone()
        return self._project(row) if row else None

    def list_projects(self) -> list[Project]:
        rows = self.db.execute("SELECT * FROM projects ORDER BY rowid").fetchall()
        return [self._project(r) for r in rows]

    def _project(self, row: sqlite3.Row) -> Project:
        labels = tuple(
            Label(r["id"], r["name"], r["color"], r["hotkey"]) for r in self.db.execute(
                "SELECT * FROM labels WHERE project_id = ? ORDER BY rowid", (row["id"],))
        )
        return Project(row["id"], row["name"], row["task_type"], bool(row["exclusive_labels"]),
                       row["created_at"], labels)

    # -- media ----------------------------------------------------------------------
    def add_media(self, media: Media, spooled: Path) -> Media:
        """Move the bytes into place, insert the media (and an item for an image)."""
        target = self.blob_path(media)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(spooled, target)
        values = [getattr(media, c) for c in _MEDIA_COLUMNS]
        try:
            with self.db:
                self.db.execute("BEGIN")
                self.db.execute(f"INSERT INTO media ({', '.join(_MEDIA_COLUMNS)}) VALUES "
                                f"({', '.join('?' for _ in _MEDIA_COLUMNS)})", values)
                if media.type == "image":
                    self.db.execute("INSERT INTO dataset_items (id, project_id, user_reviewed)"
                                    " VALUES (?, ?, 0)", (media.id, media.project_id))
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        stored = self.get_media(media.project_id, media.id)
        assert stored is not None
        return stored

    def get_media(self, project_id: str, media_id: str) -> Media | None:
        row = self.db.execute("SELECT * FROM media WHERE project_id = ? AND id = ?",
                              (project_id, media_id)).fetchone()
        return _media(row) if row else None

    def delete_media(self, media: Media) -> None:
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("DELETE FROM media WHERE id = ?", (media.id,))
            self.db.execute("DELETE FROM dataset_items WHERE id = ?", (media.id,))
            self.db.execute("DELETE FROM dataset_item_labels WHERE item_id = ?", (media.id,))
        self.blob_path(media).unlink(missing_ok=True)

    def query_media(self, where: str, params: Sequence[Any], order: str, limit: int,
                    offset: int) -> list[Media]:
        """``media LEFT JOIN dataset_items`` ordered on ``created_at`` only (§8, §15)."""
        rows = self.db.execute(
            "SELECT media.* FROM media LEFT JOIN dataset_items ON dataset_items.id = media.id"
            f" WHERE {where} ORDER BY media.created_at {order} LIMIT ? OFFSET ?",
            [*params, limit, offset]).fetchall()
        return [_media(r) for r in rows]

    def count_media(self, where: str, params: Sequence[Any]) -> int:
        row = self.db.execute(
            "SELECT COUNT(DISTINCT media.id) FROM media LEFT JOIN dataset_items"
            f" ON dataset_items.id = media.id WHERE {where}", list(params)).fetchone()
        return int(row[0])

    def media_ids(self, where: str, params: Sequence[Any]) -> list[tuple[str, str]]:
        rows = self.db.execute(
            "SELECT media.id, media.type FROM media LEFT JOIN dataset_items"
            f" ON dataset_items.id = media.id WHERE {where} ORDER BY media.created_at DESC",
            list(params)).fetchall()
        return [(r[0], r[1]) for r in rows]

    # -- dataset items ----------------------------------------------------------------
    def get_item(self, item_id: str) -> Item | None:
        row = self.db.execute("SELECT * FROM dataset_items WHERE id = ?", (item_id,)).fetchone()
        if row is None:
            return None
        return Item(row["id"], row["annotation_data"], bool(row["user_reviewed"]), row["subset"])

    def set_annotations(self, item_id: str, annotations: list[dict[str, Any]],
                        label_ids: set[str], subset: str | None) -> bool:
        """Replace the annotations (§7); with ``subset``, assign it only if unassigned.

        Returns False (and rolls everything back) when another subset is already set.
        """
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("UPDATE dataset_items SET annotation_data = ?, user_reviewed = 1"
                            " WHERE id = ?", (json.dumps(annotations), item_id))
            self.db.execute("DELETE FROM dataset_item_labels WHERE item_id = ?", (item_id,))
            self.db.executemany("INSERT INTO dataset_item_labels VALUES (?, ?)",
                                [(item_id, label) for label in sorted(label_ids)])
            if subset is not None:
                current = self.db.execute("SELECT subset FROM dataset_items WHERE id = ?",
                                          (item_id,)).fetchone()[0]
                if current == "unassigned":
                    self.db.execute("UPDATE dataset_items SET subset = ? WHERE id = ?",
                                    (subset, item_id))
                elif current != subset:
                    self.db.execute("ROLLBACK")  # §15: the annotation write is rolled back too
                    return False
        return True

    def set_frame_annotations(self, media_id: str, frame: int,
                              annotations: list[dict[str, Any]]) -> None:
        """A video frame's own dataset item (§5: videos get items per annotated frame),
        replaced as an image's is (§7)."""
        with self.db:
            self.db.execute(
                "INSERT INTO frame_items (media_id, frame_index, annotation_data) VALUES "
                "(?, ?, ?) ON CONFLICT(media_id, frame_index) DO UPDATE SET "
                "annotation_data = excluded.annotation_data",
                (media_id, frame, json.dumps(annotations)))

    def get_frame_item(self, media_id: str, frame: int) -> Item | None:
        row = self.db.execute("SELECT annotation_data, subset FROM frame_items WHERE "
                              "media_id = ? AND frame_index = ?", (media_id, frame)).fetchone()
        if row is None:
            return None
        return Item(f"{media_id}:{frame}", row["annotation_data"], True, row["subset"])

    def annotated_frames(self, media_id: str) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM frame_items WHERE media_id = ?",
                                   (media_id,)).fetchone()[0])

    def delete_annotations(self, item_id: str) -> None:
        """Geti stores JSON ``null`` (not SQL NULL) — §15."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("UPDATE dataset_items SET annotation_data = 'null' WHERE id = ?",
                            (item_id,))
            self.db.execute("DELETE FROM dataset_item_labels WHERE item_id = ?", (item_id,))

    # -- admin ------------------------------------------------------------------------
    def media_count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM media").fetchone()[0])

    def annotated_count(self) -> int:
        row = self.db.execute("SELECT COUNT(*) FROM dataset_items WHERE annotation_data IS NOT"
                              " NULL AND annotation_data != 'null'").fetchone()
        return int(row[0])

    def duplicate_groups(self) -> list[dict[str, Any]]:
        """Media sharing project, name, size and sha256: every extra copy is a duplicate."""
        rows = self.db.execute(
            "SELECT project_id, name, size, sha256, COUNT(*) AS n, GROUP_CONCAT(id) FROM media"
            " GROUP BY project_id, name, size, sha256 HAVING n > 1 ORDER BY project_id, name")
        return [{"project_id": r[0], "name": r[1], "size": int(r[2]), "sha256": r[3],
                 "count": int(r[4]), "ids": str(r[5]).split(",")} for r in rows]

    def all_media(self) -> list[Media]:
        return [_media(r) for r in self.db.execute("SELECT * FROM media ORDER BY rowid")]


def _media(row: sqlite3.Row) -> Media:
    return Media(**{k: row[k] for k in (*_MEDIA_COLUMNS, "created_at")})
