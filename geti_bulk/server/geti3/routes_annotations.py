"""``…/dataset/media/{media_id}/annotations`` (GETI3_API.md §7, §15): POST replaces the
item's annotations (201 ``MediaAnnotations``), GET returns them (404 when never annotated),
DELETE stores JSON ``null`` (204). A video's frame is annotated (and read) with
``?frame_index=N`` (§7, §15: 0 is valid); each annotated frame is a dataset item of its own
(§5)."""

from __future__ import annotations

from aiohttp import web

from .annotation_body import parse_annotations_body
from .annotation_rules import check_annotations
from .errors import ApiError, ErrorList, not_found, path_uuid
from .faults import reset_connection
from .routes_media import get_media
from .state import get_project, json_reply, read_json, require_body, state_of
from .store import Item, Media, Project
from .validate import BAD, v_int
from .views import annotations_view

NO_FRAME_INDEX = "Video frame index is not provided."
FRAME_NOT_FOUND = "Video frame not found for the given index."


def _frame_index(request: web.Request, errs: ErrorList) -> int | None:
    """``frame_index`` (``ge=0``) is declared by the dependency and the endpoint alike, so
    a bad value is reported twice (as the missing ``file`` part is, §15)."""
    raw = request.query.getall("frame_index", [])
    if not raw:
        return None
    before = len(errs)
    value = v_int(raw[-1], ("query", "frame_index"), errs, ge=0)
    if value is BAD:
        errs.append(dict(errs[before]))
        return None
    return int(value)


def _located(request: web.Request, errs: ErrorList) -> tuple[Project, Media | None, int | None]:
    """``_get_request_media``: project, media id, frame index (422 collected), media, frame
    count. The media is None when the query is invalid (the dependency is then not run)."""
    project = get_project(request)
    path_uuid("media_id", request.match_info["media_id"])
    frame = _frame_index(request, errs)
    if errs:
        return project, None, None
    media = get_media(request, project)
    if media.type == "video" and frame is not None and frame >= (media.frame_count or 0):
        raise ApiError(400, f"Video frame index {frame} exceeds video frames count "
                            f"{media.frame_count}.")
    return project, media, frame


def _item(request: web.Request, media: Media) -> Item:
    item = state_of(request).store.get_item(media.id)
    if item is None:
        raise not_found("DatasetItem", media.id)
    return item


async def post_annotations(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    async with state.gate.begin() as write:
        if write.fault == "reset":
            return await reset_connection(request)
        body = await read_json(request)
        errs: ErrorList = []
        project, media, frame = _located(request, errs)
        if media is None:  # query errors first, then the body's, in one 422
            try:
                parse_annotations_body(require_body(body))
            except ApiError as exc:
                errs.extend(exc.detail)
            raise ApiError(422, errs)
        parsed = parse_annotations_body(require_body(body))
        if media.type == "video" and frame is None:
            raise ApiError(400, NO_FRAME_INDEX)
        check_annotations(parsed.annotations, project, media)
        if media.type == "video":
            assert frame is not None
            await write.commit_point()
            state.store.set_frame_annotations(media.id, frame, parsed.annotations)
            state.annotations_stored += 1
            write.after_commit()
            item = state.store.get_frame_item(media.id, frame)
            assert item is not None
            return json_reply(annotations_view(item, media.id), 201)
        _item(request, media)
        await write.commit_point()
        labels = {label["id"] for a in parsed.annotations for label in a["labels"]}
        if not state.store.set_annotations(media.id, parsed.annotations, labels, parsed.subset):
            raise ApiError(409, "Dataset item has already a subset assigned.")
        state.annotations_stored += 1
        write.after_commit()
        return json_reply(annotations_view(_item(request, media), media.id), 201)


def _annotated_media(request: web.Request) -> Media:
    errs: ErrorList = []
    _, media, frame = _located(request, errs)
    if media is None:
        raise ApiError(422, errs)
    if media.type == "video":
        raise ApiError(400, NO_FRAME_INDEX) if frame is None else ApiError(404, FRAME_NOT_FOUND)
    return media


async def get_annotations(request: web.Request) -> web.Response:
    errs: ErrorList = []
    _, media, frame = _located(request, errs)
    if media is not None and media.type == "video" and frame is not None:
        found = state_of(request).store.get_frame_item(media.id, frame)
        if found is None:
            raise ApiError(404, "Media has not been annotated yet.")
        return json_reply(annotations_view(found))
    item = _item(request, _annotated_media(request))
    if item.annotation_data is None or item.annotation_data == "null":
        raise ApiError(404, "Media has not been annotated yet.")
    return json_reply(annotations_view(item))


async def delete_annotations(request: web.Request) -> web.Response:
    media = _annotated_media(request)
    _item(request, media)
    state_of(request).store.delete_annotations(media.id)
    return web.Response(status=204)
