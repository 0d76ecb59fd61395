"""Write one TUS request body at an offset (GETI3_API.md §6): bytes received before a
disconnect are kept (so a HEAD can resume), a body past the length is 413 and a checksum
mismatch 460, and in both cases the whole request's bytes are discarded."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

from aiohttp import web
from aiohttp.client_exceptions import ClientPayloadError
from aiohttp.http_exceptions import HttpProcessingError

from ..spool import CHUNK
from .errors import ApiError

CHECKSUM_MISMATCH = 460  # the TUS checksum extension's status
_DISCONNECT = (ConnectionError, OSError, HttpProcessingError, ClientPayloadError,
               asyncio.IncompleteReadError)


async def write_body(request: web.Request, path: Path, offset: int, limit: int,
                     checksum: tuple[str, bytes] | None) -> int:
    """Append the body at ``offset``; returns the byte count to acknowledge."""
    hasher = hashlib.new(checksum[0], usedforsecurity=False) if checksum else None
    received = 0
    try:
        with open(path, "r+b") as fh:  # noqa: ASYNC230 - page-cache writes of ≤ 1 MiB
            fh.seek(offset)
            while True:
                try:
                    chunk = await request.content.read(CHUNK)
                except _DISCONNECT:
                    break  # the client went away: keep what arrived
                if not chunk:
                    break
                if offset + received + len(chunk) > limit:
                    raise ApiError(413, "The request body exceeds the upload length or the "
                                        "maximum size.")
                fh.write(chunk)
                if hasher is not None:
                    hasher.update(chunk)
                received += len(chunk)
            fh.flush()
            os.fsync(fh.fileno())
    except ApiError:
        os.truncate(path, offset)
        raise
    if checksum is not None and hasher is not None and hasher.digest() != checksum[1]:
        os.truncate(path, offset)
        raise ApiError(CHECKSUM_MISMATCH, "The checksum of the received data does not match.")
    return received
