"""Large files into Geti 3 over TUS 1.0.0 (GETI3_API.md §6, §15), resumable across attempts
and across processes.

One `TusTransfer` is one attempt of one file: find the upload URL this file was given before
(a `ResumeStore`, keyed by path, size and mtime_ns) and ask the server how much it holds
(`HEAD`), or create one; then `PATCH` the rest in chunks streamed from disk (1 MiB reads,
never the file whole), each with an `Upload-Checksum` when the server offers one (so each
chunk is read twice: to hash it, then from the page cache to send it); then
`POST …/dataset/media:from-upload`. Like the multipart client it never sleeps or retries: a
lost connection while bytes flow is a `TransientError` (nothing is in the dataset before
`from-upload`; the next attempt resumes from the server's offset), a lost `from-upload`
answer an `AmbiguousError` (the media may exist: the caller reconciles).

Progress goes through `body.on_progress(n)`: the bytes the server already holds count when
an attempt resumes, and a rewind (a chunk discarded by a checksum mismatch, an offset
conflict) is reported as a negative n, so `body.sent` is always the sum reported.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import mimetypes
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractStreamWriter
from aiohttp.payload import Payload

from geti_bulk.errors import (
    AmbiguousError,
    FatalError,
    FileChangedError,
    FileError,
    TransientError,
)
from geti_bulk.geti.body import open_binary
from geti_bulk.geti.mapping import map_network_error, map_status, parse_retry_after

TUS_VERSION = "1.0.0"
OCTETS = "application/offset+octet-stream"
TUS_THRESHOLD = 256 * 1024**2     # files at least this large go over TUS, when offered
TUS_CHUNK = 16 * 1024**2          # one PATCH; the UI's chunk size (§6)
READ = 1 << 20                    # one read from disk (STYLE.md: 1 MiB measured best)
CHECKSUM_MISMATCH = 460
CHECKSUMS = ("sha256", "sha1", "md5")   # preferred first; all ~1 GB/s here but md5
MAX_CONFLICTS = 3                 # 409s answered by a HEAD within one attempt
UPLOADS = "/api/uploads"


class ResumeStore(Protocol):
    """Where an upload's URL outlives the process (the lead backs it with the journal).
    Calls are synchronous and cheap; `put` must be durable when it returns."""

    def get(self, key: str) -> str | None: ...

    def put(self, key: str, url: str) -> None: ...

    def drop(self, key: str) -> None: ...


class MemoryResumeStore:
    """A `ResumeStore` in a dict: resumes across attempts, not across processes."""

    def __init__(self) -> None:
        self.urls: dict[str, str] = {}

    def get(self, key: str) -> str | None:
        return self.urls.get(key)

    def put(self, key: str, url: str) -> None:
        self.urls[key] = url

    def drop(self, key: str) -> None:
        self.urls.pop(key, None)


def resume_key(path: str, size: int, mtime_ns: int) -> str:
    """The file as it was when its bytes went out: another size or mtime is another upload."""
    return f"tus:{size}:{mtime_ns}:{os.path.abspath(path)}"


@dataclass(frozen=True, slots=True)
class TusSupport:
    """What `OPTIONS /api/uploads` said (§6)."""

    supported: bool
    max_size: int | None = None
    checksum: str | None = None     # the algorithm to send, if the server checks one

    def takes(self, size: int) -> bool:
        return self.supported and (self.max_size is None or size <= self.max_size)


NO_TUS = TusSupport(False)
_TUS = {"Tus-Resumable": TUS_VERSION}


async def probe(session: aiohttp.ClientSession, host: str, *, proxy: str | None,
                api_timeout: float) -> TusSupport:
    """Feature detection (§6): 2xx with `Tus-Version` 1.0.0 is TUS; 404/405, an HTML page (the
    SPA fallback) or any other refusal is "no TUS" (multipart, as before). A network error,
    408/429 or 5xx says nothing yet: TransientError (not cached by the caller)."""
    try:
        async with asyncio.timeout(api_timeout):
            async with session.options(host + UPLOADS, headers=dict(_TUS), proxy=proxy,
                                       allow_redirects=False) as resp:
                data = await resp.read()
                status, headers, ctype = resp.status, resp.headers, resp.content_type
    except (aiohttp.ClientError, TimeoutError, OSError) as e:
        raise map_network_error(e, host, body_complete=False) from None
    if status in (408, 429) or status >= 500:
        raise map_status(status, data, headers, what="server", body_complete=False)
    versions = {v.strip() for v in headers.get("Tus-Version", "").split(",")}
    spoken = TUS_VERSION in versions or headers.get("Tus-Resumable") == TUS_VERSION
    if not 200 <= status < 300 or "html" in ctype or not spoken:
        return NO_TUS
    extensions = {e.strip() for e in headers.get("Tus-Extension", "").split(",")}
    algorithms = {a.strip().lower() for a in headers.get("Tus-Checksum-Algorithm", "").split(",")}
    checksum = next((a for a in CHECKSUMS if a in algorithms), None) \
        if "checksum" in extensions else None
    return TusSupport(True, _int(headers.get("Tus-Max-Size")), checksum)


class TusTransfer:
    """One attempt at one file (see the module's docstring). `body` is the attempt's
    `MultipartFileBody`: its path, size, mtime_ns, on_progress, hasher and chunk are used,
    and sent / complete / done_at / answered_at / failure are set as the multipart path
    sets them."""

    def __init__(self, session: aiohttp.ClientSession, host: str, body: Any, *,
                 filename: str, store: ResumeStore, support: TusSupport,
                 proxy: str | None = None, chunk_size: int = TUS_CHUNK,
                 api_timeout: float = 300.0, stall_timeout: float = 120.0) -> None:
        self.session = session
        self.host = host
        self.body = body
        self.filename = filename
        self.store = store
        self.support = support
        self.proxy = proxy
        self.chunk_size = max(1, chunk_size)
        self.read_size = max(1, min(int(getattr(body, "chunk", READ) or READ), self.chunk_size))
        self.api_timeout = api_timeout
        self.stall_timeout = stall_timeout
        self.key = resume_key(body.path, body.size, body.mtime_ns)
        self.url: str | None = None
        self.resumed_from: int | None = None   # the server's offset, when a URL was reused
        self.patched = 0                       # file bytes put in PATCH bodies by this attempt
        self._hashed = 0                       # body.hasher has seen file bytes [0, _hashed)
        self._raw: BinaryIO | None = None
        self._deadline: asyncio.Timeout | None = None
        self._current: RangePayload | None = None   # the PATCH body whose writes count

    # --- the bytes --------------------------------------------------------------------

    async def send(self) -> str:
        """Every byte of the file on the server; returns the upload's URL."""
        body = self.body
        _, self._raw = await open_binary(body.path)
        try:
            if self._changed_on_disk():
                self.url = self.store.get(self.key)     # of this file as it was: useless now
                self._check_unchanged()
            self.url, offset = await self._resume_or_create()
            await self._settle(offset)
            retried = conflicts = 0
            while offset < body.size:
                n = min(self.chunk_size, body.size - offset)
                status, headers, data = await self._patch(self.url, offset, n)
                if status in (200, 204):
                    new = _int(headers.get("Upload-Offset"))
                    if new is None or not offset <= new <= offset + n:
                        new = await self._offset_now(self.url)
                    retried = 0
                elif status == 409:               # offset mismatch: ask, then go on from there
                    conflicts += 1
                    if conflicts > MAX_CONFLICTS:
                        raise TransientError("the upload's offset keeps moving (409)",
                                             status=409, cause="conflict")
                    new = await self._offset_now(self.url)
                elif status == CHECKSUM_MISMATCH:  # the chunk was discarded: once more
                    retried += 1
                    if retried > 1:
                        raise TransientError("the server received a chunk with a wrong "
                                             "checksum twice", status=460, cause="checksum")
                    new = offset
                else:
                    raise self._refused(status, headers, data)
                await self._settle(new)
                offset = new
                self._check_unchanged()
            self._check_unchanged()
        finally:
            raw, self._raw = self._raw, None
            raw.close()
        return self.url

    async def _resume_or_create(self) -> tuple[str, int]:
        url = self.store.get(self.key)
        if url is not None:
            offset = await self._head(url) if self._ours(url) else None
            if offset is not None:
                self.resumed_from = offset
                return url, offset
            self.store.drop(self.key)
        return await self._create()

    def _ours(self, url: str) -> bool:
        return _origin(url) == _origin(self.host)

    async def _head(self, url: str) -> int | None:
        """The server's offset of a known upload; None if it cannot be resumed (unknown,
        expired, another length). A consumed upload is the media of an earlier attempt
        whose answer was lost: AmbiguousError, so the caller reconciles."""
        status, headers, data = await self._request("HEAD", url, dict(_TUS))
        if status in (200, 204):
            offset = _int(headers.get("Upload-Offset"))
            length = headers.get("Upload-Length")
            if offset is None or not 0 <= offset <= self.body.size or (
                    length is not None and _int(length) != self.body.size):
                return None
            return offset
        if status == 410 and await self._consumed(url):
            self.store.drop(self.key)
            raise AmbiguousError("this file's resumable upload was already turned into media "
                                 "(an earlier answer was lost)", status=410, cause="consumed")
        if status in (404, 410):
            return None
        raise self._refused(status, headers, data)

    async def _offset_now(self, url: str) -> int:
        offset = await self._head(url)
        if offset is None:
            self.store.drop(self.key)
            raise TransientError("the resumable upload is gone (expired?); it starts again",
                                 cause="expired")
        return offset

    async def _consumed(self, url: str) -> bool:
        """The JSON view (§6) says `consumed` (the variant without it: no)."""
        try:
            status, _, data = await self._request("GET", url, {"Accept": "application/json"})
            view = json.loads(data) if status == 200 else None
        except (TransientError, ValueError):
            return False
        return isinstance(view, dict) and view.get("state") == "consumed"

    async def _create(self) -> tuple[str, int]:
        meta = {"filename": self.filename}
        filetype = mimetypes.guess_type(self.filename)[0]
        if filetype:
            meta["filetype"] = filetype
        headers = {**_TUS, "Upload-Length": str(self.body.size),
                   "Upload-Metadata": ",".join(f"{k} {_b64(v.encode())}" for k, v in meta.items())}
        status, rheaders, data = await self._request("POST", self.host + UPLOADS, headers)
        if status not in (200, 201):
            raise self._refused(status, rheaders, data)
        location = rheaders.get("Location")
        if not location:
            raise TransientError(f"the server answered {status} to a new upload without its "
                                 "Location", status=status, cause="protocol")
        url = urljoin(self.host + UPLOADS, location)
        if not self._ours(url):
            raise FatalError(f"{self.host} put an upload on another host ({location}); point "
                             "--host at the final address")
        self.store.put(self.key, url)         # durable before the first byte goes out
        return url, _int(rheaders.get("Upload-Offset")) or 0

    async def _patch(self, url: str, offset: int, n: int) -> tuple[int, Any, bytes]:
        body = self.body
        headers = {**_TUS, "Content-Type": OCTETS, "Upload-Offset": str(offset),
                   "Content-Length": str(n)}
        if self.support.checksum:
            digest = await asyncio.to_thread(self._digest, self.support.checksum, offset, n)
            headers["Upload-Checksum"] = f"{self.support.checksum} {_b64(digest)}"
        loop = asyncio.get_running_loop()
        self._current = payload = RangePayload(self, offset, n)
        try:
            async with asyncio.timeout(self.stall_timeout) as deadline:
                self._deadline = deadline
                async with self.session.patch(url, data=payload,
                                              headers=headers, proxy=self.proxy,
                                              allow_redirects=False) as resp:
                    deadline.reschedule(loop.time() + self.api_timeout)
                    data = await resp.read()
                    status, rheaders = resp.status, resp.headers
                deadline.reschedule(None)
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            if body.failure is not None:
                raise self._abandoned(body.failure) from None
            # the bytes that arrived are kept (§6): the next attempt resumes after a HEAD
            raise map_network_error(e, self.host, body_complete=False) from None
        finally:
            # a write aiohttp has not cancelled yet no longer counts: the server's offset,
            # asked next, says what arrived
            self._deadline = self._current = None
        if body.failure is not None:
            raise self._abandoned(body.failure)
        return status, rheaders, data

    def tick(self, payload: RangePayload, pos: int, data: bytes, last: bool) -> None:
        """`data`, the file's bytes at `pos`, went to the transport (`last`: the end of
        this PATCH's body)."""
        if payload is not self._current:
            return
        n = len(data)
        body = self.body
        if body.hasher is not None and pos <= self._hashed < pos + n:   # in order, once
            body.hasher.update(data[self._hashed - pos:])
            self._hashed = pos + n
        self.patched += n
        body.sent += n
        if self._deadline is not None:
            # while bytes flow a stall times out; the last one out, the server has as long
            # as any API call to write it down and answer
            wait = self.api_timeout if last else self.stall_timeout
            self._deadline.reschedule(asyncio.get_running_loop().time() + wait)
        if body.on_progress is not None:
            body.on_progress(n)

    async def _settle(self, offset: int) -> None:
        """The server holds [0, offset): progress says so (forwards or back), and the
        body's hasher sees any bytes it skipped."""
        body = self.body
        delta = offset - body.sent
        if delta:
            body.sent = offset
            if body.on_progress is not None:
                body.on_progress(delta)
        if body.hasher is not None and offset > self._hashed:
            await asyncio.to_thread(self._feed_hasher, offset)

    def _feed_hasher(self, upto: int) -> None:
        for data in self._read_range(self._hashed, upto - self._hashed):
            self.body.hasher.update(data)
            self._hashed += len(data)

    def _digest(self, algorithm: str, offset: int, n: int) -> bytes:
        h = hashlib.new(algorithm, usedforsecurity=False)
        for data in self._read_range(offset, n):
            h.update(data)
        return h.digest()

    def _read_range(self, offset: int, n: int) -> Iterator[bytes]:
        assert self._raw is not None
        fd = self._raw.fileno()
        while n > 0:
            data = os.pread(fd, min(self.read_size, n), offset)
            if not data:
                raise self._changed(f"shrank below {offset} bytes")
            offset += len(data)
            n -= len(data)
            yield data

    async def read(self, offset: int, n: int) -> bytes:
        assert self._raw is not None
        loop = asyncio.get_running_loop()
        data: bytes = await loop.run_in_executor(None, os.pread, self._raw.fileno(), n, offset)
        if not data:
            raise self._changed(f"shrank below {offset} bytes")
        return data

    # --- file changes -----------------------------------------------------------------

    def _changed(self, why: str) -> FileChangedError:
        e = FileChangedError(f"file changed while being sent ({why}); not uploaded")
        self.body.failure = e
        return e

    def _changed_on_disk(self) -> bool:
        assert self._raw is not None
        st = os.fstat(self._raw.fileno())
        return bool(st.st_size != self.body.size or st.st_mtime_ns != self.body.mtime_ns)

    def _check_unchanged(self) -> None:
        if self._changed_on_disk():
            raise self._abandoned(self._changed("size or modification time differs"))

    def _abandoned(self, e: FileChangedError) -> FileChangedError:
        """The upload holds bytes of a file that is no more: forget it, and let the server
        drop it (best effort, in the background: the file's failure does not wait)."""
        self.store.drop(self.key)
        if self.url is not None and self._ours(self.url):
            task = asyncio.get_running_loop().create_task(self._terminate(self.url))
            _BACKGROUND.add(task)
            task.add_done_callback(_BACKGROUND.discard)
        return e

    async def _terminate(self, url: str) -> None:
        try:
            await self._request("DELETE", url, dict(_TUS))
        except (TransientError, FatalError):
            pass

    # --- into the dataset -------------------------------------------------------------

    async def consume(self, consume_url: str, name: str | None, wait_answer: float) -> Any:
        """`POST …/media:from-upload` (§6) → the MediaView's JSON. From here on the media
        may exist: a lost answer is AmbiguousError and the URL stays known, so the next
        attempt (after the caller has reconciled) can consume it again if it is not."""
        assert self.url is not None
        body = self.body
        payload: dict[str, str] = {"upload_id": self.url.rstrip("/").rsplit("/", 1)[-1]}
        if name and len(name) <= 255:
            payload["name"] = name
        loop = asyncio.get_running_loop()
        body.complete = True
        body.done_at = time.monotonic()
        try:
            async with asyncio.timeout(wait_answer) as deadline:
                async with self.session.post(consume_url, json=payload, proxy=self.proxy,
                                             headers={"Accept": "application/json"},
                                             allow_redirects=False) as resp:
                    body.answered_at = time.monotonic()
                    deadline.reschedule(loop.time() + self.api_timeout)
                    data = await resp.read()
                    status, headers = resp.status, resp.headers
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            raise map_network_error(e, self.host, body_complete=True) from None
        if status in (200, 201):
            self.store.drop(self.key)
            try:
                return json.loads(data)
            except ValueError:
                raise AmbiguousError(f"server answered {status} with an unreadable body",
                                     status=status) from None
        if status == 410:            # consumed (by a lost earlier answer?) or expired
            self.store.drop(self.key)
            raise AmbiguousError(f"the resumable upload is gone ({_detail(data)}): the media "
                                 "may exist", status=410, cause="consumed")
        if status == 404 and "upload" in _detail(data).lower():
            self.store.drop(self.key)
            raise TransientError(f"the resumable upload is gone ({_detail(data)}); it starts "
                                 "again", status=404, cause="expired")
        if status in (409, 423):     # not complete / busy: the next attempt HEADs and sees
            raise TransientError(f"server answered {status} {_detail(data)}", status=status,
                                 retry_after=parse_retry_after(headers.get("Retry-After")))
        if 300 <= status < 400:
            raise FatalError(f"{self.host} redirected an upload to "
                             f"{headers.get('Location', '?')}; point --host at the final address")
        error = map_status(status, data, headers, what="dataset", body_complete=True)
        if isinstance(error, FileError):
            # refused for good (422: not valid media, ...): the UI deletes the upload (§6)
            self.store.drop(self.key)
            await self._terminate(self.url)
        raise error

    # --- plumbing ---------------------------------------------------------------------

    def _refused(self, status: int, headers: Any, data: bytes) -> Exception:
        """A TUS request answered otherwise than planned."""
        if status == 423:
            return TransientError("another request holds this upload (423)", status=423,
                                  retry_after=parse_retry_after(headers.get("Retry-After")),
                                  cause="busy")
        if status in (404, 410):
            self.store.drop(self.key)
            return TransientError(f"the resumable upload is gone ({status}); it starts again",
                                  status=status, cause="expired")
        if 300 <= status < 400:
            return FatalError(f"{self.host} redirected an upload to "
                              f"{headers.get('Location', '?')}; point --host at the final "
                              "address")
        # nothing is in the dataset yet: a 5xx is never ambiguous here
        return map_status(status, data, headers, what="upload", body_complete=False)

    async def _request(self, method: str, url: str,
                       headers: dict[str, str]) -> tuple[int, Any, bytes]:
        try:
            async with asyncio.timeout(self.api_timeout):
                async with self.session.request(method, url, headers=headers, proxy=self.proxy,
                                                allow_redirects=False) as resp:
                    data = await resp.read()
                    return resp.status, resp.headers, data
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            raise map_network_error(e, self.host, body_complete=False) from None


class RangePayload(Payload):
    """`n` bytes of the transfer's file from `offset`, read 1 MiB at a time: aiohttp sends
    Content-Length, never chunked, and holds at most one read."""

    def __init__(self, transfer: TusTransfer, offset: int, n: int) -> None:
        super().__init__(None, content_type=OCTETS)
        self._size = n
        self._transfer = transfer
        self._offset = offset
        self._n = n

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        raise TypeError("a streamed upload body cannot be decoded")

    async def write(self, writer: AbstractStreamWriter) -> None:
        t = self._transfer
        pos, left = self._offset, self._n
        while left > 0:
            data = await t.read(pos, min(t.read_size, left))
            await writer.write(data)
            pos += len(data)
            left -= len(data)
            t.tick(self, pos - len(data), data, left == 0)

    async def write_with_length(self, writer: AbstractStreamWriter,
                                content_length: int | None) -> None:
        await self.write(writer)


_BACKGROUND: set[asyncio.Task[None]] = set()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _int(value: str | None) -> int | None:
    if value is None or not value.strip().isdecimal():
        return None
    return int(value.strip())


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


def _detail(data: bytes) -> str:
    text = data.decode("utf-8", "replace").strip()
    try:
        parsed = json.loads(text)
    except ValueError:
        return text[:300]
    detail = parsed.get("detail", "") if isinstance(parsed, dict) else ""
    return detail if isinstance(detail, str) else json.dumps(detail)[:300]


__all__ = ["MemoryResumeStore", "ResumeStore", "TUS_CHUNK", "TUS_THRESHOLD", "TusSupport",
           "TusTransfer", "probe", "resume_key"]
