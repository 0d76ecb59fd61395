"""The aiohttp application: Geti 2.x routes under ``/api/v1``, admin routes under
``/_admin``, and the middleware that plays the gateway (latency, auth, error bodies)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from . import admin, annotation_api, auth, configuration_api, media, projects, uploads
from .config import STATE, ServerState
from .replies import INTERNAL_SERVER_ERROR, GetiError, PlainError, plain

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_ORG = "/api/v1/organizations/{organization_id}"
_WS = _ORG + "/workspaces/{workspace_id}"
_PROJECT = _WS + "/projects/{project_id}"
_DATASET = _PROJECT + "/datasets/{dataset_id}"


@web.middleware
async def gateway(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count, delay and authenticate API requests; render errors like Geti does."""
    state = request.app[STATE]
    if not request.path.startswith("/api/"):
        return await handler(request)
    state.requests += 1
    if state.first_request_at is None:
        state.first_request_at = time.time()
    if (state.first_upload_at is None and request.method == "POST"
            and request.path.endswith(("/media/images", "/media/videos"))):
        state.first_upload_at = time.time()   # its headers are in: the body comes next
    if state.config.latency_ms:
        await asyncio.sleep(state.config.latency_ms / 1000)
    refusal = auth.check(request, state.auth_rules)
    if refusal is not None:
        return refusal
    if "/datasets/" in request.path:   # the resource service's routes: is it up?
        down = state.service.unavailable()
        if down is not None:
            return down
    try:
        return await handler(request)
    except (GetiError, PlainError) as error:
        return error.response()
    except web.HTTPNotFound:
        return web.json_response({"detail": "Not Found"}, status=404)
    except web.HTTPMethodNotAllowed:
        return web.json_response({"detail": "Method Not Allowed"}, status=405)
    except web.HTTPException:
        raise
    except (ConnectionError, asyncio.CancelledError):
        raise
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return plain(500, INTERNAL_SERVER_ERROR)


def build_app(state: ServerState) -> web.Application:
    # annotation scenes are read whole (Geti has no body limit; 5000-point polygons add up)
    app = web.Application(middlewares=[gateway], client_max_size=256 * 1024**2)
    app[STATE] = state
    app.router.add_get("/api/v1/product_info", projects.product_info)
    app.router.add_get("/api/v1/personal_access_tokens/organization", projects.token_organization)
    app.router.add_get(_ORG + "/workspaces", projects.list_workspaces)
    app.router.add_get(_ORG + "/balance", projects.balance)
    app.router.add_get(_WS + "/projects", projects.list_projects)
    app.router.add_get(_PROJECT, projects.get_project)
    app.router.add_get(_PROJECT + "/datasets", projects.list_datasets)
    app.router.add_post(_DATASET + "/media:query", media.query_media)
    app.router.add_post(_DATASET + "/media/images", uploads.post_image)
    app.router.add_post(_DATASET + "/media/videos", uploads.post_video)
    for kind in ("images", "videos"):
        item = _DATASET + f"/media/{kind}/{{media_id}}"
        app.router.add_get(item, media.get_media)
        app.router.add_delete(item, media.delete_media)
        app.router.add_get(item + "/display/{display}", media.display_media)
    _add_annotation_routes(app)
    app.router.add_get(_PROJECT + "/project_configuration", configuration_api.get_configuration)
    app.router.add_patch(_PROJECT + "/project_configuration",
                         configuration_api.patch_configuration)
    app.router.add_get("/_admin/stats", admin.stats)
    app.router.add_get("/_admin/media", admin.list_media)
    app.router.add_post("/_admin/faults", admin.set_faults)
    return app


def _add_annotation_routes(app: web.Application) -> None:
    """GETI_ANNOTATIONS.md §1 (range annotations are not served)."""
    image = _DATASET + "/media/images/{image_id}/annotations"
    frame = _DATASET + "/media/videos/{video_id}/frames/{frame_index}/annotations"
    app.router.add_post(image, annotation_api.post_image_annotation)
    app.router.add_get(image + "/{annotation_id}", annotation_api.get_image_annotation)
    app.router.add_post(frame, annotation_api.post_frame_annotation)
    app.router.add_get(frame + "/{annotation_id}", annotation_api.get_frame_annotation)
    app.router.add_get(_DATASET + "/media/videos/{video_id}/annotations/{annotation_id}",
                       annotation_api.get_video_annotations)
