"""System and project routes (GETI3_API.md §3, §4, §10): ``/health``, ``/api/system/info``,
``GET/POST /api/projects``, ``GET /api/projects/{id}``."""

from __future__ import annotations

import secrets
import sys
import uuid
from typing import Any

from aiohttp import web

from .errors import ApiError, ErrorList, Loc, invalid
from .state import get_project, json_reply, read_json, require_body, state_of
from .store import Conflict, Label
from .validate import BAD, field, v_bool, v_enum, v_list, v_object, v_str, v_uuid
from .views import project_view

TASK_TYPES = ("classification", "detection", "instance_segmentation")
COLOR_PATTERN = r"^#([A-Fa-f0-9]{6}|[A-Fa-f0-9]{3})$"
DUPLICATE_LABELS = "Either label names or hotkeys have duplicates"


async def health(request: web.Request) -> web.Response:
    """§10: ``{"status": "ok"}``."""
    return json_reply({"status": "ok"})


async def system_info(request: web.Request) -> web.Response:
    """§10: ``{"license_accepted", "platform"}``."""
    return json_reply({"license_accepted": True, "platform": sys.platform})


async def list_projects(request: web.Request) -> web.Response:
    """§4: a plain JSON array, no pagination."""
    return json_reply([project_view(p) for p in state_of(request).store.list_projects()])


async def get_project_route(request: web.Request) -> web.Response:
    return json_reply(project_view(get_project(request)))


async def create_project(request: web.Request) -> web.Response:
    """§4: 201 ``ProjectView``; the id may be chosen by the client; 409 on conflicts."""
    body = require_body(await read_json(request))
    project_id, name, task_type, exclusive, labels = _parse_create(body)
    store = state_of(request).store
    if store.project_exists(project_id):
        raise ApiError(409, f"Project with ID '{project_id}' already exists.")
    for label in labels:
        if store.label_exists(label.id):
            raise ApiError(409, f"Label with ID '{label.id}' already exists.")
    try:
        store.add_project(project_id, name, task_type, exclusive, labels)
    except Conflict:
        raise ApiError(409, DUPLICATE_LABELS) from None
    project = store.get_project(project_id)
    assert project is not None
    return json_reply(project_view(project), 201)


def _parse_create(body: Any) -> tuple[str, str, str, bool, list[Label]]:
    errs: ErrorList = []
    loc: Loc = ("body",)
    obj = v_object(body, loc, errs, None)
    if obj is BAD:
        raise invalid(errs)
    name = field(obj, "name", loc, errs, v_str)
    task = field(obj, "task", loc, errs, _task)
    project_id = field(obj, "id", loc, errs, v_uuid, None)
    if errs:
        raise invalid(errs)
    task_type, exclusive, labels = task
    return project_id or str(uuid.uuid4()), name, task_type, exclusive, labels


def _task(value: Any, loc: Loc, errs: ErrorList) -> Any:
    obj = v_object(value, loc, errs, "TaskCreate")
    if obj is BAD:
        return BAD
    task_type = field(obj, "task_type", loc, errs, lambda v, lc, e: v_enum(v, lc, e, TASK_TYPES))
    exclusive = field(obj, "exclusive_labels", loc, errs, v_bool, False)
    labels = field(obj, "labels", loc, errs, lambda v, lc, e: v_list(v, lc, e, _label), [])
    if BAD in (task_type, exclusive, labels):
        return BAD
    return task_type, exclusive, labels


def _label(value: Any, loc: Loc, errs: ErrorList) -> Any:
    obj = v_object(value, loc, errs, "LabelCreate")
    if obj is BAD:
        return BAD
    label_id = field(obj, "id", loc, errs, v_uuid, None)
    name = field(obj, "name", loc, errs, lambda v, lc, e: v_str(v, lc, e, 1, 50))
    hotkey = field(obj, "hotkey", loc, errs, v_str, None)
    color = field(obj, "color", loc, errs,
                  lambda v, lc, e: v_str(v, lc, e, pattern=COLOR_PATTERN), None)
    if BAD in (label_id, name, hotkey, color):
        return BAD
    return Label(label_id or str(uuid.uuid4()), name,
                 color or f"#{secrets.token_hex(3).upper()}", hotkey)
