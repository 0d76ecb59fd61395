"""Shared fixtures: the real local server on 127.0.0.1 and the real uploader."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from geti_bulk.config import UploadConfig
from geti_bulk.events import RecordingReporter
from geti_bulk.geti.client import Secret
from geti_bulk.pipeline import Run, RunResult
from geti_bulk.retry import RetryPolicy
from geti_bulk.server import LocalGeti, ServerConfig
from geti_bulk.server.seed import generate_pat


@pytest.fixture
def token() -> str:
    return generate_pat()


@pytest.fixture
async def server(tmp_path: Path, token: str) -> AsyncIterator[LocalGeti]:
    srv = LocalGeti(ServerConfig(data_dir=tmp_path / "server", token=token, seed=3))
    async with srv:
        yield srv


def project_info(server: LocalGeti, name: str) -> dict[str, Any]:
    return next(p for p in server.info["projects"] if p["name"] == name)


def label_ids(server: LocalGeti, project: str) -> dict[str, str]:
    return {lab["name"]: lab["id"] for lab in project_info(server, project)["labels"]}


def make_cfg(server: LocalGeti, token: str, tmp_path: Path, sources: tuple[Path, ...] = (),
             project: str = "Pets classification", **kw: Any) -> UploadConfig:
    kw.setdefault("journal", tmp_path / "journal.sqlite")
    kw.setdefault("report", tmp_path / "report.jsonl")
    return UploadConfig(host=server.base_url, project=project, token=Secret(token),
                        sources=sources, **kw)


async def no_sleep(_: float) -> None:
    return None


class SleepRecorder:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


async def upload(cfg: UploadConfig, *, sleep: Any = no_sleep,
                 policy: RetryPolicy | None = None) -> tuple[RunResult, RecordingReporter]:
    rec = RecordingReporter()
    result = await Run(cfg, rec, sleep=sleep, policy=policy).execute()
    return result, rec


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stored_by_sha(server: LocalGeti) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for rec in server.store.list_media():
        out.setdefault(rec.sha256, []).append(rec)
    return out


async def admin_stats(server: LocalGeti) -> dict[str, Any]:
    import aiohttp

    async with aiohttp.ClientSession() as s, s.get(
            f"{server.base_url}/_admin/stats",
            headers={"x-admin-token": server.info["admin_token"]}) as r:
        assert r.status == 200
        data: dict[str, Any] = await r.json()
        return data


@pytest.fixture
async def tls_server(tmp_path: Path, token: str) -> AsyncIterator[tuple[LocalGeti, Path]]:
    """The local server over HTTPS with a certificate from a throwaway CA: (server, the
    CA's PEM file, which a client must be given to trust it)."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file, ca_file = (tmp_path / n for n in ("cert.pem", "key.pem", "ca.pem"))
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    ca.cert_pem.write_to_path(str(ca_file))
    srv = LocalGeti(ServerConfig(data_dir=tmp_path / "tls-server", token=token,
                                 tls_cert=cert_file, tls_key=key_file))
    async with srv:
        yield srv, ca_file
