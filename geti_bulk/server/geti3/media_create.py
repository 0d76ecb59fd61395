"""``_create_media`` of Geti 3 (GETI3_API.md §5, §15; ``routers/media.py``,
``services/media_service.py``): the format from the extension, Pillow for images (header
only for multipart, a full decode for ``:from-upload``), a container probe for videos
(failure → plain 500), then the commit — where the write faults strike."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

from ..media_probe import ProbeError, probe_image, probe_video
from ..replies import PlainError
from .errors import ApiError
from .faults import Write
from .state import Geti3State
from .store import Media, Project

IMAGE_FORMATS = ("jpg", "jpeg", "png", "jfif", "tif", "tiff", "bmp", "webp")
VIDEO_FORMATS = ("mp4", "avi", "mkv", "mov", "webm", "m4v")


def name_and_extension(filename: str | None) -> tuple[str, str]:
    """``get_file_name_and_extension``: trimmed, split at the last dot (§5)."""
    full = (filename or "").strip()
    if not full:
        raise ApiError(422, "File name cannot be empty.")
    stem, ext = os.path.splitext(full)
    if not ext[1:]:
        raise ApiError(422, "File extension cannot be empty.")
    return stem.strip(), ext[1:]


def split_upload_filename(filename: str) -> tuple[str, str]:
    """``split_upload_filename`` of ``upload_utils.py`` (§6, §15: ``upload`` fails)."""
    name, dot, extension = filename.rpartition(".")
    name = name.strip()
    if not dot or not name or not extension:
        raise ApiError(422, f"The uploaded filename '{filename}' must have a name and an "
                            "extension.")
    return name, extension


def media_format(extension: str) -> tuple[str, str]:
    """``(type, format)``; the extension matched case-insensitively, stored lower-case."""
    lowered = extension.lower()
    if lowered in IMAGE_FORMATS:
        return "image", lowered
    if lowered in VIDEO_FORMATS:
        return "video", lowered
    raise ApiError(422, f"Unsupported media extension: {extension}")


async def create_media(state: Geti3State, project: Project, name: str, extension: str,
                       source: Path, size: int, sha256: str, write: Write, *,
                       decode: bool) -> Media:
    """Probe, commit (moving ``source`` into the dataset) and return the stored media."""
    kind, fmt = media_format(extension)
    fps: float | None = None
    frames: int | None = None
    if kind == "image":
        try:
            info = await asyncio.to_thread(probe_image, source, decode=decode)
        except ProbeError:
            raise ApiError(422, "Invalid image has been uploaded.") from None
        width, height = info.width, info.height
    else:
        try:
            video = await asyncio.to_thread(probe_video, source)
        except ProbeError:
            raise PlainError(500) from None  # RuntimeError from PyAV, uncaught (§5)
        width, height = video.width, video.height
        fps, frames = float(video.fps), video.frame_count
    media = Media(id=str(uuid.uuid4()), project_id=project.id, type=kind, name=name, format=fmt,
                  width=width, height=height, size=size, sha256=sha256,
                  fps=fps, frame_count=frames)
    await write.commit_point()
    stored = state.store.add_media(media, source)
    write.after_commit()
    return stored
