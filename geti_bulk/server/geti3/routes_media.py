"""Media routes under ``/api/projects/{project_id}/dataset/media`` (GETI3_API.md §5, §6, §8):
multipart upload, ``:from-upload``, listing, ids, detail, binary, delete, bulk delete."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from .errors import ApiError, ErrorList, Loc, error, invalid, missing, not_found, path_uuid
from .faults import reset_connection
from .listing import parse_media_query
from .media_create import create_media, name_and_extension, split_upload_filename
from .multipart import Form, read_form
from .state import Geti3State, get_project, json_reply, read_json, require_body, state_of
from .store import Media, Project
from .tus import claim, file_sha256
from .validate import BAD, field, v_list, v_object, v_str, v_uuid
from .views import media_view


def get_media(request: web.Request, project: Project) -> Media:
    media_id = path_uuid("media_id", request.match_info["media_id"])
    media = state_of(request).store.get_media(project.id, media_id)
    if media is None:
        raise not_found("Media", media_id)
    return media


async def upload(request: web.Request) -> web.StreamResponse:
    """``POST …/dataset/media``: one ``file`` part → 201 ``MediaView`` (§5)."""
    state = state_of(request)
    async with state.gate.begin() as write:
        state.media_received += 1
        if write.fault == "reset":
            return await reset_connection(request)
        form = await read_form(request, state.store)
        try:
            project = get_project(request)
            spooled = _file_part(form)
            name, extension = name_and_extension(spooled.filename)
            media = await create_media(state, project, name, extension, spooled.path,
                                       spooled.size, spooled.sha256, write, decode=False)
        finally:
            form.discard()
        return json_reply(media_view(media), 201)


def _file_part(form: Form) -> Any:
    """The ``file`` part; absent, FastAPI reports it twice (dependency + endpoint, §15)."""
    spooled = form.files.get("file")
    if spooled is not None:
        return spooled
    loc: Loc = ("body", "file")
    if "file" in form.fields:
        value = form.fields["file"]
        entry = error("value_error", loc, "Value error, Expected UploadFile, received: "
                      "<class 'str'>", value, {"error": {}})
    else:
        entry = missing(loc, None)
    raise invalid([entry, dict(entry)])


async def from_upload(request: web.Request) -> web.StreamResponse:
    """``POST …/dataset/media:from-upload`` ``{"upload_id", "name"?}`` → 201 (§6)."""
    state = state_of(request)
    async with state.gate.begin() as write:
        state.media_received += 1
        if write.fault == "reset":
            return await reset_connection(request)
        body = await read_json(request)
        project = get_project(request)
        upload_id, name = _parse_from_upload(require_body(body))
        media = await _consume(state, project, upload_id, name, write)
        return json_reply(media_view(media), 201)


async def _consume(state: Geti3State, project: Project, upload_id: str, name: str | None,
                   write: Any) -> Media:
    async with claim(state, upload_id) as upload:
        stem, extension = split_upload_filename(upload.filename)
        path = state.uploads.path(upload.id)
        sha256 = await asyncio.to_thread(file_sha256, path)
        return await create_media(state, project, name if name is not None else stem,
                                  extension, path, upload.offset, sha256, write, decode=True)


def _parse_from_upload(body: Any) -> tuple[str, str | None]:
    errs: ErrorList = []
    loc: Loc = ("body",)
    obj = v_object(body, loc, errs, None)
    if obj is BAD:
        raise invalid(errs)
    upload_id = field(obj, "upload_id", loc, errs, v_uuid)
    name = field(obj, "name", loc, errs, lambda v, lc, e: v_str(v, lc, e, 1, 255), None)
    if errs:
        raise invalid(errs)
    return upload_id, name


async def list_media(request: web.Request) -> web.Response:
    """§8: ``{"items", "pagination": {offset, limit, count, total}}``, newest first by default."""
    project = get_project(request)
    query = parse_media_query(request, project.id, paged=True)
    store = state_of(request).store
    total = store.count_media(query.clause, query.params)
    items = store.query_media(query.clause, query.params, "DESC" if query.descending else "ASC",
                              query.limit, query.offset)
    return json_reply({"items": [media_view(m, _frames(store, m)) for m in items], "pagination": {
        "offset": query.offset, "limit": query.limit, "count": len(items), "total": total}})


async def list_ids(request: web.Request) -> web.Response:
    project = get_project(request)
    query = parse_media_query(request, project.id, paged=False)
    ids = state_of(request).store.media_ids(query.clause, query.params)
    return json_reply({"items": [{"id": i, "type": t} for i, t in ids]})


async def media_detail(request: web.Request) -> web.Response:
    media = get_media(request, get_project(request))
    return json_reply(media_view(media, _frames(state_of(request).store, media)))


def _frames(store: Any, media: Any) -> int:
    """A video's annotated frames (its frame items, §5)."""
    return int(store.annotated_frames(media.id)) if media.type == "video" else 0


async def media_binary(request: web.Request) -> web.StreamResponse:
    media = get_media(request, get_project(request))
    path = state_of(request).store.blob_path(media)
    if not path.is_file():
        raise ApiError(404, "Media binary file is not found.")
    return web.FileResponse(path, headers={
        "Content-Disposition": f'attachment; filename="{media.name}.{media.format}"'})


async def delete_media(request: web.Request) -> web.Response:
    store = state_of(request).store
    store.delete_media(get_media(request, get_project(request)))
    return web.Response(status=204)


async def bulk_delete(request: web.Request) -> web.Response:
    """``DELETE …/dataset/media`` ``{"media_ids": [...]}`` → 204; unknown ids ignored (§8)."""
    body = await read_json(request)
    project = get_project(request)
    errs: ErrorList = []
    obj = v_object(require_body(body), ("body",), errs, None)
    ids = BAD if obj is BAD else field(obj, "media_ids", ("body",), errs,
                                       lambda v, lc, e: v_list(v, lc, e, v_uuid))
    if errs or ids is BAD:
        raise invalid(errs)
    store = state_of(request).store
    for media_id in ids:
        media = store.get_media(project.id, media_id)
        if media is not None:
            store.delete_media(media)
    return web.Response(status=204)

