"""The upload body of a migrated item: bytes flow from the source's download straight
into the target's multipart upload, with the exact Content-Length known up front (the
download's Content-Length), never whole in memory and never on disk.

Same interface as `geti.body.MultipartFileBody`, so both clients' `upload` take it. One
body per attempt, over a fresh download: a retry downloads again. A download that breaks
or ends short stops the body before its closing boundary, so the target never receives a
complete (wrong) body, and the attempt fails as retryable.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from geti_bulk.errors import TransientError
from geti_bulk.geti.body import BodyPayload, _quote

CHUNK = 1 << 20


class StreamedBody:
    """One-shot multipart body fed by `content` (an aiohttp download's stream)."""

    def __init__(self, content: aiohttp.StreamReader, filename: str, size: int, *,
                 on_progress: Callable[[int], None] | None = None, chunk: int = CHUNK,
                 hasher: Any = None) -> None:
        self.content = content
        self.filename = filename
        self.path = filename           # read by Geti 3's TUS seam only, never opened here
        self.size = size
        self.chunk = chunk
        self.on_progress = on_progress
        self.hasher = hasher
        self.sent = 0
        self.failure: Exception | None = None
        self.complete = False
        self.done_at: float | None = None
        self.answered_at: float | None = None
        self.boundary = "getibulk" + secrets.token_hex(16)
        b = self.boundary
        self.preamble = (f'--{b}\r\nContent-Disposition: form-data; name="file"; '
                         f'filename="{_quote(filename)}"\r\n'
                         "Content-Type: application/octet-stream\r\n\r\n").encode()
        self.epilogue = f"\r\n--{b}--\r\n".encode()

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    @property
    def content_length(self) -> int:
        return len(self.preamble) + self.size + len(self.epilogue)

    @property
    def server_wait(self) -> float | None:
        if self.done_at is None or self.answered_at is None:
            return None
        return self.answered_at - self.done_at

    def _broke(self, why: str) -> TransientError:
        self.failure = TransientError(f"the source download {why}", cause="download")
        return self.failure

    async def write_to(self, write: Callable[[bytes], Awaitable[Any]]) -> None:
        await write(self.preamble)
        remaining = self.size
        while remaining > 0:
            data = await self._read(min(self.chunk, remaining))
            if not data:
                raise self._broke(f"ended after {self.size - remaining} of {self.size} bytes")
            remaining -= len(data)
            if self.hasher is not None:
                self.hasher.update(data)
            await write(data)            # a target-side failure is the client's to map
            self.sent += len(data)
            if self.on_progress is not None:
                self.on_progress(len(data))
        if await self._read(1):
            raise self._broke(f"holds more than the {self.size} bytes it announced")
        self.complete = True
        await write(self.epilogue)
        self.done_at = time.monotonic()

    async def _read(self, n: int) -> bytes:
        try:
            return await self.content.read(n)
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            raise self._broke(f"broke: {type(e).__name__}") from None

    def payload(self) -> BodyPayload:
        return BodyPayload(self)  # type: ignore[arg-type]
