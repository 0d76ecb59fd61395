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
        "annotations": annotation_stats(state),
        "peak_inflight": state.service.peak_inflight,
        "inflight": state.service.inflight,
        "overload_503": state.service.answered_503,
        "restarts": state.service.restarts,
        "uploads_received": state.uploads_received,
        "requests": state.requests,
        "first_request_at": state.first_request_at,
        "first_upload_at": state.first_upload_at,
    }


def annotation_stats(state: ServerState) -> dict[str, Any]:
    """Annotation POSTs received, their faults by kind, scene versions stored (POSTs and
    uploads with labels), and those stored while a task's auto-training was on."""
    configurations = state.configurations
    return {
        "posts": state.annotation_posts,
        "faults": dict(state.annotation_faults.counts),
        "scenes_stored": state.store.scenes.count(),
        "scenes_per_dataset": state.store.scenes.per_dataset(),
        "posted_with_auto_training_on": configurations.scenes_while_on,
        "posted_with_auto_training_on_per_task": dict(configurations.annotations_while_on),
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
    """``{"spec", "script"}`` for uploads and/or ``{"annotations": {"spec", "script"}}`` for
    annotation POSTs; a part not sent is left alone (a body with neither resets uploads)."""
    state = _guard(request)
    try:
        body = json.loads(await request.read() or b"{}")
        if not isinstance(body, dict):
            raise ValueError("expected a JSON object")
        media = _fault_part(body) if "annotations" not in body or "spec" in body or \
            "script" in body else None
        notes = body.get("annotations")
        if notes is not None and not isinstance(notes, dict):
            raise ValueError("'annotations' must be a JSON object")
        annotation = _fault_part(notes) if notes is not None else None
        if media is not None:
            state.faults.check(*media)
        if annotation is not None:
            state.annotation_faults.check(*annotation)
    except ValueError as exc:
        return plain(400, str(exc))
    answer: dict[str, Any] = {}
    if media is not None:
        state.faults.configure(*media)
        answer.update(spec=media[0], script=media[1])
    if annotation is not None:
        state.annotation_faults.configure(*annotation)
        answer["annotations"] = {"spec": annotation[0], "script": annotation[1]}
    return web.json_response(answer)


def _fault_part(body: dict[str, Any]) -> tuple[str, list[str]]:
    spec = str(body.get("spec", ""))
    script = body.get("script") or []
    if not isinstance(script, list):
        raise ValueError("'script' must be a list")
    return spec, [str(s) for s in script]
