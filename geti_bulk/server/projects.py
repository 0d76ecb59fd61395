"""Discovery endpoints: product info, organization, workspaces, projects, datasets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, urlencode

from aiohttp import web

from .config import STATE
from .replies import parse_id, parse_workspace_id, project_not_found, validation_error
from .views import dataset_to_rest, project_to_rest

PRODUCT_VERSION = "2.13.0"  # serves 2.12+'s project_configuration
_BALANCE_HTML = (
    "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"/>"
    "<title>Intel® Geti™</title></head><body><div id=\"root\"></div></body></html>"
)
_TRUE = {"1", "true", "t", "yes", "y", "on"}
_FALSE = {"0", "false", "f", "no", "n", "off"}


async def product_info(request: web.Request) -> web.Response:
    return web.json_response({
        "product-version": PRODUCT_VERSION,
        "build-version": f"{PRODUCT_VERSION}-release-20250613",
        "smtp-defined": "False",
        "intel-email": "",
        "grafana_enabled": False,
        "environment": "on-prem",
        "gpu-provider": "none",
    })


async def token_organization(request: web.Request) -> web.Response:
    return web.json_response({"organizationId": request.app[STATE].world.organization_id})


async def balance(request: web.Request) -> web.Response:
    """On-prem Geti has no credit system: the SPA's HTML page answers (200)."""
    return web.Response(text=_BALANCE_HTML, content_type="text/html")


async def list_workspaces(request: web.Request) -> web.Response:
    world = request.app[STATE].world
    created = "2025-06-02T09:00:00Z"
    workspace = {
        "id": world.workspace_id,
        "name": world.workspace_name,
        "organizationId": world.organization_id,
        "createdAt": created,
        "createdBy": world.user_id,
        "modifiedAt": created,
        "modifiedBy": world.user_id,
    }
    return web.json_response(
        {"workspaces": [workspace], "totalCount": 1, "totalMatchedCount": 1, "nextPage": None}
    )


def int_param(
    request: web.Request, name: str, default: int, low: int, high: int | None, errors: dict[str, str]
) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        errors[name] = "Input should be a valid integer, unable to parse string as an integer"
        return default
    if value < low:
        errors[name] = f"Input should be greater than or equal to {low}"
    elif high is not None and value > high:
        errors[name] = f"Input should be less than or equal to {high}"
    return value


def enum_param(
    request: web.Request, name: str, default: str, allowed: Sequence[str], errors: dict[str, str]
) -> str:
    raw = request.query.get(name)
    if raw is None:
        return default
    if raw not in allowed:
        quoted = [f"'{a}'" for a in allowed]
        errors[name] = f"Input should be {', '.join(quoted[:-1])} or {quoted[-1]}"
    return raw


def bool_param(request: web.Request, name: str, errors: dict[str, str]) -> bool:
    raw = request.query.get(name)
    if raw is None:
        return False
    if raw.lower() in _TRUE:
        return True
    if raw.lower() not in _FALSE:
        errors[name] = "Input should be a valid boolean, unable to interpret input"
    return False


async def list_projects(request: web.Request) -> web.Response:
    state = request.app[STATE]
    world = state.world
    workspace_id = parse_workspace_id(request.match_info["workspace_id"])
    errors: dict[str, str] = {}
    limit = int_param(request, "limit", 10, 1, 100, errors)
    skip = int_param(request, "skip", 0, 0, None, errors)
    sort_by = enum_param(request, "sort_by", "creation_date", ["name", "creation_date"], errors)
    direction = enum_param(request, "sort_direction", "dsc", ["asc", "dsc"], errors)
    with_size = bool_param(request, "with_size", errors)
    if errors:
        raise validation_error(errors)
    needle = request.query.get("name", "").lower()
    found = [
        p for p in world.projects
        if workspace_id == world.workspace_id and needle in p.name.lower()
    ]
    key: Any = (lambda p: p.name) if sort_by == "name" else (lambda p: p.creation_time)
    found.sort(key=key, reverse=direction == "dsc")
    page = found[skip : skip + limit]
    next_page = ""
    if page:
        params = parse_qs(request.query_string)
        params["skip"] = [str(skip + len(page))]
        next_page = f"{request.path}?{urlencode(params, doseq=True)}"
    return web.json_response({
        "projects": [
            project_to_rest(
                world, p, with_datasets=False,
                size=state.store.project_size(p.id) if with_size else None,
            )
            for p in page
        ],
        "project_counts": len(found),
        "project_page_count": len(page),
        "next_page": next_page,
    })


def _project(request: web.Request) -> Any:
    state = request.app[STATE]
    workspace_id = parse_workspace_id(request.match_info["workspace_id"])
    project_id = parse_id("project_id", request.match_info["project_id"])
    project = state.world.project(project_id)
    if project is None or workspace_id != state.world.workspace_id:
        raise project_not_found(project_id)
    return project


async def get_project(request: web.Request) -> web.Response:
    state = request.app[STATE]
    errors: dict[str, str] = {}
    with_size = bool_param(request, "with_size", errors)
    bool_param(request, "include_deleted_labels", errors)
    project = _project(request)
    if errors:
        raise validation_error(errors)
    size = state.store.project_size(project.id) if with_size else None
    return web.json_response(project_to_rest(state.world, project, with_datasets=True, size=size))


async def list_datasets(request: web.Request) -> web.Response:
    project = _project(request)
    return web.json_response({"datasets": [dataset_to_rest(d) for d in project.datasets]})
