"""JSON views of Geti 3 (GETI3_API.md §4 ``ProjectView``, §5 ``MediaView``, §6
``UploadView``, §7 ``MediaAnnotations``)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from .store import Item, Media, Project
from .tus_store import Upload


def sqlite_time(text: str) -> str:
    """``YYYY-MM-DD HH:MM:SS`` (naive UTC) as pydantic prints a naive datetime."""
    return text.replace(" ", "T")


def utc_time(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat().replace("+00:00", "Z")


def project_view(project: Project) -> dict[str, Any]:
    return {
        "id": project.id,
        "name": project.name,
        "task": {
            "task_type": project.task_type,
            "exclusive_labels": project.exclusive_labels,
            "labels": [{"id": label.id, "name": label.name, "hotkey": label.hotkey,
                        "color": label.color} for label in project.labels],
        },
        "active_pipeline": False,
        "created_at": sqlite_time(project.created_at),
    }


def media_view(media: Media, annotated_frames: int = 0) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": media.id, "name": media.name, "type": media.type, "format": media.format,
        "width": media.width, "height": media.height, "size": media.size,
    }
    if media.type == "video":
        fps = float(media.fps or 0.0)
        frames = int(media.frame_count or 0)
        view.update(fps=fps, frame_count=frames, annotated_frame_count=annotated_frames,
                    duration=frames / fps if fps > 0 else 0.0)
    view["source_id"] = None
    return view


def upload_view(upload: Upload) -> dict[str, Any]:
    return {
        "id": upload.id, "filename": upload.filename, "size": upload.size,
        "offset": upload.offset, "state": upload.state,
        "created_at": utc_time(upload.created_at), "expires_at": utc_time(upload.expires_at),
    }


def annotations_view(item: Item, media_id: str | None = None) -> dict[str, Any]:
    """``MediaAnnotations``; ``media_id`` only in the POST answer (excluded when None)."""
    view: dict[str, Any] = {}
    if media_id is not None:
        view["media_id"] = media_id
    data = json.loads(item.annotation_data) if item.annotation_data is not None else None
    view.update(annotations=data, user_reviewed=item.user_reviewed, prediction_model_id=None,
                subset=item.subset)
    return view
