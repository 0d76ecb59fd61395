"""Error replies as FastAPI renders them (GETI3_API.md §3): ``{"detail": "<message>"}``
for handled errors, ``{"detail": [ {type, loc, msg, input, ctx?} ]}`` for request
validation (422), Starlette's plain-text ``Internal Server Error`` for anything else."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

Loc = tuple[str | int, ...]
ErrorList = list[dict[str, Any]]


class ApiError(Exception):
    """An ``HTTPException``: status, ``detail`` (a string or a 422 list) and headers."""

    def __init__(self, status: int, detail: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}

    def response(self) -> web.Response:
        return web.json_response({"detail": self.detail}, status=self.status, headers=self.headers)


def invalid(errors: ErrorList) -> ApiError:
    """FastAPI's ``RequestValidationError`` → 422 with the error list."""
    return ApiError(422, errors)


def error(kind: str, loc: Loc, msg: str, value: Any, ctx: dict[str, Any] | None = None
          ) -> dict[str, Any]:
    """One pydantic error entry as FastAPI prints it (no ``url``)."""
    entry: dict[str, Any] = {"type": kind, "loc": list(loc), "msg": msg, "input": value}
    if ctx is not None:
        entry["ctx"] = ctx
    return entry


def missing(loc: Loc, parent: Any) -> dict[str, Any]:
    return error("missing", loc, "Field required", parent)


def not_found(resource: str, resource_id: str) -> ApiError:
    """``ResourceNotFoundError`` → 404 ``"<Type> with ID <id> not found."`` (§3)."""
    return ApiError(404, f"{resource} with ID {resource_id} not found.")


def path_uuid(name: str, raw: str) -> str:
    """The custom path validator of project/media ids → 400 (§3, §15)."""
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise ApiError(400, f"Invalid {name}: '{raw}' must be a valid UUID format.") from None


_HEX = set("0123456789abcdefABCDEF")
_GROUPS = (8, 4, 4, 4, 12)


def uuid_problem(text: str) -> str | None:
    """Why pydantic (the Rust ``uuid`` crate) refuses ``text``; None when it is a UUID."""
    body = text
    if body.lower().startswith("urn:uuid:"):
        body = body[9:]
    elif body.startswith("{") and body.endswith("}"):
        body = body[1:-1]
    for pos, char in enumerate(body, start=1):
        if char not in _HEX and char != "-":
            return ("invalid character: expected an optional prefix of `urn:uuid:` followed by "
                    f"[0-9a-fA-F-], found `{char}` at {pos}")
    if "-" not in body:
        if len(body) != 32:
            return f"invalid length: expected length 32 for simple format, found {len(body)}"
        return None
    groups = body.split("-")
    if len(groups) != 5:
        return f"invalid group count: expected 5, found {len(groups)}"
    for index, (group, size) in enumerate(zip(groups, _GROUPS, strict=True), start=1):
        if len(group) != size:
            return f"invalid group length in group {index}: expected {size}, found {len(group)}"
    return None


def uuid_error(loc: Loc, value: Any) -> dict[str, Any] | None:
    """The 422 entry for a plain ``UUID``-typed value (query, body, ``upload_id``), or None."""
    if not isinstance(value, str):
        return error("uuid_type", loc, "UUID input should be a string, bytes or UUID object", value)
    problem = uuid_problem(value)
    if problem is None:
        return None
    return error("uuid_parsing", loc, f"Input should be a valid UUID, {problem}", value,
                 {"error": problem})


def plain_uuid(name: str, raw: str, where: str = "path") -> str:
    """A plain FastAPI ``UUID`` parameter (``/api/uploads/{upload_id}``, §15) → 422."""
    problem = uuid_error((where, name), raw)
    if problem is not None:
        raise invalid([problem])
    return str(uuid.UUID(raw))
