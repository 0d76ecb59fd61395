"""The aiohttp application of the local Geti 3 (GETI3_API.md §3, §10, §15): the API
routes, the SPA fallback (any unmatched GET is 200 ``text/html``; other methods on
unmatched paths, HEAD included, are 405), and FastAPI's error rendering."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from ..replies import INTERNAL_SERVER_ERROR, PlainError, plain
from . import admin, openapi, routes_annotations, routes_media, routes_projects, tus
from .errors import ApiError
from .state import STATE, Geti3State

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_MEDIA = "/api/projects/{project_id}/dataset/media"
_ITEM = _MEDIA + "/{media_id}"
SPA_HTML = ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"/>"
            "<title>Geti</title></head><body><div id=\"root\"></div></body></html>")

ROUTES: list[tuple[str, str, Handler, str]] = [
    ("GET", "/health", routes_projects.health, "Health Check"),
    ("GET", "/api/system/info", routes_projects.system_info, "Get System Info"),
    ("GET", "/api/projects", routes_projects.list_projects, "List Projects"),
    ("POST", "/api/projects", routes_projects.create_project, "Create Project"),
    ("GET", "/api/projects/{project_id}", routes_projects.get_project_route,
     "Get Project By Id"),
    ("POST", _MEDIA, routes_media.upload, "Add Media"),
    ("POST", _MEDIA + ":from-upload", routes_media.from_upload, "Add Media From Upload"),
    ("GET", _MEDIA, routes_media.list_media, "List Media"),
    ("DELETE", _MEDIA, routes_media.bulk_delete, "Bulk Delete Media"),
    ("GET", _MEDIA + "/ids", routes_media.list_ids, "List Media Ids"),
    ("GET", _ITEM, routes_media.media_detail, "Get Media"),
    ("DELETE", _ITEM, routes_media.delete_media, "Delete Media"),
    ("GET", _ITEM + "/binary", routes_media.media_binary, "Get Media Binary"),
    ("POST", _ITEM + "/annotations", routes_annotations.post_annotations,
     "Set Media Annotations"),
    ("GET", _ITEM + "/annotations", routes_annotations.get_annotations, "Get Media Annotations"),
    ("DELETE", _ITEM + "/annotations", routes_annotations.delete_annotations,
     "Delete Media Annotation"),
    ("OPTIONS", "/api/uploads", tus.options, "Get Upload Capabilities"),
    ("POST", "/api/uploads", tus.create, "Create Upload"),
    ("GET", "/api/uploads", tus.list_uploads, "List Uploads"),
    ("OPTIONS", "/api/uploads/{upload_id}", tus.options, "Get Upload Resource Capabilities"),
    ("HEAD", "/api/uploads/{upload_id}", tus.head, "Get Upload Offset"),
    ("PATCH", "/api/uploads/{upload_id}", tus.patch, "Append To Upload"),
    ("DELETE", "/api/uploads/{upload_id}", tus.delete, "Delete Upload"),
    ("GET", "/api/uploads/{upload_id}", tus.get_upload, "Get Upload"),
]


def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """COEP/COOP on everything; ``Tus-Resumable`` on every ``/api/uploads`` answer (§6)."""
    response.headers.setdefault("Cross-Origin-Embedder-Policy", "credentialless")
    response.headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    if request.path == "/api/uploads" or request.path.startswith("/api/uploads/"):
        response.headers.setdefault("Tus-Resumable", tus.TUS_VERSION)


async def _unmatched(request: web.Request, state: Geti3State,
                     error: web.HTTPException) -> web.StreamResponse:
    """No route for this path (404) or method (405), as Starlette would answer."""
    if state.config.spa:
        if request.method == "GET":  # the catch-all ``GET /{full_path:path}``
            return web.Response(text=SPA_HTML, content_type="text/html")
        return web.json_response({"detail": "Method Not Allowed"}, status=405,
                                 headers={"Allow": "GET"})
    if isinstance(error, web.HTTPMethodNotAllowed):
        return web.json_response({"detail": "Method Not Allowed"}, status=405,
                                 headers={"Allow": ", ".join(sorted(error.allowed_methods))})
    if request.path.endswith("/") and request.path != "/":  # redirect_slashes
        other = request.clone(rel_url=request.rel_url.with_path(request.path.rstrip("/")))
        match = await request.app.router.resolve(other)
        if match.http_exception is None:
            raise web.HTTPTemporaryRedirect(other.rel_url)
    return web.json_response({"detail": "Not Found"}, status=404)


@web.middleware
async def geti3(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = request.app[STATE]
    if request.path.startswith("/_admin/"):
        return await handler(request)
    state.requests += 1
    if state.config.latency_ms:
        await asyncio.sleep(state.config.latency_ms / 1000)
    response: web.StreamResponse
    try:
        response = await handler(request)
    except (ApiError, PlainError) as exc:
        response = exc.response()
    except (web.HTTPNotFound, web.HTTPMethodNotAllowed) as exc:
        response = await _unmatched(request, state, exc)
    except web.HTTPException:
        raise
    except (ConnectionError, asyncio.CancelledError):
        raise
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        response = plain(500, INTERNAL_SERVER_ERROR)
    _security_headers(request, response)
    return response


def build_app(state: Geti3State) -> web.Application:
    app = web.Application(middlewares=[geti3], client_max_size=16 * 1024**2)
    app[STATE] = state
    spec = openapi.document(state.config.version, [(m, p, s) for m, p, _, s in ROUTES])

    async def openapi_json(request: web.Request) -> web.Response:
        return web.json_response(spec)

    app.router.add_route("GET", "/api/openapi.json", openapi_json)
    for method, path, handler, _ in ROUTES:
        app.router.add_route(method, path, handler)
    app.router.add_get("/_admin/stats", admin.stats, allow_head=False)
    app.router.add_get("/_admin/media", admin.list_media, allow_head=False)
    app.router.add_post("/_admin/faults", admin.set_faults)
    return app
