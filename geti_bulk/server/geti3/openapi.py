"""``GET /api/openapi.json`` (GETI3_API.md §3, §10): FastAPI's document, ``info.title``
``Geti`` and ``info.version`` the app version — the way to tell Geti 3 from Geti 2.x."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

DESCRIPTION = "Geti - the open platform for building computer vision models"
_PARAM = re.compile(r"\{(\w+)\}")


def document(version: str, routes: Iterable[tuple[str, str, str]]) -> dict[str, Any]:
    """``routes``: ``(method, path, summary)`` of the API routes the server has."""
    paths: dict[str, dict[str, Any]] = {}
    for method, path, summary in routes:
        operation: dict[str, Any] = {
            "summary": summary,
            "operationId": f"{re.sub(r'[^a-z0-9]+', '_', summary.lower()).strip('_')}_"
                           f"{method.lower()}",
            "responses": {"200": {"description": "Successful Response"}},
        }
        params = _PARAM.findall(path)
        if params:
            operation["parameters"] = [
                {"name": p, "in": "path", "required": True,
                 "schema": {"type": "string", "format": "uuid", "title": p.replace("_", " ")}}
                for p in params]
        paths.setdefault(path, {})[method.lower()] = operation
    return {"openapi": "3.1.0",
            "info": {"title": "Geti", "description": DESCRIPTION, "version": version},
            "paths": paths}
