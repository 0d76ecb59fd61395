"""The ``project_configuration`` endpoints (see ``configuration.py`` for the shapes)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .config import STATE
from .configuration import TaskConfig, Validation, from_rest, merge, task_config_to_rest
from .replies import GetiError, PlainError, parse_id, parse_workspace_id, read_json
from .seed import Project


def _locate(request: web.Request) -> tuple[str, Project | None]:
    state = request.app[STATE]
    workspace_id = parse_workspace_id(request.match_info["workspace_id"])
    project_id = parse_id("project_id", request.match_info["project_id"])
    project = state.world.project(project_id)
    if workspace_id != state.world.workspace_id:
        project = None
    return project_id, project


def not_found(project_id: str, task_id: str | None = None) -> GetiError:
    message = f"The requested project configuration could not be found. Project ID: `{project_id}`"
    if task_id is not None:
        message += f", task ID: `{task_id}`"
    return GetiError(404, "project_configuration_not_found", message)


async def get_configuration(request: web.Request) -> web.Response:
    """All tasks' settings, or one task's with ``?task_id=``."""
    project_id, project = _locate(request)
    if project is None:
        raise not_found(project_id)
    configs = request.app[STATE].configurations.of_project(project)
    task_id = request.query.get("task_id")
    if task_id is None:
        return web.json_response(
            {"task_configs": [task_config_to_rest(t, c) for t, c in configs]})
    for current, config in configs:
        if current == task_id:
            return web.json_response(task_config_to_rest(current, config))
    raise not_found(project_id, task_id.strip().lower())


async def patch_configuration(request: web.Request) -> web.Response:
    """Merge the sent sections into the stored ones; 204, or nothing saved on any error."""
    project_id, project = _locate(request)
    body = await read_json(request)
    updates = _validated(_task_items(body, request.query.get("task_id")))
    if not updates:
        return web.Response(status=204)
    state = request.app[STATE]
    current = dict(state.configurations.of_project(project)) if project else {}
    changed: dict[str, TaskConfig] = {}
    for task_id, update in updates:
        if task_id not in current:
            raise not_found(project_id, task_id.strip().lower())
        current[task_id] = changed[task_id] = merge(current[task_id], update)
    assert project is not None  # every task id was found in it
    state.configurations.save(project, changed)
    return web.Response(status=204)


def _task_items(body: Any, task_id: str | None) -> list[Any]:
    """One task's object, or ``task_configs``; the single form takes ``?task_id=``."""
    if not isinstance(body, dict):
        raise PlainError()
    try:
        if body and "task_configs" not in body:
            if task_id and "task_id" not in body:
                body["task_id"] = task_id
            return [from_rest(body)]
        items = body.pop("task_configs", {})
        return [from_rest(item) for item in items]
    except (KeyError, TypeError):
        raise PlainError() from None


def _validated(items: list[Any]) -> list[tuple[str, TaskConfig]]:
    check = Validation()
    results = [check.task(item, f"task_configs[{i}]") for i, item in enumerate(items)]
    if check.errors:
        raise ValidationFailed(check.errors)
    return [r for r in results if r is not None]


class ValidationFailed(GetiError):
    """The director's pydantic handler: ``errors`` instead of ``message``."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__(400, "bad_request", "")
        self.errors = errors

    def response(self) -> web.Response:
        body = {"error_code": "bad_request", "errors": self.errors, "http_status": 400}
        return web.json_response(body, status=400)
