"""Shared runtime state of the local Geti 3 and the request helpers every route uses."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

from aiohttp import web

from .config import Geti3Config
from .errors import ApiError, error, invalid, missing, not_found, path_uuid
from .faults import Injector, WriteGate
from .store import Project, Store
from .tus_store import UploadStore


@dataclass
class Geti3State:
    config: Geti3Config
    store: Store
    uploads: UploadStore
    injector: Injector
    gate: WriteGate
    admin_token: str
    busy_uploads: set[str] = field(default_factory=set)  # TUS per-upload locks (§6: 423)
    requests: int = 0
    media_received: int = 0  # write requests that reached the media routes
    annotations_stored: int = 0  # annotation POSTs committed


STATE: web.AppKey[Geti3State] = web.AppKey("geti_bulk_geti3_state", Geti3State)


def state_of(request: web.Request) -> Geti3State:
    return request.app[STATE]


def get_project(request: web.Request) -> Project:
    """``get_project``: 400 for a malformed id, 404 ``Project with ID … not found.`` (§3)."""
    project_id = path_uuid("project_id", request.match_info["project_id"])
    project = state_of(request).store.get_project(project_id)
    if project is None:
        raise not_found("Project", project_id)
    return project


async def read_json(request: web.Request) -> Any:
    """The body as FastAPI reads a JSON model parameter; a decode error is a 422 at once."""
    raw = await request.read()
    if not raw:
        return None
    content_type = request.headers.get("Content-Type")
    if content_type:
        message = Message()
        message["content-type"] = content_type
        subtype = message.get_content_subtype()
        is_json = message.get_content_maintype() == "application" and (
            subtype == "json" or subtype.endswith("+json"))
        if not is_json:
            return raw.decode("utf-8", errors="replace")
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        pos = exc.pos if isinstance(exc, json.JSONDecodeError) else exc.start
        msg = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise invalid([error("json_invalid", ("body", pos), "JSON decode error", {},
                             {"error": msg})]) from None


def require_body(body: Any) -> Any:
    """A required body that is absent: ``[{"type": "missing", "loc": ["body"], …}]``."""
    if body is None:
        raise invalid([missing(("body",), None)])
    return body


def json_reply(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


def detail(status: int, message: str, headers: dict[str, str] | None = None) -> ApiError:
    return ApiError(status, message, headers)
