"""Error replies shaped like Geti's: JSON ``{error_code, message, http_status}`` for
handled errors, plain text for the gateway and for unhandled exceptions."""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

INTERNAL_SERVER_ERROR = "Internal Server Error"
_OBJECT_ID = re.compile(r"[0-9a-f]{24}")


class GetiError(Exception):
    """A handled Geti error: rendered as the JSON error body."""

    def __init__(self, status: int, error_code: str, message: str | dict[str, Any]) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message

    def response(self) -> web.Response:
        body = {"error_code": self.error_code, "message": self.message, "http_status": self.status}
        return web.json_response(body, status=self.status)


class PlainError(Exception):
    """A plain-text answer (unhandled exception in Geti, or the gateway speaking)."""

    def __init__(self, status: int = 500, text: str = INTERNAL_SERVER_ERROR) -> None:
        super().__init__(text)
        self.status = status
        self.text = text

    def response(self) -> web.Response:
        return plain(self.status, self.text)


def plain(status: int, text: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=text, content_type="text/plain", headers=headers)


def bad_request(message: str) -> GetiError:
    return GetiError(400, "bad_request", message)


def invalid_id(name: str, value: str) -> GetiError:
    return bad_request(
        f"Invalid request parameters: '{name}'. The provided string is not a valid ID: '{value}'."
    )


def parse_id(name: str, raw: str) -> str:
    """Normalise a path id like Geti's ``ID`` (strip, lower) and insist on an ObjectId."""
    value = raw.strip().lower()
    if not _OBJECT_ID.fullmatch(value):
        raise invalid_id(name, raw)
    return value


def parse_workspace_id(raw: str) -> str:
    """Geti accepts a UUID or an ObjectId for the workspace."""
    value = raw.strip().lower()
    parts = value.split("-")
    is_uuid = [len(p) for p in parts] == [8, 4, 4, 4, 12] and all(
        c in "0123456789abcdef" for p in parts for c in p
    )
    if not is_uuid:
        try:
            return parse_id("workspace_id", raw)
        except GetiError:
            raise invalid_id("workspace_id", raw) from None
    return value


def validation_error(errors: dict[str, str]) -> GetiError:
    """FastAPI validation failure as Geti renders it: ``message`` is an object whose keys
    are the mangled ``".".join(str(loc))`` of each failing field."""
    message = {".".join(str((field,))): [text] for field, text in errors.items()}
    return GetiError(400, "bad_request", message)


def invalid_media(message: str) -> GetiError:
    return GetiError(415, "invalid_media", message)


def project_not_found(project_id: str) -> GetiError:
    return GetiError(
        404, "project_not_found",
        f"The requested project could not be found. Project ID: `{project_id}`.",
    )


def dataset_not_found(project_name: str, project_id: str, dataset_id: str) -> GetiError:
    return GetiError(
        404, "dataset_not_found_in_project",
        f"The requested dataset could not be found in project `{project_name}`. "
        f"Project ID: '{project_id}', Dataset Storage ID: `{dataset_id}`. ",
    )


def media_not_found(media_type: str, dataset_id: str, media_id: str) -> GetiError:
    word = "Image" if media_type == "image" else "Video"
    return GetiError(
        404, f"{media_type}_not_found",
        f"The requested {media_type} could not be found in this dataset. "
        f"Dataset Storage ID: `{dataset_id}`, {word} ID: `{media_id}`. ",
    )


async def read_json(request: web.Request) -> Any:
    """The JSON body, or Geti's 400 ``missing_payload`` when it is empty or not JSON."""
    raw = await request.read()
    try:
        if raw.strip():
            return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        pass
    raise GetiError(400, "missing_payload", "Missing request body")
