"""Annotation endpoints under the dataset prefix (GETI_ANNOTATIONS.md §1, §4.1, §5).

POST (image or video frame) runs Geti's order: JSON body (400 ``missing_payload``) → path
ids (400) → [frame: video 404, frame 404] → free disk (507) → project (404) → [image 404]
→ schema (§2, §13) → labels, bounds, exclusivity, tasks, unique ids (§4.2, §4.3) → store a
new version → 200 with the scene. Annotation faults (``--annotation-faults``) come first.
GET latest answers 204 with an empty body when there is no scene or it is empty.
"""

from __future__ import annotations

import asyncio
import shutil

from aiohttp import web

from .annotation_manager import build_scene, save_scenes
from .annotation_rules import check_annotations
from .annotation_schema import check_scene
from .annotation_views import Scene, scene_to_rest
from .config import STATE, ServerState
from .faults import GATEWAY_KINDS, abort, gateway_response
from .projects import bool_param, int_param
from .replies import (
    INTERNAL_SERVER_ERROR,
    GetiError,
    PlainError,
    dataset_not_found,
    media_not_found,
    parse_id,
    parse_workspace_id,
    plain,
    project_not_found,
    read_json,
    validation_error,
)
from .seed import Project
from .store import MediaRecord

MAX_ANNOTATIONS_RETURNED = 500
MIN_FREE_SPACE_GIB = 30
_NO_CACHE = {"Cache-Control": "no-cache"}


async def post_image_annotation(request: web.Request) -> web.StreamResponse:
    return await _faulted(request, frame=False)


async def post_frame_annotation(request: web.Request) -> web.StreamResponse:
    return await _faulted(request, frame=True)


async def _faulted(request: web.Request, *, frame: bool) -> web.StreamResponse:
    """The annotation fault of this POST, if any, around the real work."""
    state = request.app[STATE]
    state.annotation_posts += 1
    fault = state.annotation_faults.next_fault()
    if fault is not None:
        state.annotation_faults.record(fault)
    if fault in GATEWAY_KINDS:
        await request.read()
        return gateway_response(str(fault))
    if fault == "reset":
        return abort(request)
    try:
        response = await (_post_frame(request, state) if frame else _post_image(request, state))
    except (GetiError, PlainError) as error:
        response = error.response()
    if fault == "stored500" and response.status == 200:
        response = plain(500, INTERNAL_SERVER_ERROR)
    if fault == "slow":
        await asyncio.sleep(state.config.slow_ms / 1000)
    return response


def _path_ids(request: web.Request) -> tuple[str, str, str]:
    """Workspace, project and dataset ids, validated in Geti's order."""
    workspace_id = parse_workspace_id(request.match_info["workspace_id"])
    return (workspace_id, parse_id("project_id", request.match_info["project_id"]),
            parse_id("dataset_id", request.match_info["dataset_id"]))


def _project(state: ServerState, workspace_id: str, project_id: str) -> Project:
    project = state.world.project(project_id)
    if project is None or workspace_id != state.world.workspace_id:
        raise project_not_found(project_id)
    return project


def _check_disk(state: ServerState, operation: str) -> None:
    free = shutil.disk_usage(state.store.data_dir).free / 1024**3
    if state.config.disk_full:
        raise GetiError(507, "not_enough_space",
                        f"Cannot perform operation '{operation}' when there is {free:.2f}GB of "
                        f"storage space left. At least {MIN_FREE_SPACE_GIB}GB should be "
                        "available.")


def _frame_index(request: web.Request) -> int:
    try:
        return int(request.match_info["frame_index"])
    except ValueError:
        raise PlainError() from None  # ``int(frame_index)`` in the endpoint: unhandled


async def _post_image(request: web.Request, state: ServerState) -> web.Response:
    body = await read_json(request)
    workspace_id, project_id, dataset_id = _path_ids(request)
    image_id = parse_id("image_id", request.match_info["image_id"])
    _check_disk(state, "Annotate image")
    project = _project(state, workspace_id, project_id)
    image = state.store.get(dataset_id, image_id, "image")
    if image is None:
        raise media_not_found("image", dataset_id, image_id)
    return _annotate(state, project, image, None, body)


async def _post_frame(request: web.Request, state: ServerState) -> web.Response:
    body = await read_json(request)
    workspace_id, project_id, dataset_id = _path_ids(request)
    video_id = parse_id("video_id", request.match_info["video_id"])
    frame_index = _frame_index(request)
    video = state.store.get(dataset_id, video_id, "video")
    if video is None:
        raise media_not_found("video", dataset_id, video_id)
    if not 0 <= frame_index < (video.frame_count or 0):
        raise GetiError(404, "video_frame_not_found",
                        f"The requested frame index {frame_index} could not be found in this "
                        f"video. Video ID: `{video_id}`. ")
    _check_disk(state, "Annotate video frame")
    project = _project(state, workspace_id, project_id)
    return _annotate(state, project, video, frame_index, body)


def _annotate(state: ServerState, project: Project, media: MediaRecord,
              frame_index: int | None, body: object) -> web.Response:
    check_scene(body, "image" if frame_index is None else "video_frame")
    assert isinstance(body, dict)  # the schema insists on an object
    check_annotations(body, project, media.width, media.height)
    scene = build_scene(state, project, media, frame_index, body)
    save_scenes(state, project, [scene])
    return web.json_response(scene_to_rest(scene, rotated=is_rotated_detection(project),
                                           posted=True))


def is_rotated_detection(project: Project) -> bool:
    tasks = project.trainable_tasks
    return len(tasks) == 1 and tasks[0].task_type == "rotated_detection"


def _annotation_id(request: web.Request) -> str:
    raw = request.match_info["annotation_id"]
    return raw if raw == "latest" else parse_id("annotation_id", raw)


def _label_only(request: web.Request) -> bool:
    errors: dict[str, str] = {}
    value = bool_param(request, "label_only", errors)
    if errors:
        raise validation_error(errors)
    return value


async def get_image_annotation(request: web.Request) -> web.Response:
    workspace_id, project_id, dataset_id = _path_ids(request)
    image_id = parse_id("image_id", request.match_info["image_id"])
    return _scene_reply(request, workspace_id, project_id, dataset_id, image_id, None)


async def get_frame_annotation(request: web.Request) -> web.Response:
    workspace_id, project_id, dataset_id = _path_ids(request)
    video_id = parse_id("video_id", request.match_info["video_id"])
    return _scene_reply(request, workspace_id, project_id, dataset_id, video_id,
                        _frame_index(request))


def _scene_reply(request: web.Request, workspace_id: str, project_id: str, dataset_id: str,
                 media_id: str, frame_index: int | None) -> web.Response:
    """One scene version (or the latest); 204 with no body when none or empty (§1)."""
    state = request.app[STATE]
    annotation_id = _annotation_id(request)
    label_only = _label_only(request)
    project = _project(state, workspace_id, project_id)
    scenes = state.store.scenes
    scene: Scene | None
    if annotation_id == "latest":
        scene = scenes.latest(dataset_id, media_id, frame_index)
    else:
        scene = scenes.get(dataset_id, media_id, annotation_id)
        if scene is None or scene.frame_index != frame_index:
            raise GetiError(404, "annotation_not_found",
                            "The requested annotation scene could not be found. Annotation "
                            f"Scene ID: `{annotation_id}`. ")
    if scene is None or not scene.annotations:
        return web.Response(status=204, headers=_NO_CACHE)
    return web.json_response(scene_to_rest(scene, label_only=label_only,
                                           rotated=is_rotated_detection(project)))


async def get_video_annotations(request: web.Request) -> web.Response:
    """The latest scene of each annotated frame, at most 500, frames ``start_frame`` to
    ``end_frame`` (inclusive) that are multiples of ``frameskip``; 204 if none."""
    state = request.app[STATE]
    workspace_id, project_id, dataset_id = _path_ids(request)
    video_id = parse_id("video_id", request.match_info["video_id"])
    annotation_id = _annotation_id(request)
    errors: dict[str, str] = {}
    label_only = bool_param(request, "label_only", errors)
    start = int_param(request, "start_frame", -1, -(2**63), None, errors)
    end = int_param(request, "end_frame", -1, -(2**63), None, errors)
    frameskip = int_param(request, "frameskip", 1, 1, None, errors)
    if errors:
        raise validation_error(errors)
    if annotation_id != "latest":
        raise GetiError(405, "not_implemented", "Only latest annotation can be served currently")
    project = _project(state, workspace_id, project_id)
    if project.dataset(dataset_id) is None:
        raise dataset_not_found(project.name, project.id, dataset_id)
    first = start if "start_frame" in request.query else None
    last = end if "end_frame" in request.query else None
    scenes, total = state.store.scenes.latest_frames(dataset_id, video_id, first, last,
                                                     frameskip, MAX_ANNOTATIONS_RETURNED)
    if not scenes:
        return web.Response(status=204, headers=_NO_CACHE)
    rotated = is_rotated_detection(project)
    return web.json_response({
        "video_annotations": [scene_to_rest(s, label_only=label_only, rotated=rotated)
                              for s in scenes],
        "video_annotation_properties": {
            "total_count": len(scenes), "start_frame": scenes[0].frame_index,
            "end_frame": scenes[-1].frame_index, "total_requested_count": total,
            "requested_start_frame": first, "requested_end_frame": last,
        },
    })
