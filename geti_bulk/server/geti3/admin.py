"""Admin endpoints outside Geti's API, guarded by ``x-admin-token`` (the Geti 2 server's
pattern): ``GET /_admin/stats``, ``GET /_admin/media``, ``POST /_admin/faults``."""

from __future__ import annotations

import hmac
import json
from dataclasses import asdict
from typing import Any

from aiohttp import web

from ..replies import plain
from .state import Geti3State, state_of


def _guard(request: web.Request) -> Geti3State:
    state = state_of(request)
    given = request.headers.get("x-admin-token", "")
    if not hmac.compare_digest(given.encode(), state.admin_token.encode()):
        raise web.HTTPForbidden(text="admin token required", content_type="text/plain")
    return state


def stats_of(state: Geti3State) -> dict[str, Any]:
    store = state.store
    groups = store.duplicate_groups()
    per_project: dict[str, int] = {}
    for media in store.all_media():
        per_project[media.project_id] = per_project.get(media.project_id, 0) + 1
    return {
        "media_total": store.media_count(),
        "media_per_project": per_project,
        "duplicates": sum(g["count"] - 1 for g in groups),
        "duplicate_groups": groups,
        "faults": dict(state.injector.counts),
        "locked_errors": state.gate.locked_answered,
        "writers_inflight": state.gate.inflight,
        "peak_writers": state.gate.peak,
        "annotations_stored": state.annotations_stored,
        "annotated_media": store.annotated_count(),
        "uploads": len(state.uploads.list_all()),
        "media_requests": state.media_received,
        "requests": state.requests,
    }


async def stats(request: web.Request) -> web.Response:
    return web.json_response(stats_of(_guard(request)))


async def list_media(request: web.Request) -> web.Response:
    state = _guard(request)
    return web.json_response({"media": [asdict(m) for m in state.store.all_media()]})


async def set_faults(request: web.Request) -> web.Response:
    """``{"spec": "locked=0.1", "script": ["stored500", "ok"]}`` replaces the faults."""
    state = _guard(request)
    try:
        body = json.loads(await request.read() or b"{}")
        if not isinstance(body, dict):
            raise ValueError("expected a JSON object")
        spec = str(body.get("spec", ""))
        script = body.get("script") or []
        if not isinstance(script, list):
            raise ValueError("'script' must be a list")
        state.injector.configure(spec, [str(s) for s in script])
    except ValueError as exc:
        return plain(400, str(exc))
    return web.json_response({"spec": spec, "script": script})
