"""Fixtures for the local Geti 3 tests: a started ``LocalGeti3`` on 127.0.0.1 and an
``Api3`` that talks to it with the real aiohttp client over real sockets, trusting the
server's generated self-signed certificate."""

from __future__ import annotations

import asyncio
import io
import json
import ssl
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from geti_bulk.server.geti3 import Geti3Config, LocalGeti3


def jpeg(width: int = 64, height: int = 48, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, "JPEG")
    return buf.getvalue()


def multipart(data: bytes | None, filename: str | None = "image.jpg", field: str = "file",
              raw_disposition: str | None = None) -> tuple[bytes, str]:
    """A form built by hand: the filename goes into the header byte for byte."""
    boundary = uuid.uuid4().hex
    body = b""
    if data is not None:
        disposition = raw_disposition or f'form-data; name="{field}"' + (
            f'; filename="{filename}"' if filename is not None else "")
        body += (f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
                 "Content-Type: image/jpeg\r\n\r\n").encode() + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


@dataclass
class Reply:
    status: int
    body: bytes
    headers: Any

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.text)


class Api3:
    """Calls against one LocalGeti3."""

    def __init__(self, server: LocalGeti3, session: aiohttp.ClientSession) -> None:
        self.server = server
        self.session = session
        self.projects = {p["name"]: p for p in server.info["projects"]}

    def pid(self, name: str) -> str:
        return str(self.projects[name]["id"])

    def label(self, project: str, name: str) -> str:
        return next(str(lab["id"]) for lab in self.projects[project]["labels"]
                    if lab["name"] == name)

    def media_path(self, project: str) -> str:
        return f"/api/projects/{self.pid(project)}/dataset/media"

    async def call(self, method: str, path: str, **kw: Any) -> Reply:
        async with self.session.request(method, self.server.base_url + path, **kw) as resp:
            return Reply(resp.status, await resp.read(), resp.headers)

    async def upload(self, project: str, data: bytes, filename: str = "image.jpg") -> Reply:
        body, content_type = multipart(data, filename)
        return await self.call("POST", self.media_path(project), data=io.BytesIO(body),
                               headers={"Content-Type": content_type})

    async def annotate(self, project: str, media_id: str, body: Any) -> Reply:
        return await self.call("POST", f"{self.media_path(project)}/{media_id}/annotations",
                               json=body)

    async def stats(self) -> dict[str, Any]:
        reply = await self.call("GET", "/_admin/stats",
                                headers={"x-admin-token": self.server.admin_token})
        assert reply.status == 200, reply.text
        return dict(reply.json())


def trust(server: LocalGeti3) -> ssl.SSLContext:
    assert server.cert_path is not None
    return ssl.create_default_context(cafile=str(server.cert_path))


MakeGeti3 = Callable[..., Awaitable[Api3]]


@pytest.fixture
async def make_geti3(tmp_path: Path) -> AsyncIterator[MakeGeti3]:
    started: list[tuple[LocalGeti3, aiohttp.ClientSession]] = []

    async def make(data_dir: Path | None = None, **kw: Any) -> Api3:
        kw.setdefault("locked_ms", 300)
        kw.setdefault("slow_ms", 600)
        server = LocalGeti3(Geti3Config(data_dir=data_dir or tmp_path / "geti3", **kw))
        await server.start()
        context: ssl.SSLContext | bool = trust(server) if server.cert_path else False
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context, limit=0))
        started.append((server, session))
        return Api3(server, session)

    yield make
    for server, session in reversed(started):
        await session.close()
        await server.stop()
    await asyncio.sleep(0)


@pytest.fixture
async def api(make_geti3: MakeGeti3) -> Api3:
    return await make_geti3()
