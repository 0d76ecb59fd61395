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
TERMINATED = ("upstream connect error or disconnect/reset before headers. "
              "reset reason: connection termination")


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


class _SlowUpload:
    """One upload held in flight by hand: headers and the first bytes, the rest later."""

    def __init__(self, api: Api, name: str) -> None:
        self.api = api
        self.body, self.content_type = multipart(image_bytes(), name)

    async def start(self) -> None:
        api = self.api
        host, port = api.server.base_url.removeprefix("http://").split(":")
        self.reader, self.writer = await asyncio.open_connection(host, int(port))
        head = (
            f"POST {api.dataset_path()}/media/images HTTP/1.1\r\nHost: {host}\r\n"
            f"x-api-key: {api.token}\r\nContent-Type: {self.content_type}\r\n"
            f"Content-Length: {len(self.body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + self.body[:100])
        await self.writer.drain()
        for _ in range(200):
            if api.server.state.service.inflight >= 1:
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the upload never arrived")

    async def finish(self) -> bytes:
        """Send the rest; the whole answer (status line, headers, body) as bytes."""
        try:
            self.writer.write(self.body[100:])
            await self.writer.drain()
        except ConnectionError:
            pass
        data = await asyncio.wait_for(self.reader.read(65536), 5)
        self.writer.close()
        return data


async def test_overload_refuse_mode_503s_only_the_extra_upload(make_geti: MakeGeti) -> None:
    api = await make_geti(max_inflight=1, overload="refuse")
    held = _SlowUpload(api, "slow.jpg")
    await held.start()
    reply = await api.upload(image_bytes(), "second.jpg")
    assert (reply.status, reply.text) == (503, OVERFLOW)
    assert b" 200 " in (await held.finish()).split(b"\r\n")[0]
    stats = (await api.admin("GET", "/_admin/stats")).json()
    assert stats["faults"] == {"overload": 1}
    assert stats["peak_inflight"] == 1
    assert stats["media_total"] == 1
    assert stats["overload_503"] == 1 and stats["restarts"] == 0


async def test_overload_oom_mode_kills_everything_in_flight_then_restarts(
        make_geti: MakeGeti) -> None:
    api = await make_geti(max_inflight=1, restart_ms=400)
    held = _SlowUpload(api, "slow.jpg")
    await held.start()
    reply = await api.upload(image_bytes(), "second.jpg")       # one more: the pod dies
    assert (reply.status, reply.text) == (503, TERMINATED)
    answer = await held.finish()                                # the one in flight died too
    assert b" 503 " in answer.split(b"\r\n")[0] and TERMINATED.encode() in answer
    # while it restarts the gateway has no upstream: uploads and media:query alike
    down = await api.upload(image_bytes(), "third.jpg")
    assert (down.status, down.text) == (503, "no healthy upstream")
    assert (await api.query({})).status == 503
    assert (await api.get(f"{api.ws_path}/projects")).status == 200   # other services are up
    deadline = time.monotonic() + 5
    while (await api.query({})).status == 503:
        assert time.monotonic() < deadline, "the service never came back"
        await asyncio.sleep(0.05)
    assert (await api.upload(image_bytes(), "fourth.jpg")).status == 200
    stats = (await api.admin("GET", "/_admin/stats")).json()
    assert stats["media_total"] == 1                            # nothing killed was stored
    assert stats["faults"] == {"oom": 1} and stats["restarts"] == 1
    assert stats["inflight"] == 0


async def test_crash_fault_kills_every_upload_in_flight(make_geti: MakeGeti) -> None:
    api = await make_geti(restart_ms=300)
    api.server.set_faults(script=["ok", "crash"])
    held = _SlowUpload(api, "slow.jpg")
    await held.start()
    reply = await api.upload(image_bytes(), "second.jpg")       # this one crashes the service
    assert (reply.status, reply.text) == (503, TERMINATED)
    answer = await held.finish()
    assert b" 503 " in answer.split(b"\r\n")[0] and TERMINATED.encode() in answer
    assert (await api.query({})).status == 503                  # down while it restarts
    stats = (await api.admin("GET", "/_admin/stats")).json()
    assert stats["media_total"] == 0 and stats["faults"] == {"crash": 1}
    assert stats["restarts"] == 1


async def test_workers_make_uploads_wait_in_memory(make_geti: MakeGeti) -> None:
    api = await make_geti(workers=1, service_ms=150)
    t0 = time.monotonic()
    replies = await asyncio.gather(*(api.upload(image_bytes(), f"w{i}.jpg") for i in range(3)))
    took = time.monotonic() - t0
    assert [r.status for r in replies] == [200, 200, 200]
    assert took >= 0.45                  # one at a time: three service times, not one
    stats = (await api.admin("GET", "/_admin/stats")).json()
    assert stats["peak_inflight"] == 3   # the two waiting were held all along


def test_spec_parsing() -> None:
    assert parse_spec("503=0.05, reset=0.02") == [("503", 0.05), ("reset", 0.02)]
    for bad in ("teapot=0.1", "503", "503=x", "503=1.5", "503=0.6,504=0.6"):
        with pytest.raises(ValueError):
            parse_spec(bad)
    injector = FaultInjector("", seed=1)
    injector.configure(script=["slow", "ok", "RESET"])
    assert [injector.next_fault() for _ in range(4)] == ["slow", None, "reset", None]


def test_overload_settings_are_checked(tmp_path) -> None:
    from geti_bulk.server import LocalGeti, ServerConfig

    for bad in ({"workers": -1}, {"max_inflight": -3}, {"overload": "explode"}):
        with pytest.raises(ValueError):
            LocalGeti(ServerConfig(data_dir=tmp_path, token="t", **bad))
