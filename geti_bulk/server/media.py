"""``media:query`` and single-media endpoints (detail, delete, display)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from .config import STATE, ServerState
from .filters import SORT_COLUMNS, parse_filter
from .projects import enum_param, int_param
from .replies import (
    GetiError,
    dataset_not_found,
    media_not_found,
    parse_id,
    project_not_found,
    validation_error,
)
from .seed import Dataset, Project
from .store import MediaRecord
from .uploads import parse_workspace_id
from .views import media_to_rest

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


async def query_media(request: web.Request) -> web.Response:
    raw = await request.read()
    try:
        body: Any = json.loads(raw) if raw.strip() else ...
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = ...
    if body is ...:
        raise GetiError(400, "missing_payload", "Missing request body")
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
    result: dict[str, Any] = {
        "media": [media_to_rest(state.world, project, r, in_query=True) for r in records],
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
    return web.json_response(media_to_rest(state.world, project, record))


async def delete_media(request: web.Request) -> web.Response:
    state, _, record = _media(request)
    state.store.delete(record)
    return web.json_response({"result": "success"})


async def display_media(request: web.Request) -> web.StreamResponse:
    """The stored bytes (full/stream; thumbnails are the full media too)."""
    state, _, record = _media(request)
    path = state.store.blob_path(record.id, record.extension)
    if not record.stored or not path.exists():
        raise web.HTTPNotFound()
    content_type = _CONTENT_TYPES.get(record.extension, "application/octet-stream")
    return web.FileResponse(path, headers={"Content-Type": content_type})
