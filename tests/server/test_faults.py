"""Fault injection as a client sees it: scripted kinds, seeded probabilities, overload."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from geti_bulk.server.faults import FaultInjector, parse_spec
from geti_bulk.server.samples import image_bytes

from .conftest import Api, MakeGeti, multipart

OVERFLOW = "upstream connect error or disconnect/reset before headers. reset reason: overflow"


@pytest.mark.parametrize(
    ("kind", "status", "text", "retry_after"),
    [
        ("502", 502, "upstream connect error or disconnect/reset before headers. "
                     "reset reason: connection termination", None),
        ("503", 503, OVERFLOW, None),
        ("503ra", 503, OVERFLOW, "1"),
        ("504", 504, "upstream request timeout", None),
        ("429", 429, "local_rate_limited", None),
        ("429ra", 429, "local_rate_limited", "1"),
    ],
)
async def test_gateway_faults(api: Api, kind: str, status: int, text: str,
                              retry_after: str | None) -> None:
    api.server.set_faults(script=[kind])
    reply = await api.upload(image_bytes(), "x.jpg")
    assert (reply.status, reply.text) == (status, text)
    assert reply.headers["Content-Type"].startswith("text/plain")
    assert reply.headers.get("Retry-After") == retry_after
    if status == 429:
        assert reply.headers["x-local-rate-limit"] == "true"
    assert api.server.store.count() == 0
    # the script is used up: the next upload goes through
    assert (await api.upload(image_bytes(), "x.jpg")).status == 200
    stats = (await api.admin("GET", "/_admin/stats")).json()
    assert stats["faults"] == {kind: 1}
    assert stats["uploads_received"] == 2


async def test_reset_aborts_connection_and_stores_nothing(api: Api) -> None:
    api.server.set_faults(script=["reset"])
    with pytest.raises(aiohttp.ClientError):
        await api.upload(image_bytes() + bytes(4 << 20), "x.jpg")
    assert api.server.store.count() == 0
    assert (await api.upload(image_bytes(), "x.jpg")).status == 200
    await asyncio.sleep(0.05)
    assert list(api.server.store.tmp_dir.iterdir()) == []


async def test_stored500_stores_then_fails(api: Api) -> None:
    api.server.set_faults(script=["stored500"])
    reply = await api.upload(image_bytes(), "kept.jpg")
    assert (reply.status, reply.text) == (500, "Internal Server Error")
    records = api.server.store.list_media()
    assert [r.name for r in records] == ["kept"]
    found = await api.query({"rules": [{"field": "media_name", "operator": "equal",
                                        "value": "kept"}]})
    assert len(found.json()["media"]) == 1


async def test_slow_delays_the_answer(make_geti: MakeGeti) -> None:
    api = await make_geti(slow_ms=300)
    api.server.set_faults(script=["slow", "ok"])
    started = time.monotonic()
    assert (await api.upload(image_bytes(), "x.jpg")).status == 200
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    assert (await api.upload(image_bytes(), "y.jpg")).status == 200
    assert time.monotonic() - started < 0.3


async def test_seeded_probabilities_are_reproducible(make_geti: MakeGeti) -> None:
    runs = []
    for _ in range(2):
        api = await make_geti(faults="503=0.3,429=0.2", seed=42)
        statuses = [(await api.upload(image_bytes(), f"{i}.jpg")).status for i in range(30)]
        runs.append(statuses)
    assert runs[0] == runs[1]
    assert {200, 503, 429} <= set(runs[0])


async def test_admin_faults_endpoint(api: Api) -> None:
    reply = await api.admin("POST", "/_admin/faults", json={"spec": "", "script": ["504", "ok"]})
    assert reply.status == 200
    assert (await api.upload(image_bytes(), "x.jpg")).status == 504
    assert (await api.upload(image_bytes(), "x.jpg")).status == 200
    bad = await api.admin("POST", "/_admin/faults", json={"spec": "teapot=0.5"})
    assert bad.status == 400
    refused = await api.request("POST", "/_admin/faults", json={"script": ["503"]})
    assert refused.status == 403


async def test_faults_apply_to_uploads_only(api: Api) -> None:
    api.server.set_faults("503=1.0")
    assert (await api.query({})).status == 200
    assert (await api.get(f"{api.ws_path}/projects")).status == 200
    assert (await api.upload(image_bytes(), "x.jpg")).status == 503


async def test_overload_503_when_too_many_in_flight(make_geti: MakeGeti) -> None:
    api = await make_geti(max_inflight=1)
    body, content_type = multipart(image_bytes(), "slow.jpg")
    host, port = api.server.base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = (
        f"POST {api.dataset_path()}/media/images HTTP/1.1\r\nHost: {host}\r\n"
        f"x-api-key: {api.token}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    writer.write(head.encode() + body[:100])
    await writer.drain()
    for _ in range(100):
        if api.server.state.inflight == 1:
            break
        await asyncio.sleep(0.01)
    reply = await api.upload(image_bytes(), "second.jpg")
    assert (reply.status, reply.text) == (503, OVERFLOW)
    writer.write(body[100:])
    await writer.drain()
    status_line = await reader.readline()
    assert b" 200 " in status_line
    writer.close()
    await writer.wait_closed()
    stats = (await api.admin("GET", "/_admin/stats")).json()
    assert stats["faults"] == {"overload": 1}
    assert stats["peak_inflight"] == 1
    assert stats["media_total"] == 1


def test_spec_parsing() -> None:
    assert parse_spec("503=0.05, reset=0.02") == [("503", 0.05), ("reset", 0.02)]
    for bad in ("teapot=0.1", "503", "503=x", "503=1.5", "503=0.6,504=0.6"):
        with pytest.raises(ValueError):
            parse_spec(bad)
    injector = FaultInjector("", seed=1)
    injector.configure(script=["slow", "ok", "RESET"])
    assert [injector.next_fault() for _ in range(4)] == ["slow", None, "reset", None]
