"""``media:query`` and single-media endpoints (detail, delete, display)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from .config import STATE, ServerState
from .faults import GATEWAY_KINDS, gateway_response
from .filters import SORT_COLUMNS, parse_filter
from .projects import enum_param, int_param
from .replies import (
    dataset_not_found,
    media_not_found,
    parse_id,
    parse_workspace_id,
    project_not_found,
    read_json,
    validation_error,
)
from .seed import Dataset, Project
from .store import MediaRecord
from .views import MediaAnnotation, media_to_rest

MAX_MEDIA_RETURNED = 1000
_CONTENT_TYPES = {
    ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".bmp": "image/bmp",
    ".webp": "image/webp", ".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime",
    ".avi": "video/x-msvideo", ".mkv": "video/x-matroska", ".webm": "video/webm",
}


def _locate(request: web.Request) -> tuple[ServerState, Project, str]:
    """Validated (state, project, dataset id) from the path; 400 / 404 like Geti."""
    state = request.app[STATE]
    workspace_id = parse_workspace_id(request.match_info["workspace_id"])
    project_id = parse_id("project_id", request.match_info["project_id"])
    dataset_id = parse_id("dataset_id", request.match_info["dataset_id"])
    project = state.world.project(project_id)
    if project is None or workspace_id != state.world.workspace_id:
        raise project_not_found(project_id)
    return state, project, dataset_id


def _dataset(project: Project, dataset_id: str) -> Dataset:
    dataset = project.dataset(dataset_id)
    if dataset is None:
        raise dataset_not_found(project.name, project.id, dataset_id)
    return dataset


def media_view(state: ServerState, project: Project, record: MediaRecord) -> dict[str, Any]:
    """A media item as Geti shows it, its annotation state from the latest scene(s)."""
    return media_to_rest(state.world, project, record, _annotation_of(state, [record])[record.id])


def _annotation_of(state: ServerState,
                   records: list[MediaRecord]) -> dict[str, MediaAnnotation]:
    images = [r for r in records if r.type == "image"]
    dataset_id = records[0].dataset_id if records else ""
    latest = state.store.scenes.image_summaries(dataset_id, [r.id for r in images])
    result: dict[str, MediaAnnotation] = {}
    for record in records:
        if record.type == "image":
            scene_id, states = latest.get(record.id, (None, []))
            result[record.id] = MediaAnnotation(scene_id, tuple((t, s) for t, s in states))
        else:
            frames = state.store.scenes.frame_states(record.dataset_id, record.id)
            result[record.id] = MediaAnnotation(
                frames=tuple(tuple((t, s) for t, s in f) for f in frames))
    return result


async def query_media(request: web.Request) -> web.Response:
    body = await read_json(request)
    workspace_id = parse_workspace_id(request.match_info["workspace_id"])
    project_id = parse_id("project_id", request.match_info["project_id"])
    dataset_id = parse_id("dataset_id", request.match_info["dataset_id"])
    errors: dict[str, str] = {}
    skip = int_param(request, "skip", 0, 0, None, errors)
    limit = int_param(request, "limit", MAX_MEDIA_RETURNED, 1, MAX_MEDIA_RETURNED, errors)
    direction = enum_param(request, "sort_direction", "asc", ["asc", "dsc"], errors)
    sort_by = enum_param(request, "sort_by", "media_name", list(SORT_COLUMNS), errors)
    if errors:
        raise validation_error(errors)
    sql = parse_filter(body)
    state = request.app[STATE]
    project = state.world.project(project_id)
    if project is None or workspace_id != state.world.workspace_id:
        raise project_not_found(project_id)
    _dataset(project, dataset_id)
    order = "DESC" if direction == "dsc" else "ASC"
    column = SORT_COLUMNS[sort_by]
    records = state.store.query(
        dataset_id, sql.where, sql.params, f"{column} {order}, id {order}", skip, limit
    )
    images, videos, frames = state.store.counts(dataset_id, sql.where, sql.params)
    total_images, total_videos, _ = state.store.counts(dataset_id)
    annotations = _annotation_of(state, records)
    result: dict[str, Any] = {
        "media": [media_to_rest(state.world, project, r, annotations[r.id], in_query=True)
                  for r in records],
        "total_matched_images": images,
        "total_matched_videos": videos,
        "total_matched_video_frames": frames,
        "total_images": total_images,
        "total_videos": total_videos,
    }
    if len(records) == limit:
        result["next_page"] = (
            f"/api/v1/organizations/{state.world.organization_id}/workspaces/"
            f"{workspace_id}/projects/{project.id}/datasets/{dataset_id}/media:query"
            f"?limit={limit}&skip={skip + limit}&sort_by={sort_by}&sort_direction={direction}"
        )
    return web.json_response(result)


def _media(request: web.Request) -> tuple[ServerState, Project, MediaRecord]:
    media_type = "image" if "/media/images/" in request.path else "video"
    state, project, dataset_id = _locate(request)
    media_id = parse_id(f"{media_type}_id", request.match_info["media_id"])
    _dataset(project, dataset_id)
    record = state.store.get(dataset_id, media_id, media_type)
    if record is None:
        raise media_not_found(media_type, dataset_id, media_id)
    return state, project, record


async def get_media(request: web.Request) -> web.Response:
    state, project, record = _media(request)
    return web.json_response(media_view(state, project, record))


async def delete_media(request: web.Request) -> web.Response:
    state, _, record = _media(request)
    state.store.delete(record)
    return web.json_response({"result": "success"})


async def display_media(request: web.Request) -> web.StreamResponse:
    """The stored bytes (full/stream; thumbnails are the full media too), with their
    size and type; a download fault (``download_faults``) may hit it first."""
    state, _, record = _media(request)
    path = state.store.blob_path(record.id, record.extension)
    if not record.stored or not path.exists():
        raise web.HTTPNotFound()
    content_type = _CONTENT_TYPES.get(record.extension, "application/octet-stream")
    fault = state.download_faults.next_fault()
    if fault is not None:
        state.download_faults.record(fault)
        if fault in GATEWAY_KINDS:
            return gateway_response(fault)
        if fault == "slow":
            await asyncio.sleep(state.config.slow_ms / 1000)
        elif fault == "reset":
            return await _cut_download(request, path, content_type)
    return web.FileResponse(path, headers={"Content-Type": content_type})


async def _cut_download(request: web.Request, path: Any, content_type: str) -> web.StreamResponse:
    """Headers with the full Content-Length, half the bytes, then the connection drops."""
    data = path.read_bytes()
    resp = web.StreamResponse(headers={"Content-Type": content_type})
    resp.content_length = len(data)
    await resp.prepare(request)
    await resp.write(data[: len(data) // 2])
    if request.transport is not None:
        request.transport.abort()
    return resp
