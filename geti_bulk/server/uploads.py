"""``POST …/media/images|videos``: faults first, then Geti's processing order (§3.4).

The whole body is received before anything is validated, as FastAPI does; then path
ids (400) → size (413) / extension (415) / upload_info (400) → Content-Length (500) →
free space (507) → file name (415) → project (404) → labels (404 / 500) → empty file
(500) → decode (415) → store the media → annotate → 200. With labels, the annotation
(one full-image box holding them, ancestors added) is the last step: a ``stored500``
fault fails after the media is stored and before it is annotated.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from typing import Any

from aiohttp import web

from .annotation_manager import save_scenes, upload_scenes
from .config import STATE, ServerState
from .faults import GATEWAY_KINDS, abort, gateway_response
from .media import media_view
from .media_record import probe
from .replies import (
    INTERNAL_SERVER_ERROR,
    GetiError,
    PlainError,
    bad_request,
    invalid_id,
    invalid_media,
    parse_id,
    parse_workspace_id,
    plain,
    project_not_found,
    validation_error,
)
from .seed import GLOBAL_TASK_TYPES, Project
from .spool import Received, drain, receive

IMAGE_EXTENSIONS = [".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".jfif", ".webp"]
VIDEO_EXTENSIONS = [".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v"]
MIN_FREE_SPACE_GIB = 30  # chart default 20 + 10, see GETI_API.md §4.2


async def post_image(request: web.Request) -> web.StreamResponse:
    return await _handle(request, "image")


async def post_video(request: web.Request) -> web.StreamResponse:
    return await _handle(request, "video")


async def _handle(request: web.Request, media_type: str) -> web.StreamResponse:
    state = request.app[STATE]
    state.uploads_received += 1
    refused = state.service.admit()
    if refused is not None:
        return refused
    try:
        async with state.service.holding():
            return await _faulted(request, state, media_type)
    except asyncio.CancelledError as error:
        return state.service.killed(error)   # re-raised unless the service died under it


async def _faulted(request: web.Request, state: ServerState,
                   media_type: str) -> web.StreamResponse:
    fault = state.faults.next_fault()
    if fault is not None:
        state.faults.record(fault)
    if fault in GATEWAY_KINDS:
        await drain(request)
        return gateway_response(str(fault))
    if fault == "reset":
        await request.content.read(64 * 1024)
        return abort(request)
    if fault == "crash":
        await request.content.read(64 * 1024)
        return state.service.crash()
    try:
        response = await _upload(request, state, media_type, annotate=fault != "stored500")
    except ConnectionError:  # the client went away mid-body; nothing was stored
        return abort(request)
    if fault == "stored500" and response.status == 200:
        response = plain(500, INTERNAL_SERVER_ERROR)
    if fault == "slow":
        await asyncio.sleep(state.config.slow_ms / 1000)
    return response


async def _upload(request: web.Request, state: ServerState, media_type: str, *,
                  annotate: bool) -> web.Response:
    received = await receive(request, state.store, keep=not state.config.discard)
    try:
        async with state.service.working():
            return await _process(request, state, media_type, received, annotate)
    except (GetiError, PlainError) as error:
        return error.response()
    finally:
        received.discard()


async def _process(request: web.Request, state: ServerState, media_type: str,
                   received: Received, annotate: bool) -> web.Response:
    workspace_id = parse_workspace_id(request.match_info["workspace_id"])
    project_id = parse_id("project_id", request.match_info["project_id"])
    dataset_id = parse_id("dataset_id", request.match_info["dataset_id"])
    if media_type == "image":
        if received.filename is not None:
            _validate_file(request, state, received, IMAGE_EXTENSIONS, "image")
        label_ids = _parse_upload_info(received.upload_info)
    else:
        label_ids = _parse_upload_info(received.upload_info)
    if received.filename is None:
        raise validation_error({"file": "Field required"})
    if media_type == "video":
        _validate_file(request, state, received, VIDEO_EXTENSIONS, "video")
    content_length = request.content_length
    if content_length is None:  # int(request.headers["content-length"]) → KeyError
        raise PlainError()
    _check_free_space(state, content_length)
    name, extension = _parse_filename(received.filename)
    project = state.world.project(project_id)
    if project is None or workspace_id != state.world.workspace_id:
        raise project_not_found(project_id)
    labels = _resolve_labels(project, label_ids)
    if received.size == 0:
        raise PlainError()  # RuntimeError("Uploaded file should have size defined")
    record = await probe(state, project, dataset_id, media_type, received, name, extension)
    cost = state.config.decode_ns_per_pixel
    if cost > 0 and media_type == "image":   # still holding a worker and the upload
        await asyncio.sleep(record.width * record.height * cost / 1e9)
    state.store.add(record, received.path)
    received.path = None  # moved into place
    if labels and not annotate:
        raise PlainError()  # the stored500 fault: the annotation step never happens
    if labels:
        save_scenes(state, project, upload_scenes(state, project, record, labels))
    return web.json_response(media_view(state, project, record))


def _validate_file(
    request: web.Request,
    state: ServerState,
    received: Received,
    allowed: list[str],
    word: str,
) -> None:
    size = received.size
    if not size:
        if request.content_length is None:
            raise PlainError()  # KeyError: 'content-length'
        size = request.content_length
    limit = state.config.max_upload_bytes
    if size > limit:
        raise GetiError(
            413, "payload_too_large",
            f"Request too large: exceeding {limit / (1024**2)} MB is not allowed.",
        )
    extension = os.path.splitext(str(received.filename))[1].lower()
    if extension not in allowed:
        raise invalid_media(
            f"Not a valid {word} format. Received {extension}, but only the following "
            f"are allowed: {allowed}"
        )


def _parse_upload_info(text: str) -> list[str]:
    if text == "{}":
        return []
    try:
        info: Any = json.loads(text)
    except json.JSONDecodeError:
        raise bad_request("upload_info must be in json format.") from None
    if not isinstance(info, dict):
        raise bad_request(
            f"upload_info must be a dictionary in json format. "
            f"Received '{info}' of type {type(info)} instead."
        )
    label_ids = info.get("label_ids", [])
    if not isinstance(label_ids, list):
        raise bad_request("label_ids must be a list of well-formed MongoDB ObjectIDs.")
    for label_id in label_ids:
        if not (isinstance(label_id, str) and len(label_id) == 24 and _is_hex(label_id)):
            raise invalid_id("label_id", str(label_id))
    return [str(label_id).lower() for label_id in label_ids]


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)


def _check_free_space(state: ServerState, upload_size: int) -> None:
    free = shutil.disk_usage(state.store.data_dir).free
    if state.config.disk_full or upload_size > free:
        raise GetiError(
            507, "not_enough_space",
            f"Cannot upload media of size {upload_size / 1024**3:.2f} GiB when only "
            f"{free / 1024**3:.2f}GB is available: {MIN_FREE_SPACE_GIB:.2f} GB of space "
            "must be kept free",
        )


def _parse_filename(filename: str) -> tuple[str, str]:
    if not filename:
        raise invalid_media("Cannot upload media with an empty file name")
    base, extension = os.path.splitext(filename)
    name = base.strip()
    if not name:
        raise invalid_media("Cannot upload media with an empty basename")
    if not extension:
        raise invalid_media("Cannot upload media without an extension")
    return name, extension


def _resolve_labels(project: Project, label_ids: list[str]) -> tuple[str, ...]:
    if not label_ids:
        return ()
    by_id = {label.id: label for label in project.labels}
    missing = sorted({i for i in label_ids if i not in by_id})
    if missing:
        listed = ", ".join(f"ID({i})" for i in missing)
        raise GetiError(
            404, "label_not_found",
            f"Labels with the following IDs were not found in the project: {{{listed}}}",
        )
    if project.task_type not in GLOBAL_TASK_TYPES:
        # an unhandled exception in Geti (no handler is registered for it) → plain 500
        raise PlainError()
    return tuple(dict.fromkeys(label_ids))  # the annotation step adds their ancestors


