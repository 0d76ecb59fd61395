"""Receive a multipart upload body: the ``file`` part is streamed to a spool file in
large chunks while hashing; nothing of it is held in memory beyond one chunk (and, in
discard mode, a head kept for probing)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import BodyPartReader, web

from .store import Store

CHUNK = 1 << 20
HEAD_BYTES = 1 << 20
_MAX_FIELD = 1 << 20


@dataclass
class Received:
    """What arrived: the file part (if any), spooled, plus the ``upload_info`` field."""

    filename: str | None = None
    path: Path | None = None
    size: int = 0
    sha256: str = hashlib.sha256(b"").hexdigest()
    head: bytes = b""
    upload_info: str = "{}"
    extra: dict[str, str] = field(default_factory=dict)

    def discard(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None


async def drain(request: web.Request) -> int:
    """Read and drop the whole request body; returns the byte count."""
    total = 0
    while chunk := await request.content.read(CHUNK):
        total += len(chunk)
    return total


async def receive(request: web.Request, store: Store, keep: bool) -> Received:
    """Read the whole body. The caller must call ``Received.discard()`` when done."""
    received = Received()
    if not request.content_type.startswith("multipart/"):
        await drain(request)
        return received
    try:
        reader = await request.multipart()
    except (ValueError, AssertionError):
        await drain(request)
        return received
    try:
        while True:
            part = await reader.next()
            if part is None:
                break
            if not isinstance(part, BodyPartReader):
                continue  # nested multipart: Geti reads only top-level fields
            if part.name == "file" and part.filename is not None and received.filename is None:
                received.filename = part.filename
                await _spool(part, received, store, keep)
            elif part.name == "upload_info" and part.filename is None:
                raw = await part.read()
                if len(raw) > _MAX_FIELD:
                    raise web.HTTPRequestEntityTooLarge(max_size=_MAX_FIELD, actual_size=len(raw))
                received.upload_info = raw.decode("utf-8", errors="replace")
        await drain(request)  # epilogue, if any
    except BaseException:
        received.discard()
        raise
    return received


async def _spool(part: BodyPartReader, received: Received, store: Store, keep: bool) -> None:
    digest = hashlib.sha256()
    head = bytearray()
    size = 0
    path = store.new_temp_path() if keep else None
    received.path = path
    sink = _Sink(path)
    try:
        while chunk := await part.read_chunk(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            if len(head) < HEAD_BYTES:
                head += chunk[: HEAD_BYTES - len(head)]
            sink.write(chunk)
    finally:
        sink.close()
    received.size = size
    received.sha256 = digest.hexdigest()
    received.head = bytes(head)


class _Sink:
    """Blocking writes of <= 1 MiB into the page cache: cheaper than a thread hop."""

    def __init__(self, path: Path | None) -> None:
        self._fh = open(path, "wb") if path is not None else None  # noqa: SIM115

    def write(self, chunk: bytes) -> None:
        if self._fh is not None:
            self._fh.write(chunk)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
