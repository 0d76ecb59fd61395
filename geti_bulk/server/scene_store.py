"""Annotation scenes in the server's SQLite database (GETI_ANNOTATIONS.md §5).

Every POST adds a version; nothing is updated in place. The latest scene of a media item
(or video frame) is the one created last (milliseconds, then insertion order). The
media table's ``label_ids`` column mirrors the labels of the latest scene(s), so the
admin views and ``media:query`` filters see what is annotated.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from .annotation_views import Scene, annotations_from_json, annotations_to_json

_SCHEMA = """
CREATE TABLE IF NOT EXISTS annotation_scenes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    project_id TEXT NOT NULL,
    dataset_id TEXT NOT NULL,
    media_id TEXT NOT NULL,
    frame_index INTEGER NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    created TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    user_id TEXT NOT NULL,
    label_ids TEXT NOT NULL,
    states TEXT NOT NULL,
    revisit TEXT NOT NULL,
    annotations TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS scenes_media
    ON annotation_scenes(media_id, frame_index, created_ms, seq);
"""
_IMAGE = -1  # frame_index of an image's scene
_LATEST = """
SELECT * FROM annotation_scenes s WHERE {where} AND s.seq = (
    SELECT t.seq FROM annotation_scenes t
    WHERE t.media_id = s.media_id AND t.frame_index = s.frame_index
      AND t.dataset_id = s.dataset_id
    ORDER BY t.created_ms DESC, t.seq DESC LIMIT 1)
"""


class SceneStore:
    """The ``annotation_scenes`` table, sharing the media store's connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        db.executescript(_SCHEMA)

    def exists(self, scene_id: str) -> bool:
        row = self._db.execute("SELECT 1 FROM annotation_scenes WHERE id = ?", (scene_id,))
        return row.fetchone() is not None

    def add(self, scene: Scene) -> None:
        """Insert a new version and refresh the media's ``label_ids``, in one transaction."""
        self.add_many([scene])

    def add_many(self, scenes: Sequence[Scene]) -> None:
        with self._db:
            for scene in scenes:
                self._insert(scene)
            for dataset_id, media_id in dict.fromkeys((s.dataset_id, s.media_id) for s in scenes):
                self._refresh_labels(dataset_id, media_id)

    def _insert(self, scene: Scene) -> None:
        values = (
            scene.id, scene.project_id, scene.dataset_id, scene.media_id,
            _IMAGE if scene.frame_index is None else scene.frame_index, scene.width,
            scene.height, scene.created, scene.created_ms, scene.user_id,
            json.dumps(scene.label_ids), json.dumps(scene.states),
            json.dumps(scene.revisit_full_scene), json.dumps(annotations_to_json(scene)),
        )
        self._db.execute(
            "INSERT INTO annotation_scenes (id, project_id, dataset_id, media_id, frame_index,"
            " width, height, created, created_ms, user_id, label_ids, states, revisit,"
            " annotations) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", values)

    def _refresh_labels(self, dataset_id: str, media_id: str) -> None:
        rows = self._db.execute(_LATEST.format(where="s.dataset_id = ? AND s.media_id = ?")
                                + " ORDER BY s.frame_index", (dataset_id, media_id))
        labels = dict.fromkeys(i for row in rows for i in json.loads(row["label_ids"]))
        self._db.execute("UPDATE media SET label_ids = ? WHERE id = ?",
                         (json.dumps(list(labels)), media_id))

    def latest(self, dataset_id: str, media_id: str, frame_index: int | None) -> Scene | None:
        where = "s.dataset_id = ? AND s.media_id = ? AND s.frame_index = ?"
        frame = _IMAGE if frame_index is None else frame_index
        row = self._db.execute(_LATEST.format(where=where),
                               (dataset_id, media_id, frame)).fetchone()
        return _scene(row) if row else None

    def get(self, dataset_id: str, media_id: str, scene_id: str) -> Scene | None:
        row = self._db.execute(
            "SELECT * FROM annotation_scenes WHERE id = ? AND dataset_id = ? AND media_id = ?",
            (scene_id, dataset_id, media_id)).fetchone()
        return _scene(row) if row else None

    def latest_frames(self, dataset_id: str, video_id: str, start: int | None, end: int | None,
                      frameskip: int, limit: int) -> tuple[list[Scene], int]:
        """Latest scene of each matching frame (by index), at most ``limit``; and how many
        frames matched in all."""
        where = ["s.dataset_id = ?", "s.media_id = ?", "s.frame_index >= 0",
                 "s.frame_index % ? = 0"]
        params: list[Any] = [dataset_id, video_id, frameskip]
        if start is not None:
            where.append("s.frame_index >= ?")
            params.append(start)
        if end is not None:
            where.append("s.frame_index <= ?")
            params.append(end)
        rows = self._db.execute(_LATEST.format(where=" AND ".join(where))
                                + " ORDER BY s.frame_index", params).fetchall()
        return [_scene(row) for row in rows[:limit]], len(rows)

    def image_summaries(self, dataset_id: str,
                        media_ids: Sequence[str]) -> dict[str, tuple[str, list[list[str]]]]:
        """Latest scene id and task states of each image that has a scene."""
        if not media_ids:
            return {}
        marks = ", ".join("?" for _ in media_ids)
        where = f"s.dataset_id = ? AND s.frame_index = {_IMAGE} AND s.media_id IN ({marks})"
        rows = self._db.execute("SELECT media_id, id, states FROM ("
                                + _LATEST.format(where=where) + ")",
                                [dataset_id, *media_ids])
        return {row[0]: (row[1], json.loads(row[2])) for row in rows}

    def frame_states(self, dataset_id: str, video_id: str) -> list[list[list[str]]]:
        """The task states of the latest scene of every annotated frame of a video."""
        where = "s.dataset_id = ? AND s.media_id = ? AND s.frame_index >= 0"
        rows = self._db.execute("SELECT states FROM (" + _LATEST.format(where=where) + ")",
                                (dataset_id, video_id))
        return [json.loads(row[0]) for row in rows]

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM annotation_scenes").fetchone()[0])

    def per_dataset(self) -> dict[str, int]:
        rows = self._db.execute(
            "SELECT dataset_id, COUNT(*) FROM annotation_scenes GROUP BY dataset_id")
        return {row[0]: int(row[1]) for row in rows}


def _scene(row: sqlite3.Row) -> Scene:
    frame = int(row["frame_index"])
    return Scene(
        id=row["id"], project_id=row["project_id"], dataset_id=row["dataset_id"],
        media_id=row["media_id"], frame_index=None if frame == _IMAGE else frame,
        width=int(row["width"]), height=int(row["height"]), created=row["created"],
        created_ms=int(row["created_ms"]), user_id=row["user_id"],
        annotations=annotations_from_json(json.loads(row["annotations"])),
        states=tuple((t, s) for t, s in json.loads(row["states"])),
        revisit_full_scene=tuple(json.loads(row["revisit"])),
    )
