"""Fixtures for the local Geti server tests: a started ``LocalGeti`` on 127.0.0.1 and
an ``Api`` helper that talks to it with the real aiohttp client over real sockets."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from geti_bulk.server import LocalGeti, ServerConfig
from geti_bulk.server.seed import generate_pat

# Geti's OpenAPI example bodies, vendored from the team's shared/geti_fixtures (see the
# README there for their origin) so that any checkout runs these tests
FIXTURES = Path(__file__).resolve().parents[1] / "geti_fixtures"


def load_fixture(name: str) -> Any:
    """A JSON example from tests/geti_fixtures."""
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def multipart(
    file: bytes | None = None,
    filename: str | None = "image.jpg",
    upload_info: str | None = None,
    file_field: str = "file",
) -> tuple[bytes, str]:
    """A multipart/form-data body built by hand (exact filename bytes, no quoting)."""
    boundary = uuid.uuid4().hex
    parts: list[bytes] = []
    if file is not None:
        disposition = f'form-data; name="{file_field}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        parts.append(
            f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
            "Content-Type: application/octet-stream\r\n\r\n".encode() + file + b"\r\n"
        )
    if upload_info is not None:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="upload_info"\r\n\r\n'
            f"{upload_info}\r\n".encode()
        )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


@dataclass
class Reply:
    status: int
    text: str
    headers: Any

    def json(self) -> Any:
        return json.loads(self.text)


class Api:
    """Paths and calls against one LocalGeti, authenticated with its token."""

    def __init__(self, server: LocalGeti, session: aiohttp.ClientSession, token: str) -> None:
        self.server = server
        self.session = session
        self.token = token
        self.org = server.info["organization_id"]
        self.ws = server.info["workspace_id"]
        self.projects = {p["name"]: p for p in server.info["projects"]}

    @property
    def ws_path(self) -> str:
        return f"/api/v1/organizations/{self.org}/workspaces/{self.ws}"

    def project(self, name: str = "Pets classification") -> dict[str, Any]:
        return dict(self.projects[name])

    def dataset_path(self, name: str = "Pets classification", dataset: int = 0) -> str:
        project = self.projects[name]
        return f"{self.ws_path}/projects/{project['id']}/datasets/{project['datasets'][dataset]['id']}"

    def label_id(self, project: str, label: str) -> str:
        return str(next(x["id"] for x in self.projects[project]["labels"] if x["name"] == label))

    async def request(
        self, method: str, path: str, *, headers: dict[str, str] | None = None,
        auth: bool = True, **kwargs: Any,
    ) -> Reply:
        all_headers = {"x-api-key": self.token} if auth else {}
        all_headers.update(headers or {})
        async with self.session.request(
            method, self.server.base_url + path, headers=all_headers, **kwargs
        ) as resp:
            return Reply(resp.status, (await resp.read()).decode(errors="replace"), resp.headers)

    async def get(self, path: str, **kwargs: Any) -> Reply:
        return await self.request("GET", path, **kwargs)

    async def upload(
        self,
        data: bytes | None,
        filename: str | None = "image.jpg",
        *,
        project: str = "Pets classification",
        kind: str = "images",
        upload_info: str | None = None,
        path: str | None = None,
        dataset: int = 0,
        **kwargs: Any,
    ) -> Reply:
        body, content_type = multipart(data, filename, upload_info)
        target = path or f"{self.dataset_path(project, dataset)}/media/{kind}"
        headers = {"Content-Type": content_type, **kwargs.pop("headers", {})}
        return await self.request(
            "POST", target, data=io.BytesIO(body), headers=headers, **kwargs
        )

    async def query(
        self, body: Any = None, *, project: str = "Pets classification", params: str = "",
        raw: bytes | None = None,
    ) -> Reply:
        path = f"{self.dataset_path(project)}/media:query{params}"
        if raw is not None:
            return await self.request("POST", path, data=raw)
        return await self.request("POST", path, json=body)

    async def admin(self, method: str, path: str, **kwargs: Any) -> Reply:
        headers = {"x-admin-token": self.server.admin_token}
        return await self.request(method, path, headers=headers, auth=False, **kwargs)


@pytest.fixture
def geti_token() -> str:
    return generate_pat()


MakeGeti = Callable[..., Awaitable[Api]]


@pytest.fixture
async def make_geti(tmp_path: Path, geti_token: str) -> AsyncIterator[MakeGeti]:
    """Start a LocalGeti with ServerConfig overrides; returns an ``Api`` for it."""
    started: list[tuple[LocalGeti, aiohttp.ClientSession]] = []

    async def make(**overrides: Any) -> Api:
        data_dir = overrides.pop("data_dir", tmp_path / f"geti{len(started)}")
        config = ServerConfig(data_dir=data_dir, token=geti_token, **overrides)
        server = LocalGeti(config)
        await server.start()
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False))
        started.append((server, session))
        return Api(server, session, geti_token)

    yield make
    for server, session in reversed(started):
        await session.close()
        await server.stop()


@pytest.fixture
async def api(make_geti: MakeGeti) -> Api:
    return await make_geti()
