"""From a received upload to a ``MediaRecord``: decode or probe the media, check Geti's
dimension and duration limits (GETI_API.md §4.2, §4.3), give it a fresh ObjectId."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from . import media_probe
from .config import ServerState
from .replies import invalid_media
from .seed import Project, now_iso
from .spool import HEAD_BYTES, Received
from .store import MediaRecord

_STORED_EXTENSION = {".jfif": ".jpeg", ".tif": ".jpeg", ".tiff": ".jpeg"}


async def probe(
    state: ServerState,
    project: Project,
    dataset_id: str,
    media_type: str,
    received: Received,
    name: str,
    extension: str,
) -> MediaRecord:
    complete = received.path is not None or received.size <= HEAD_BYTES
    source: Any = received.path if received.path is not None else received.head
    width = height = 0
    video: media_probe.VideoInfo | None = None
    if media_type == "image":
        try:
            info = await asyncio.to_thread(
                media_probe.probe_image, source,
                decode=state.config.decode_images, complete=complete,
            )
        except media_probe.ProbeError:
            raise invalid_media(
                f"Cannot upload image `{name}{extension}`. The server was not able to interpret it."
            ) from None
        width, height = info.width, info.height
        if not (32 <= width <= 20000 and 32 <= height <= 20000):
            raise invalid_media(
                "Invalid image dimensions. Image width and height have to be within the "
                "range of 32 to 20000 pixels."
            )
    else:
        try:
            video = await asyncio.to_thread(media_probe.probe_video, source, complete=complete)
        except media_probe.ProbeError:
            raise invalid_media("Video file can not be read.") from None
        _validate_video(video, str(received.filename))
        width, height = video.width, video.height
    ext = extension.lower()
    return MediaRecord(
        id=new_media_id(state),
        project_id=project.id,
        dataset_id=dataset_id,
        type=media_type,
        name=name,
        extension=_STORED_EXTENSION.get(ext, ext),
        original_filename=str(received.filename),
        size=received.size,
        sha256=received.sha256,
        label_ids=(),
        upload_time=now_iso(),
        upload_ts=time.time(),
        uploader_id=state.world.user_id,
        width=width,
        height=height,
        frame_count=video.frame_count if video else None,
        frame_rate=video.fps if video else None,
        frame_stride=max(1, int(video.fps)) if video else None,
        duration=video.duration if video else None,
        stored=not state.config.discard,
    )


def _validate_video(video: media_probe.VideoInfo, filename: str) -> None:
    problems: list[str] = []
    if video.frame_count < 1:
        problems.append(
            f"Encountered an error while decoding video: '{filename}'. "
            "Unable to extract frames from video."
        )
    if video.width > 7680 or video.height > 4320:
        problems.append("Video too large: the maximum width is 7680 and the maximum height is 4320.")
    if video.duration > 10800:
        problems.append("Video too long: the maximum duration is 3 hours")
    known = video.width > 0 and video.height > 0
    if known and (video.width < 32 or video.height < 32):
        problems.append(
            "Video too small, the minimum size is 32x32 pixels. The dimensions extracted "
            f"for this video are: {video.width}x{video.height} pixels"
        )
    if problems:
        raise invalid_media(" ".join(problems))


def new_media_id(state: ServerState) -> str:
    while True:
        media_id = state.media_ids.object_id(datetime.now(UTC))
        if not state.store.exists(media_id):
            return media_id
