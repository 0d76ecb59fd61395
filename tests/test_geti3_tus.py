"""Large files into Geti 3 over TUS (GETI3_API.md §6, §15), against the local Geti 3 over
TLS on 127.0.0.1: chunked and checksummed, resumed after a cut connection, in a new client
from a persisted URL, and (slow) in a new process after SIGKILL; a server without TUS
gets multipart; a 512 MiB file keeps the memory flat.

The threshold is 1 MiB and the chunks 1 MiB here, so files of a few MiB go through it.
Run as a script (`python tests/test_geti3_tus.py child …`) it is the uploader process of
the slow test.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import os
import signal
import ssl
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from geti_bulk.errors import AmbiguousError, FileChangedError, TransientError
from geti_bulk.geti.body import MultipartFileBody
from geti_bulk.geti.client import Target
from geti_bulk.geti.tus import MemoryResumeStore, TusTransfer, resume_key
from geti_bulk.geti.v3 import Geti3Client
from geti_bulk.server import Geti3Config, LocalGeti3
from geti_bulk.server.samples import mp4_bytes

MiB = 1024**2
PETS = "Pets classification"
TUS = {"Tus-Resumable": "1.0.0"}


# --- helpers ----------------------------------------------------------------------------


def make_mp4(path: Path, size: int, *, sparse: bool = False) -> str:
    """An mp4 the server accepts (structural probe) of exactly `size` bytes: the header,
    then an mdat of random bytes (or a hole). Returns its sha256."""
    header = mp4_bytes(filler=0)[:-8]
    head = header + (size - len(header)).to_bytes(4, "big") + b"mdat"
    with path.open("wb") as f:
        f.write(head)
        if sparse:
            f.truncate(size)
        else:
            f.write(os.urandom(size - len(head)))
    return sha256_of(path)


def make_png(path: Path, side: int = 900) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(buf, "PNG",
                                                                            compress_level=0)
    path.write_bytes(buf.getvalue())
    return sha256_of(path)


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(MiB):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class Sent:
    method: str
    path: str
    headers: dict[str, str]
    sent: int = 0
    status: int | None = None


@dataclass
class Recorder:
    """Every request the client made (aiohttp tracing): method, path, body bytes, status."""

    requests: list[Sent] = field(default_factory=list)
    on_end: list[Callable[[Sent], Awaitable[None]]] = field(default_factory=list)

    def config(self) -> aiohttp.TraceConfig:
        tc = aiohttp.TraceConfig()

        async def start(_: Any, ctx: SimpleNamespace, p: aiohttp.TraceRequestStartParams) -> None:
            ctx.entry = Sent(p.method, p.url.path, dict(p.headers))
            self.requests.append(ctx.entry)

        async def chunk(_: Any, ctx: SimpleNamespace,
                        p: aiohttp.TraceRequestChunkSentParams) -> None:
            ctx.entry.sent += len(p.chunk)

        async def end(_: Any, ctx: SimpleNamespace, p: aiohttp.TraceRequestEndParams) -> None:
            ctx.entry.status = p.response.status
            for hook in list(self.on_end):
                await hook(ctx.entry)

        tc.on_request_start.append(start)
        tc.on_request_chunk_sent.append(chunk)
        tc.on_request_end.append(end)
        return tc

    def of(self, method: str, path_part: str = "") -> list[Sent]:
        return [r for r in self.requests if r.method == method and path_part in r.path]

    def patched(self) -> int:
        return sum(r.sent for r in self.of("PATCH"))

    def clear(self) -> None:
        self.requests.clear()


class FileResumeStore:
    """A ResumeStore in a JSON file, replaced atomically: survives SIGKILL."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _load(self) -> dict[str, str]:
        try:
            return dict(json.loads(self.path.read_text()))
        except FileNotFoundError:
            return {}

    def _save(self, urls: dict[str, str]) -> None:
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w") as f:
            json.dump(urls, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def get(self, key: str) -> str | None:
        return self._load().get(key)

    def put(self, key: str, url: str) -> None:
        self._save({**self._load(), key: url})

    def drop(self, key: str) -> None:
        urls = self._load()
        if urls.pop(key, None) is not None:
            self._save(urls)


@dataclass
class Env:
    srv: LocalGeti3
    base_url: str
    sessions: list[aiohttp.ClientSession]

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.srv.cert_path))

    async def client(self, rec: Recorder | None = None, *, store: Any = None,
                     host: str | None = None, chunk: int = MiB) -> Geti3Client:
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self.context()),
                                        trace_configs=[rec.config()] if rec else None)
        self.sessions.append(session)
        client = Geti3Client(session, host or self.base_url, version="3.2.0")
        client.tus_threshold = MiB
        client.tus_chunk_size = chunk
        client.resume_store = store
        return client

    def media(self) -> list[Any]:
        return self.srv.state.store.all_media()

    def uploads(self) -> list[Any]:
        return self.srv.state.uploads.list_all()

    async def settled(self) -> None:
        """Until the server has finished with any broken PATCH (its bytes committed): no
        upload held and the offsets unchanged for 0.2 s."""
        seen, quiet = None, 0
        for _ in range(400):
            now = [(u.id, u.offset) for u in self.uploads()]
            quiet = quiet + 1 if now == seen and not self.srv.state.busy_uploads else 0
            if quiet >= 8:
                return
            seen = now
            await asyncio.sleep(0.025)
        raise AssertionError("the server still holds an upload")


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    srv = LocalGeti3(Geti3Config(data_dir=tmp_path / "g3", locked_ms=300, slow_ms=600))
    await srv.start()
    e = Env(srv, srv.base_url, [])
    try:
        yield e
    finally:
        for s in e.sessions:
            await s.close()
        await srv.stop()


def body_of(path: Path, **kw: Any) -> MultipartFileBody:
    st = path.stat()
    return MultipartFileBody(str(path), path.name, st.st_size, st.st_mtime_ns, **kw)


def key_of(path: Path) -> str:
    st = path.stat()
    return resume_key(str(path), st.st_size, st.st_mtime_ns)


class Progress:
    def __init__(self) -> None:
        self.total = 0
        self.negative = 0

    def __call__(self, n: int) -> None:
        self.total += n
        self.negative += n < 0


class CutProxy:
    """TCP between the client and the server (TLS passes through): `cut_after(n)` aborts
    both sides once n more bytes went upstream."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.forwarded = 0
        self.cut_at: int | None = None
        self.cuts = 0
        self.url = ""
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.url = f"https://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    def cut_after(self, n: int) -> None:
        self.cut_at = self.forwarded + n

    async def _handle(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        sr, sw = await asyncio.open_connection("127.0.0.1", self.port)

        async def up() -> None:
            while data := await cr.read(64 * 1024):
                if self.cut_at is not None and self.forwarded + len(data) >= self.cut_at:
                    sw.write(data[: self.cut_at - self.forwarded])
                    await sw.drain()
                    self.forwarded, self.cut_at = self.cut_at, None
                    self.cuts += 1
                    cw.transport.abort()
                    sw.transport.abort()
                    return
                self.forwarded += len(data)
                sw.write(data)
                await sw.drain()
            sw.close()

        async def down() -> None:
            while data := await sr.read(64 * 1024):
                cw.write(data)
                await cw.drain()
            cw.close()

        try:
            await asyncio.gather(up(), down())
        except (ConnectionError, OSError):
            pass
        finally:
            cw.transport.abort()
            sw.transport.abort()


# --- the tests --------------------------------------------------------------------------


async def test_large_file_goes_over_tus_in_checksummed_chunks(env: Env, tmp_path: Path) -> None:
    png = tmp_path / "big photo.png"
    digest = make_png(png)
    size = png.stat().st_size
    small = tmp_path / "small.mp4"
    make_mp4(small, 200_000)
    rec = Recorder()
    client = await env.client(rec)
    target = await client.resolve(PETS)
    progress = Progress()
    body = body_of(png, on_progress=progress, hasher=hashlib.sha256())
    rec.clear()
    item = await client.upload(target, "image", body)
    assert (item.name, item.size, item.width, item.extension) == ("big photo", size, 900, ".png")
    [stored] = env.media()
    assert (stored.sha256, stored.size, stored.id) == (digest, size, item.id)
    patches = rec.of("PATCH")
    assert len(patches) == -(-size // MiB) >= 3
    assert all(p.status == 204 and p.headers["Upload-Checksum"].startswith("sha256 ")
               for p in patches)
    assert rec.patched() == size
    assert [r.method for r in rec.requests] == (
        ["OPTIONS", "POST"] + ["PATCH"] * len(patches) + ["POST"])
    [create] = rec.of("POST", "/api/uploads")
    meta = dict(p.split(" ") for p in create.headers["Upload-Metadata"].split(","))
    assert base64.b64decode(meta["filename"]).decode() == "big photo.png"
    assert base64.b64decode(meta["filetype"]).decode() == "image/png"
    assert rec.of("POST", ":from-upload")[0].status == 201
    # the caller's accounting: progress, bytes, timing, the content hash
    assert progress.total == body.sent == size and progress.negative == 0
    assert body.complete and body.done_at is not None and body.answered_at is not None
    assert body.server_wait is not None and body.server_wait >= 0
    assert body.hasher.hexdigest() == digest
    assert isinstance(client.resumes(), MemoryResumeStore)   # none set: one in memory
    assert client.resumes().get(key_of(png)) is None     # dropped once consumed
    # a small file: multipart, and no second OPTIONS for the next large one
    rec.clear()
    await client.upload(target, "video", body_of(small))
    assert [(r.method, r.path.rsplit("/", 1)[-1]) for r in rec.requests] == [("POST", "media")]
    other = tmp_path / "other.mp4"
    make_mp4(other, 3 * MiB)
    rec.clear()
    await client.upload(target, "video", body_of(other))
    assert not rec.of("OPTIONS") and rec.of("PATCH")
    assert len(env.media()) == 3


async def test_a_cut_patch_is_transient_and_the_retry_resumes(env: Env, tmp_path: Path) -> None:
    video = tmp_path / "clip.mp4"
    digest = make_mp4(video, 5 * MiB)
    proxy = CutProxy(int(env.base_url.rsplit(":", 1)[1]))
    await proxy.start()
    try:
        rec = Recorder()
        client = await env.client(rec, host=proxy.url)
        target = await client.resolve(PETS)
        proxy.cut_after(int(2.5 * MiB))          # in the third PATCH
        first = body_of(video, on_progress=Progress())
        with pytest.raises(TransientError) as failed:
            await client.upload(target, "video", first)
        assert not isinstance(failed.value, AmbiguousError) and proxy.cuts == 1
        await env.settled()
        [upload] = env.uploads()
        assert 2 * MiB <= upload.offset < int(2.5 * MiB)      # what arrived was kept
        url = client.resumes().get(key_of(video))
        assert url == f"{proxy.url}/api/uploads/{upload.id}"
        rec.clear()
        progress = Progress()
        second = body_of(video, on_progress=progress, hasher=hashlib.sha256())
        item = await client.upload(target, "video", second)
        assert [r.method for r in rec.requests][:2] == ["HEAD", "PATCH"]
        assert not rec.of("POST", "/api/uploads")
        assert rec.of("PATCH")[0].headers["Upload-Offset"] == str(upload.offset)
        assert rec.patched() == 5 * MiB - upload.offset      # only the missing bytes
        assert progress.total == second.sent == 5 * MiB      # the kept bytes count
        assert second.hasher.hexdigest() == digest           # ... and are hashed from disk
        [stored] = env.media()
        assert (stored.id, stored.sha256) == (item.id, digest)
        assert client.resumes().get(key_of(video)) is None
    finally:
        await proxy.stop()


async def test_a_new_client_resumes_from_the_persisted_url(env: Env, tmp_path: Path) -> None:
    video = tmp_path / "long.mp4"
    digest = make_mp4(video, 6 * MiB)
    store = FileResumeStore(tmp_path / "resume.json")
    first = await env.client(store=store)
    target = await first.resolve(PETS)

    def stop_at_3mib(n: int) -> None:
        if body.sent >= 3 * MiB + 100_000:
            task.cancel()                # the process dies: nothing runs after this

    body = body_of(video, on_progress=stop_at_3mib)
    task = asyncio.ensure_future(first.upload(target, "video", body))
    with pytest.raises(asyncio.CancelledError):
        await task
    await env.sessions[-1].close()
    await env.settled()
    [upload] = env.uploads()
    assert 3 * MiB <= upload.offset < 6 * MiB and not env.media()
    assert json.loads(store.path.read_text()) == {
        key_of(video): f"{env.base_url}/api/uploads/{upload.id}"}
    rec = Recorder()
    fresh = await env.client(rec, store=FileResumeStore(store.path))
    item = await fresh.upload(target, "video", body_of(video))
    assert rec.of("HEAD")[0].status == 204
    assert rec.patched() == 6 * MiB - upload.offset
    assert not rec.of("POST", "/api/uploads")
    assert [(m.id, m.sha256) for m in env.media()] == [(item.id, digest)]
    assert json.loads(store.path.read_text()) == {}


@pytest.mark.parametrize("why", ["unknown", "expired"])
async def test_an_unknown_or_expired_url_starts_a_new_upload(tmp_path: Path, why: str) -> None:
    srv = LocalGeti3(Geti3Config(data_dir=tmp_path / "g3", upload_ttl_s=0.3,
                                 upload_gc_s=3600))
    await srv.start()
    env = Env(srv, srv.base_url, [])
    try:
        video = tmp_path / "v.mp4"
        digest = make_mp4(video, 3 * MiB)
        rec = Recorder()
        client = await env.client(rec)
        target = await client.resolve(PETS)
        if why == "unknown":
            stale = f"{env.base_url}/api/uploads/{uuid.uuid4()}"
        else:
            async with env.sessions[0].post(env.base_url + "/api/uploads", headers={
                    **TUS, "Upload-Length": str(3 * MiB)}) as r:
                assert r.status == 201
                stale = env.base_url + r.headers["Location"]
            await asyncio.sleep(0.4)
        client.resumes().put(key_of(video), stale)
        rec.clear()
        item = await client.upload(target, "video", body_of(video))
        # a 410 might be our own consumed upload: the JSON view says it is only expired
        asked = [("HEAD", 404)] if why == "unknown" else [("HEAD", 410), ("GET", 200)]
        assert [(r.method, r.status) for r in rec.requests][:len(asked) + 2] == [
            ("OPTIONS", 204), *asked, ("POST", 201)]
        assert rec.patched() == 3 * MiB
        assert [(m.id, m.sha256) for m in env.media()] == [(item.id, digest)]
        assert client.resumes().get(key_of(video)) is None
    finally:
        for s in env.sessions:
            await s.close()
        await srv.stop()


async def test_a_lost_from_upload_answer_is_ambiguous_and_keeps_the_url(
        env: Env, tmp_path: Path) -> None:
    video = tmp_path / "v.mp4"
    digest = make_mp4(video, 3 * MiB)
    rec = Recorder()
    client = await env.client(rec)
    target = await client.resolve(PETS)
    env.srv.set_faults(script=["reset"])        # from-upload: read, then the connection drops
    with pytest.raises(AmbiguousError):
        await client.upload(target, "video", body_of(video))
    assert not env.media() and client.resumes().get(key_of(video)) is not None
    rec.clear()
    body = body_of(video)
    item = await client.upload(target, "video", body)
    assert [r.method for r in rec.requests] == ["HEAD", "POST"]     # nothing resent
    assert rec.patched() == 0 and body.sent == 3 * MiB
    assert [(m.id, m.sha256) for m in env.media()] == [(item.id, digest)]
    assert client.resumes().get(key_of(video)) is None


async def test_a_stored_then_500_from_upload_asks_the_caller_to_reconcile(
        env: Env, tmp_path: Path) -> None:
    video = tmp_path / "v.mp4"
    make_mp4(video, 3 * MiB)
    rec = Recorder()
    client = await env.client(rec)
    target = await client.resolve(PETS)
    env.srv.set_faults(script=["stored500"])
    with pytest.raises(AmbiguousError) as first:
        await client.upload(target, "video", body_of(video))
    assert (first.value.status, first.value.cause) == (500, "500-locked?")
    assert len(env.media()) == 1 and client.resumes().get(key_of(video)) is not None
    # had the caller not reconciled: the upload is consumed, so it is told to, again
    rec.clear()
    with pytest.raises(AmbiguousError) as second:
        await client.upload(target, "video", body_of(video))
    assert (second.value.status, second.value.cause) == (410, "consumed")
    assert [r.method for r in rec.requests] == ["HEAD", "GET"] and rec.patched() == 0
    assert len(env.media()) == 1 and client.resumes().get(key_of(video)) is None
    found = await client.find_by_name(target, "v", "video", recent=True)
    assert [m.id for m in found] == [env.media()[0].id]


async def test_an_offset_conflict_heads_and_continues(env: Env, tmp_path: Path) -> None:
    video = tmp_path / "v.mp4"
    digest = make_mp4(video, 4 * MiB)
    data = video.read_bytes()
    rec = Recorder()
    client = await env.client(rec)
    target = await client.resolve(PETS)
    other = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=env.context()))
    env.sessions.append(other)

    async def someone_else_appends(entry: Sent) -> None:
        if entry.method == "PATCH" and entry.headers["Upload-Offset"] == "0":
            at = MiB
            async with other.patch(env.base_url + entry.path, data=data[at:at + 300_000],
                                   headers={**TUS, "Upload-Offset": str(at), "Content-Type":
                                            "application/offset+octet-stream"}) as r:
                assert r.status == 204

    rec.on_end.append(someone_else_appends)
    progress = Progress()
    body = body_of(video, on_progress=progress, hasher=hashlib.sha256())
    item = await client.upload(target, "video", body)
    statuses = [(r.method, r.status) for r in rec.requests if r.path.startswith("/api/up")]
    assert statuses[2:6] == [("PATCH", 204), ("PATCH", 409), ("HEAD", 204), ("PATCH", 204)]
    assert rec.of("PATCH")[2].headers["Upload-Offset"] == str(MiB + 300_000)
    assert progress.total == body.sent == 4 * MiB
    assert body.hasher.hexdigest() == digest
    assert [(m.id, m.sha256) for m in env.media()] == [(item.id, digest)]


async def test_a_checksum_mismatch_resends_the_chunk_once(env: Env, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    video = tmp_path / "v.mp4"
    digest = make_mp4(video, 3 * MiB)
    rec = Recorder()
    client = await env.client(rec)
    target = await client.resolve(PETS)
    real = TusTransfer._digest
    wrong = {"left": 1}

    def flaky(self: TusTransfer, algorithm: str, offset: int, n: int) -> bytes:
        if offset == MiB and wrong["left"]:
            wrong["left"] -= 1
            return hashlib.sha256(b"not these bytes").digest()
        return real(self, algorithm, offset, n)

    monkeypatch.setattr(TusTransfer, "_digest", flaky)
    progress = Progress()
    body = body_of(video, on_progress=progress)
    await client.upload(target, "video", body)
    assert [p.status for p in rec.of("PATCH")] == [204, 460, 204, 204]
    assert progress.negative == 1 and progress.total == body.sent == 3 * MiB
    assert env.media()[0].sha256 == digest
    # twice in a row: a TransientError, nothing past the good chunks on the server
    wrong["left"] = 2
    other = tmp_path / "w.mp4"
    make_mp4(other, 3 * MiB)
    rec.clear()
    with pytest.raises(TransientError) as failed:
        await client.upload(target, "video", body_of(other))
    assert failed.value.cause == "checksum" and not isinstance(failed.value, AmbiguousError)
    assert [p.status for p in rec.of("PATCH")] == [204, 460, 460]
    assert [u.offset for u in env.uploads() if u.state != "consumed"] == [MiB]


async def test_a_file_changed_midway_is_not_consumed(env: Env, tmp_path: Path) -> None:
    video = tmp_path / "v.mp4"
    make_mp4(video, 4 * MiB)
    client = await env.client()
    target = await client.resolve(PETS)
    mtime = video.stat().st_mtime_ns

    def touch(n: int) -> None:
        if body.sent >= MiB + 1:
            os.utime(video, ns=(mtime, mtime + 10**9))

    body = body_of(video, on_progress=touch)
    with pytest.raises(FileChangedError):
        await client.upload(target, "video", body)
    assert body.failure is not None and not body.complete
    assert client.resumes().get(resume_key(str(video), 4 * MiB, mtime)) is None
    for _ in range(100):                 # the upload is deleted on the server, in the background
        if not env.uploads():
            break
        await asyncio.sleep(0.02)
    assert not env.uploads() and not env.media()


@pytest.mark.parametrize("answer", ["405", "html"])
async def test_a_server_without_tus_gets_multipart(tmp_path: Path, answer: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from aiohttp import web

    from geti_bulk.server.geti3 import app

    async def html(request: web.Request) -> web.Response:
        return web.Response(text=app.SPA_HTML, content_type="text/html")

    if answer == "405":       # an older Geti 3: no /api/uploads at all
        routes = [r for r in app.ROUTES if not r[1].startswith("/api/uploads")]
    else:
        routes = [(m, p, html if m == "OPTIONS" else h, s) for m, p, h, s in app.ROUTES]
    monkeypatch.setattr(app, "ROUTES", routes)
    srv = LocalGeti3(Geti3Config(data_dir=tmp_path / "g3"))
    await srv.start()
    env = Env(srv, srv.base_url, [])
    try:
        rec = Recorder()
        client = await env.client(rec)
        target = await client.resolve(PETS)
        rec.clear()
        for name in ("a.mp4", "b.mp4"):
            video = tmp_path / name
            digest = make_mp4(video, 2 * MiB)
            item = await client.upload(target, "video", body_of(video))
            assert env.srv.state.store.get_media(target.project.id, item.id).sha256 == digest
        assert [(r.method, r.status) for r in rec.requests] == [
            ("OPTIONS", 405 if answer == "405" else 200), ("POST", 201), ("POST", 201)]
        assert all(r.path.endswith("/dataset/media") for r in rec.of("POST"))
        assert not (await client.tus_support()).supported
    finally:
        for s in env.sessions:
            await s.close()
        await srv.stop()


def _vm(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(field_name)


@pytest.mark.timeout(120)
async def test_a_512_mib_file_keeps_the_memory_flat(env: Env, tmp_path: Path) -> None:
    video = tmp_path / "huge.mp4"
    digest = make_mp4(video, 512 * MiB, sparse=True)
    client = await env.client(chunk=16 * MiB)
    target = await client.resolve(PETS)
    progress = Progress()
    body = body_of(video, on_progress=progress)
    Path("/proc/self/clear_refs").write_text("5")       # VmHWM := VmRSS
    before = _vm("VmRSS")
    t0 = time.monotonic()
    item = await client.upload(target, "video", body)
    elapsed = time.monotonic() - t0
    growth = _vm("VmHWM") - before
    print(f"\n512 MiB over TUS in {elapsed:.1f} s, peak RSS growth {growth / MiB:.1f} MiB "
          "(client and server in this process)")
    assert growth < 64 * MiB
    assert progress.total == 512 * MiB
    assert [(m.id, m.sha256, m.size) for m in env.media()] == [(item.id, digest, 512 * MiB)]


# --- the slow test: SIGKILL the uploader process, resume in another -------------------


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_sigkill_mid_upload_then_another_process_resumes(env: Env, tmp_path: Path) -> None:
    size = 1024 * MiB
    video = tmp_path / "gib.mp4"
    digest = make_mp4(video, size, sparse=True)
    store = tmp_path / "resume.json"
    root = Path(__file__).resolve().parents[1]
    args = [sys.executable, str(Path(__file__).resolve()), "child", env.base_url,
            str(env.srv.cert_path), PETS, str(video), str(store)]
    envvars = {**os.environ, "PYTHONPATH": str(root)}
    first = await asyncio.create_subprocess_exec(*args, env=envvars,
                                                 stdout=asyncio.subprocess.PIPE)
    assert first.stdout is not None
    sent = 0
    while sent < 400 * MiB:
        line = await asyncio.wait_for(first.stdout.readline(), 60)
        assert line, "the uploader ended before it was killed"
        sent = json.loads(line)["sent"]
    os.kill(first.pid, signal.SIGKILL)
    assert await first.wait() == -signal.SIGKILL
    await env.settled()
    [upload] = env.uploads()
    assert 300 * MiB <= upload.offset < size and not env.media()
    urls = json.loads(store.read_text())
    assert list(urls.values()) == [f"{env.base_url}/api/uploads/{upload.id}"]
    t0 = time.monotonic()
    second = await asyncio.create_subprocess_exec(*args, env=envvars,
                                                  stdout=asyncio.subprocess.PIPE)
    out, _ = await second.communicate()
    assert second.returncode == 0
    result = json.loads(out.splitlines()[-1])
    print(f"\nkilled at {upload.offset / MiB:.0f} MiB on the server; the second process sent "
          f"{result['patched'] / MiB:.0f} MiB in {time.monotonic() - t0:.1f} s")
    assert result["first_offset"] == upload.offset
    assert result["patched"] == size - upload.offset
    assert [(m.id, m.sha256) for m in env.media()] == [(result["id"], digest)]
    assert json.loads(store.read_text()) == {}


async def _child(host: str, cert: str, project: str, path: str, store: str) -> None:
    """The uploader process: prints {"sent"} every 32 MiB, then the result."""
    rec = Recorder()
    ctx = ssl.create_default_context(cafile=cert)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx),
                                     trace_configs=[rec.config()]) as session:
        client = Geti3Client(session, host, version="3.2.0")
        client.tus_threshold = MiB
        client.resume_store = FileResumeStore(Path(store))
        target: Target = await client.resolve(project)
        mark = {"next": 32 * MiB}

        def progress(n: int) -> None:
            if body.sent >= mark["next"]:
                mark["next"] += 32 * MiB
                print(json.dumps({"sent": body.sent}), flush=True)

        body = body_of(Path(path), on_progress=progress)
        item = await client.upload(target, "video", body)
        patches = rec.of("PATCH")
        print(json.dumps({"id": item.id, "patched": rec.patched(),
                          "first_offset": int(patches[0].headers["Upload-Offset"])}), flush=True)


if __name__ == "__main__" and sys.argv[1:2] == ["child"]:
    asyncio.run(_child(*sys.argv[2:7]))


@pytest.mark.slow
async def test_cli_sigkill_mid_tus_upload_resumes_from_the_journal(env: Env,
                                                                    tmp_path: Path) -> None:
    """`geti-bulk upload` itself (the default 256 MiB threshold and 16 MiB chunks, the
    URL in the journal), SIGKILLed with a 1 GiB file half sent; the rerun HEADs the same
    upload, sends the rest and consumes it, with its peak RSS far below the file."""
    import sqlite3

    size = 1024 * MiB
    data = tmp_path / "data"
    data.mkdir()
    video = data / "gib.mp4"
    digest = make_mp4(video, size, sparse=True)
    journal = tmp_path / "journal.sqlite"
    cmd = [sys.executable, "-m", "geti_bulk.cli", "upload", str(data), "--host",
           env.base_url, "--project", PETS, "--ca-bundle", str(env.srv.cert_path),
           "--journal", str(journal), "--progress", "none"]
    envvars = {k: v for k, v in os.environ.items() if k != "GETI_TOKEN"}
    first = await asyncio.create_subprocess_exec(*cmd, env=envvars,
                                                 stdout=asyncio.subprocess.DEVNULL,
                                                 stderr=asyncio.subprocess.DEVNULL)
    for _ in range(6000):                                  # up to 10 min under load
        if any(u.offset >= 300 * MiB for u in env.uploads()) or first.returncode is not None:
            break
        await asyncio.sleep(0.1)
    os.kill(first.pid, signal.SIGKILL)
    assert await first.wait() == -signal.SIGKILL
    await env.settled()
    [killed] = env.uploads()
    assert 300 * MiB <= killed.offset < size and not env.media()
    with sqlite3.connect(journal) as c:
        urls = [v for (k, v) in c.execute("SELECT k, v FROM meta WHERE k LIKE 'tus:%'")]
    assert urls == [f"{env.base_url}/api/uploads/{killed.id}"]

    second = await asyncio.create_subprocess_exec(*cmd, env=envvars,
                                                  stdout=asyncio.subprocess.PIPE,
                                                  stderr=asyncio.subprocess.PIPE)
    peak_kib = 0
    status = Path(f"/proc/{second.pid}/status")
    while second.returncode is None:
        try:
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak_kib = max(peak_kib, int(line.split()[1]))
        except OSError:
            pass
        try:
            await asyncio.wait_for(second.wait(), 0.05)
        except TimeoutError:
            pass
    out, err = await second.communicate()
    assert second.returncode == 0, err.decode()[-2000:]
    print(f"\nCLI killed at {killed.offset / MiB:.0f} MiB on the server; the rerun's peak RSS "
          f"{peak_kib / 1024:.0f} MiB for a {size / MiB:.0f} MiB file")
    [upload] = env.uploads()                       # no second upload was created
    assert (upload.id, upload.state) == (killed.id, "consumed")
    [media] = env.media()
    assert (media.sha256, media.size) == (digest, size)
    assert peak_kib * 1024 < 200 * MiB
    with sqlite3.connect(journal) as c:
        assert dict(c.execute("SELECT state, COUNT(*) FROM files GROUP BY state")) == \
            {"uploaded": 1}
        assert list(c.execute("SELECT k FROM meta WHERE k LIKE 'tus:%'")) == []
