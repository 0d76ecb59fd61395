"""A streaming multipart/form-data body with an exact Content-Length.

Real Geti answers 500 to a chunked body (GETI_API.md §5), so the size is computed up
front: preamble + file size + epilogue. The file is read with aiofiles in large chunks
(each read costs ~100-150 µs of CPU here, STYLE.md), never held whole in memory. If the
file's size or mtime changes while it is read, the body stops before the closing
boundary, so the server never receives a complete (wrong) body.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, BinaryIO

import aiofiles
import aiofiles.threadpool
from aiohttp.abc import AbstractStreamWriter
from aiohttp.payload import Payload

from geti_bulk.errors import FileChangedError
from geti_bulk.media import WIRE_ESCAPES

# boundaries: random per body, seeded from the OS once (a `secrets` call per file costs a
# syscall that releases the GIL); a boundary only has to be absent from the file's bytes
_BOUNDARIES = random.Random(os.urandom(32))
CHUNK = 1 << 20   # each read is a thread hop (~0.1 ms here); 1 MiB measured best (STYLE.md)


async def open_binary(path: str) -> tuple[Any, BinaryIO]:
    """`aiofiles.open(path, "rb")` that cannot leak: if the caller is cancelled while the
    executor thread opens the file, the file is closed when the open completes. Returns
    the aiofiles wrapper and the raw file, which the caller closes synchronously in a
    `finally` (closing a file opened for reading does no I/O worth a thread hop, and a
    synchronous close also runs when a never-resumed task is destroyed)."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[BinaryIO] = loop.run_in_executor(None, _open_rb, path)
    try:
        raw = await asyncio.shield(fut)
    except asyncio.CancelledError:
        fut.add_done_callback(_close_result)
        raise
    return aiofiles.threadpool.wrap(raw, loop=loop), raw


def _open_rb(path: str) -> BinaryIO:
    return open(path, "rb")


def _close_result(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled() and fut.exception() is None:
        fut.result().close()




def _quote(name: str) -> str:
    # RFC 7578 §4.2: percent-encode what would break the header; `media.media_name`
    # predicts the stored name from the same table
    return name.replace("\\", "\\\\").translate(WIRE_ESCAPES)


class MultipartFileBody:
    """One-shot body for one attempt: build a fresh one for every retry."""

    def __init__(self, path: str, filename: str, size: int, mtime_ns: int,
                 label_ids: Sequence[str] = (), *, head: bytes | None = None,
                 on_progress: Callable[[int], None] | None = None, chunk: int = CHUNK,
                 hasher: Any = None) -> None:
        self.path = path
        self.size = size
        self.mtime_ns = mtime_ns
        self.chunk = chunk
        self.head = head
        self.on_progress = on_progress
        self.hasher = hasher               # hashlib object fed every file byte sent, if given
        self.sent = 0                      # file bytes handed to the transport
        self.failure: FileChangedError | None = None
        self.complete = False              # closing boundary handed to the transport
        self.done_at: float | None = None  # monotonic time the last byte was written
        self.answered_at: float | None = None   # ... and the answer's headers arrived
        self.boundary = f"getibulk{_BOUNDARIES.getrandbits(128):032x}"
        b = self.boundary
        parts = []
        if label_ids:
            info = json.dumps({"label_ids": list(label_ids)})
            parts.append(f'--{b}\r\nContent-Disposition: form-data; name="upload_info"\r\n\r\n'
                         f"{info}\r\n")
        parts.append(f'--{b}\r\nContent-Disposition: form-data; name="file"; '
                     f'filename="{_quote(filename)}"\r\n'
                     "Content-Type: application/octet-stream\r\n\r\n")
        self.preamble = "".join(parts).encode("utf-8")
        self.epilogue = f"\r\n--{b}--\r\n".encode()

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    @property
    def content_length(self) -> int:
        return len(self.preamble) + self.size + len(self.epilogue)

    def _changed(self, why: str) -> FileChangedError:
        self.failure = FileChangedError(f"file changed while being sent ({why}); not uploaded")
        return self.failure

    def _tick(self, data: bytes) -> None:
        n = len(data)
        if self.hasher is not None:
            self.hasher.update(data)
        self.sent += n
        if self.on_progress is not None:
            self.on_progress(n)

    async def write_to(self, write: Callable[[bytes], Awaitable[Any]]) -> None:
        """Write the whole body. The file lives inside this one coroutine, so a cancelled
        or failed request closes it (an async generator left suspended would not)."""
        if self.head is not None and len(self.head) >= self.size:
            # the whole file was read (and checked against its stat) before: no reopen,
            # and one write (one send) for the whole small body
            data = self.head[:self.size]
            self._tick(data)
            self.complete = True
            await write(b"".join((self.preamble, data, self.epilogue)))
            self.done_at = time.monotonic()
            return
        await write(self.preamble)
        await self._write_file(write)
        self.complete = True
        await write(self.epilogue)
        self.done_at = time.monotonic()

    @property
    def server_wait(self) -> float | None:
        """Seconds from the last byte written to the answer: the server's share."""
        if self.done_at is None or self.answered_at is None:
            return None
        return self.answered_at - self.done_at

    async def _write_file(self, write: Callable[[bytes], Awaitable[Any]]) -> None:
        remaining = self.size
        f, raw = await open_binary(self.path)
        try:
            if self.head:
                head = self.head[:remaining]
                await f.seek(len(head))
                remaining -= len(head)
                await write(head)
                self._tick(head)
            while remaining > 0:
                data = await f.read(min(self.chunk, remaining))
                if not data:
                    raise self._changed(f"shrank to {self.size - remaining} bytes")
                remaining -= len(data)
                await write(data)
                self._tick(data)
            if await f.read(1):
                raise self._changed("grew")
            st = os.fstat(raw.fileno())
            if st.st_size != self.size or st.st_mtime_ns != self.mtime_ns:
                raise self._changed("size or modification time differs")
        finally:
            raw.close()

    def payload(self) -> BodyPayload:
        return BodyPayload(self)


class BodyPayload(Payload):
    """aiohttp payload of known size: aiohttp sends Content-Length, never chunked."""

    def __init__(self, body: MultipartFileBody) -> None:
        super().__init__(body, content_type=body.content_type)
        self._size = body.content_length
        self._body = body

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        raise TypeError("a streamed upload body cannot be decoded")

    async def write(self, writer: AbstractStreamWriter) -> None:
        await self._body.write_to(writer.write)

    async def write_with_length(self, writer: AbstractStreamWriter,
                                content_length: int | None) -> None:
        await self._body.write_to(writer.write)
