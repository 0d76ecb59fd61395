"""TUS 1.0.0 at ``/api/uploads`` (GETI3_API.md §6, §14.10, §15; ``routers/uploads.py``,
``services/upload_service.py``, ``api/upload_utils.py``): creation (with upload, deferred
length), HEAD, PATCH with checksum, termination, expiration, and the JSON views."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.utils import formatdate
from pathlib import Path

from aiohttp import web

from .errors import ApiError, plain_uuid
from .state import Geti3State, json_reply, state_of
from .tus_chunks import write_body
from .tus_store import Upload, sanitize_filename
from .views import upload_view

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = ("creation", "creation-with-upload", "creation-defer-length", "termination",
                  "expiration", "checksum")
CHECKSUMS = ("sha1", "sha256", "md5")
OCTETS = "application/offset+octet-stream"
_MAX_METADATA = 8 * 1024
_METADATA_KEY = re.compile(r"^[\x21-\x2b\x2d-\x7e]+$")
BUSY = "Another request is currently operating on this upload."


def _bad(message: str) -> ApiError:
    return ApiError(400, message)


def _guard(request: web.Request, tus: bool = True) -> None:
    """Router dependency (method override → 400), then the version check (412)."""
    if "X-HTTP-Method-Override" in request.headers:
        raise _bad("The X-HTTP-Method-Override header is not supported.")
    if "upload_id" in request.match_info:
        plain_uuid("upload_id", request.match_info["upload_id"])  # 422 (§15)
    if tus and request.headers.get("Tus-Resumable") != TUS_VERSION:
        raise ApiError(412, f"The Tus-Resumable header must be '{TUS_VERSION}'.",
                       {"Tus-Version": TUS_VERSION})


def _upload_id(request: web.Request) -> str:
    return plain_uuid("upload_id", request.match_info["upload_id"])


def _non_negative(request: web.Request, header: str) -> int | None:
    value = request.headers.get(header)
    if value is None:
        return None
    if not value.isascii() or not value.isdecimal():
        raise _bad(f"The {header} header must be a non-negative integer.")
    return int(value)


def _media_type(request: web.Request) -> str:
    return request.headers.get("Content-Type", "").split(";")[0].strip().lower()


def parse_metadata(header: str | None) -> dict[str, str]:
    if header is None or not header.strip():
        return {}
    if len(header) > _MAX_METADATA:
        raise _bad("Upload-Metadata header is too large.")
    parsed: dict[str, str] = {}
    for pair in header.split(","):
        parts = pair.strip().split(" ")
        if len(parts) not in (1, 2) or not _METADATA_KEY.fullmatch(parts[0]):
            raise _bad("Upload-Metadata header is malformed.")
        if parts[0] in parsed:
            raise _bad(f"Upload-Metadata contains a duplicate key '{parts[0]}'.")
        try:
            parsed[parts[0]] = (base64.b64decode(parts[1], validate=True).decode("utf-8")
                                if len(parts) == 2 else "")
        except (ValueError, UnicodeDecodeError):
            raise _bad("Upload-Metadata values must be base64-encoded UTF-8 strings.") from None
    return parsed


def parse_checksum(header: str | None) -> tuple[str, bytes] | None:
    if header is None:
        return None
    parts = header.strip().split(" ")
    if len(parts) != 2:
        raise _bad("Upload-Checksum header is malformed.")
    algorithm = parts[0].lower()
    if algorithm not in CHECKSUMS:
        raise _bad(f"Unsupported checksum algorithm '{parts[0]}'. Supported: "
                   f"{', '.join(CHECKSUMS)}.")
    try:
        return algorithm, base64.b64decode(parts[1], validate=True)
    except (ValueError, binascii.Error):
        raise _bad("Upload-Checksum digest must be base64-encoded.") from None


def upload_headers(upload: Upload) -> dict[str, str]:
    headers = {"Tus-Resumable": TUS_VERSION, "Upload-Offset": str(upload.offset),
               "Upload-Expires": formatdate(upload.expires_at, usegmt=True),
               "Cache-Control": "no-store"}
    if upload.size is None:
        headers["Upload-Defer-Length"] = "1"
    else:
        headers["Upload-Length"] = str(upload.size)
    return headers


def active(state: Geti3State, upload_id: str, now: float | None = None) -> Upload:
    """The upload, if it still accepts operations: 404 unknown, 410 consumed/expired."""
    upload = state.uploads.get(upload_id)
    if upload is None:
        raise ApiError(404, f"Upload with ID {upload_id} not found.")
    if upload.state == "consumed":
        raise ApiError(410, f"Upload with ID {upload_id} has already been consumed.")
    if upload.expires_at < (now if now is not None else time.time()):
        raise ApiError(410, f"Upload with ID {upload_id} has expired.")
    return upload


@asynccontextmanager
async def exclusive(state: Geti3State, upload_id: str) -> AsyncIterator[None]:
    """The per-upload lock: nobody waits for it, a second request gets 423 (§6)."""
    if upload_id in state.busy_uploads:
        raise ApiError(423, BUSY)
    state.busy_uploads.add(upload_id)
    try:
        yield
    finally:
        state.busy_uploads.discard(upload_id)


async def options(request: web.Request) -> web.Response:
    """``OPTIONS /api/uploads[/{id}]`` → 204 capabilities; no Tus-Resumable needed (§15)."""
    _guard(request, tus=False)
    return web.Response(status=204, headers={
        "Tus-Resumable": TUS_VERSION, "Tus-Version": TUS_VERSION,
        "Tus-Extension": ",".join(TUS_EXTENSIONS),
        "Tus-Max-Size": str(state_of(request).config.upload_max_size),
        "Tus-Checksum-Algorithm": ",".join(CHECKSUMS)})


async def create(request: web.Request) -> web.Response:
    _guard(request)
    state = state_of(request)
    size = _non_negative(request, "Upload-Length")
    defer = request.headers.get("Upload-Defer-Length")
    if (size is None) == (defer is None) or (defer is not None and defer != "1"):
        raise _bad("Exactly one of Upload-Length or 'Upload-Defer-Length: 1' must be provided.")
    with_body = _media_type(request) == OCTETS
    has_body = request.headers.get("Content-Length", "0") != "0" or \
        "Transfer-Encoding" in request.headers
    if not with_body and has_body:
        raise ApiError(415, f"The first chunk must be sent with Content-Type: {OCTETS}.")
    if size is not None and size > state.config.upload_max_size:
        raise ApiError(413, f"Upload-Length exceeds the maximum size of "
                            f"{state.config.upload_max_size} bytes.")
    metadata = parse_metadata(request.headers.get("Upload-Metadata"))
    checksum = parse_checksum(request.headers.get("Upload-Checksum"))
    upload = state.uploads.create(
        sanitize_filename(metadata.get("filename") or metadata.get("name")),
        (metadata.get("filetype") or metadata.get("type") or None), size,
        state.config.upload_ttl_s)
    if with_body:
        try:
            async with exclusive(state, upload.id):
                upload = await _append(request, state, upload, 0, checksum, None)
        except BaseException:
            state.uploads.delete(upload.id)  # the client never learns its location
            raise
    return web.Response(status=201, headers={"Location": f"/api/uploads/{upload.id}",
                                             **upload_headers(upload)})


async def head(request: web.Request) -> web.Response:
    _guard(request)
    state = state_of(request)
    upload_id = _upload_id(request)
    upload = active(state, upload_id)
    if upload_id not in state.busy_uploads:  # else: a PATCH writes, report the committed offset
        upload = state.uploads.reconcile(upload)
    return web.Response(status=204, headers=upload_headers(upload))


async def patch(request: web.Request) -> web.Response:
    _guard(request)
    if _media_type(request) != OCTETS:
        raise ApiError(415, f"Content-Type must be {OCTETS}.")
    offset = _non_negative(request, "Upload-Offset")
    if offset is None:
        raise _bad("The Upload-Offset header is required.")
    length = _non_negative(request, "Upload-Length")
    checksum = parse_checksum(request.headers.get("Upload-Checksum"))
    state = state_of(request)
    upload_id = _upload_id(request)
    async with exclusive(state, upload_id):
        upload = state.uploads.reconcile(active(state, upload_id))
        if offset != upload.offset:
            raise ApiError(409, f"Upload offset mismatch: expected {upload.offset}, received "
                                f"{offset}.")
        upload = await _append(request, state, upload, offset, checksum, length)
    return web.Response(status=204, headers=upload_headers(upload))


async def _append(request: web.Request, state: Geti3State, upload: Upload, offset: int,
                  checksum: tuple[str, bytes] | None, length: int | None) -> Upload:
    size = upload.size
    if length is not None:
        if size is not None and length != size:
            raise _bad("Upload-Length cannot be changed once set.")
        if length > state.config.upload_max_size:
            raise ApiError(413, f"Upload-Length exceeds the maximum size of "
                                f"{state.config.upload_max_size} bytes.")
        if length < offset:
            raise _bad("Upload-Length cannot be smaller than the current offset.")
        size = length
    limit = size if size is not None else state.config.upload_max_size
    received = await write_body(request, state.uploads.path(upload.id), offset, limit,
                                checksum)
    header = request.headers.get("Upload-Checksum") if checksum else None
    return state.uploads.commit(upload, offset + received, size, header, state.config.upload_ttl_s)


async def delete(request: web.Request) -> web.Response:
    _guard(request)
    state = state_of(request)
    upload_id = _upload_id(request)
    async with exclusive(state, upload_id):
        if not state.uploads.delete(upload_id):
            raise ApiError(404, f"Upload with ID {upload_id} not found.")
    return web.Response(status=204, headers={"Tus-Resumable": TUS_VERSION})


async def list_uploads(request: web.Request) -> web.Response:
    _guard(request, tus=False)
    return json_reply([upload_view(u) for u in state_of(request).uploads.list_all()])


async def get_upload(request: web.Request) -> web.Response:
    _guard(request, tus=False)
    upload_id = _upload_id(request)
    upload = state_of(request).uploads.get(upload_id)
    if upload is None:
        raise ApiError(404, f"Upload with ID {upload_id} not found.")
    return json_reply(upload_view(upload))


@asynccontextmanager
async def claim(state: Geti3State, upload_id: str) -> AsyncIterator[Upload]:
    """Reserve a completed upload for one consumer (§6 ``:from-upload``): 423 busy, 404,
    410 consumed/expired, 409 not complete. If the block fails while the bytes are still
    there, the upload returns to ``completed``; otherwise it stays ``consumed``."""
    async with exclusive(state, upload_id):
        upload = state.uploads.reconcile(active(state, upload_id))
        if not upload.complete:
            raise ApiError(409, f"Upload with ID {upload_id} is not complete "
                                f"({upload.offset}/{upload.size}).")
        upload = state.uploads.set_state(upload, "consumed")
        path = state.uploads.path(upload_id)
        try:
            yield upload
        except BaseException:
            if path.is_file():
                state.uploads.set_state(upload, "completed")
            raise
        path.unlink(missing_ok=True)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
