"""Admin endpoints outside Geti's API, guarded by ``x-admin-token``."""

from __future__ import annotations

import hmac
import json
from typing import Any

from aiohttp import web

from .config import STATE, ServerState
from .replies import plain


def _guard(request: web.Request) -> ServerState:
    state = request.app[STATE]
    given = request.headers.get("x-admin-token", "")
    if not hmac.compare_digest(given.encode(), state.admin_token.encode()):
        raise web.HTTPForbidden(text="admin token required", content_type="text/plain")
    return state


def stats_of(state: ServerState) -> dict[str, Any]:
    groups = state.store.duplicate_groups()
    return {
        "media_per_dataset": state.store.media_per_dataset(),
        "media_total": state.store.count(),
        "duplicates": sum(g["count"] - 1 for g in groups),
        "duplicate_groups": groups,
        "faults": dict(state.faults.counts),
        "peak_inflight": state.service.peak_inflight,
        "inflight": state.service.inflight,
        "overload_503": state.service.answered_503,
        "restarts": state.service.restarts,
        "uploads_received": state.uploads_received,
        "requests": state.requests,
    }


async def stats(request: web.Request) -> web.Response:
    return web.json_response(stats_of(_guard(request)))


async def list_media(request: web.Request) -> web.Response:
    state = _guard(request)
    dataset_id = request.query.get("dataset_id") or None
    return web.json_response(
        {"media": [r.to_admin() for r in state.store.iter_media(dataset_id)]}
    )


async def set_faults(request: web.Request) -> web.Response:
    state = _guard(request)
    try:
        body = json.loads(await request.read() or b"{}")
        if not isinstance(body, dict):
            raise ValueError("expected a JSON object")
        spec = str(body.get("spec", ""))
        script = body.get("script") or []
        if not isinstance(script, list):
            raise ValueError("'script' must be a list")
        state.faults.configure(spec, [str(s) for s in script])
    except ValueError as exc:
        return plain(400, str(exc))
    return web.json_response({"spec": spec, "script": script})
