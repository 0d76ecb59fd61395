"""Read ``multipart/form-data`` as Starlette + python-multipart do for Geti 3's media
upload (GETI3_API.md §5, §15): the part's ``filename`` is taken literally (no percent-
decoding; ``filename*`` is not decoded either), a Windows path (``C:\\…``, ``\\\\…``) is cut
to its basename, a part with a filename is a file, one without is a plain field, and the
last part of a name wins. The file is spooled to disk in large chunks while hashing."""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path

from aiohttp import BodyPartReader, hdrs, web

from ..spool import CHUNK, drain
from .errors import ApiError
from .store import Store

_PARSE_ERROR = "There was an error parsing the body"  # FastAPI's 400 for a broken form
_MAX_FIELD = 1 << 20


@dataclass
class FileField:
    filename: str
    path: Path
    size: int
    sha256: str


@dataclass
class Form:
    """What arrived: file parts and plain fields by name (last one wins)."""

    files: dict[str, FileField] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)

    def discard(self) -> None:
        for spooled in self.files.values():
            spooled.path.unlink(missing_ok=True)
        self.files.clear()


def disposition(header: str) -> tuple[str | None, str | None]:
    """``(name, filename)`` of a Content-Disposition, the filename literal (§15)."""
    message = Message()
    message["content-disposition"] = header
    name: str | None = None
    filename: str | None = None
    params = message.get_params(header="content-disposition") or []
    for key, value in params[1:]:
        if isinstance(value, tuple):
            continue  # an RFC 2231/5987 ``filename*``: not decoded (§15)
        if key == "name":
            name = value
        elif key == "filename":
            if value[1:3] == ":\\" or value[:2] == "\\\\":
                value = value.split("\\")[-1]
            filename = value
    return name, filename


async def read_form(request: web.Request, store: Store) -> Form:
    """The whole body; the caller must ``discard()`` the form when done."""
    form = Form()
    if request.content_type != "multipart/form-data":
        await drain(request)
        return form
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                continue
            await _read_part(part, form, store)
        await drain(request)
    except ValueError as exc:
        form.discard()
        raise ApiError(400, _PARSE_ERROR) from exc
    except BaseException:
        form.discard()
        raise
    return form


async def _read_part(part: BodyPartReader, form: Form, store: Store) -> None:
    name, filename = disposition(part.headers.get(hdrs.CONTENT_DISPOSITION, ""))
    if name is None:
        raise ValueError('The Content-Disposition header field "name" must be provided.')
    if filename is None:
        raw = await part.read()
        if len(raw) > _MAX_FIELD:
            raise ValueError("field too large")
        form.fields[name] = raw.decode("utf-8", errors="replace")
        return
    spooled = await _spool(part, filename, store.new_temp_path())
    previous = form.files.pop(name, None)
    if previous is not None:
        previous.path.unlink(missing_ok=True)
    form.files[name] = spooled


async def _spool(part: BodyPartReader, filename: str, path: Path) -> FileField:
    digest = hashlib.sha256()
    size = 0
    try:
        with open(path, "wb") as sink:  # noqa: ASYNC230 - 1 MiB writes into the page cache
            while chunk := await part.read_chunk(CHUNK):
                digest.update(chunk)
                size += len(chunk)
                sink.write(chunk)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        raise
    return FileField(filename, path, size, digest.hexdigest())
