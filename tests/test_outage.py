"""An outage holds the run instead of failing files; past --max-outage it stops."""

from __future__ import annotations

import asyncio
import socket

import pytest

from geti_bulk.errors import AmbiguousError, FatalError, TransientError
from geti_bulk.events import FileFailed, Notice, RecordingReporter
from geti_bulk.outage import OutageGate, is_outage_sign
from geti_bulk.pipeline import Run
from geti_bulk.retry import RetryPolicy
from geti_bulk.sampledata import make_labelled_tree
from geti_bulk.server import LocalGeti, ServerConfig
from tests.conftest import make_cfg, no_sleep


def refused() -> TransientError:
    return TransientError("cannot connect to http://x: Connection refused", cause="connect")


def test_what_counts_as_an_outage_sign():
    assert is_outage_sign(refused())
    assert is_outage_sign(TransientError("no healthy upstream", status=503))
    assert is_outage_sign(TransientError("upstream request timeout", status=504))
    # the service may have stored it (a 500, a 503 after the body): the file's own trouble
    assert not is_outage_sign(AmbiguousError("server answered 500", status=500))
    assert not is_outage_sign(AmbiguousError("connection termination", status=503))
    assert not is_outage_sign(TransientError("timed out", cause="timeout"))
    assert is_outage_sign(TransientError("connection lost", cause="network"))
    assert not is_outage_sign(AmbiguousError("connection lost", cause="network"))


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, d: float) -> None:
        self.now += d
        await asyncio.sleep(0)


async def test_gate_opens_after_the_threshold_and_every_waiter_goes_on_when_back():
    clock = FakeClock()
    answers = [refused(), refused(), None]

    async def probe() -> None:
        a = answers.pop(0)
        if a is not None:
            raise a

    rec = RecordingReporter()
    gate = OutageGate(probe, rec, threshold=3, max_outage=60, clock=clock, sleep=clock.sleep)
    assert gate.failed(refused()) and gate.failed(refused()) and not gate.active
    gate.failed(AmbiguousError("500", status=500))       # not a sign: the count restarts
    assert not gate.active
    for _ in range(3):
        gate.failed(refused())
    assert gate.active
    await asyncio.gather(*(gate.wait() for _ in range(5)))
    assert not gate.active and answers == [] and gate.outages == 1
    gate.succeeded()                              # the first real answer ends the outage
    texts = [e.text for e in rec.events if isinstance(e, Notice)]
    assert "the server cannot be reached" in texts[0] and "answers again" in texts[-1]


async def test_gate_stops_the_run_past_max_outage():
    clock = FakeClock()

    async def probe() -> None:
        raise refused()

    gate = OutageGate(probe, RecordingReporter(), threshold=1, max_outage=30, clock=clock,
                      sleep=clock.sleep)
    gate.failed(refused())
    with pytest.raises(FatalError, match="has not answered for 30 s"):
        await asyncio.gather(gate.wait(), gate.wait())
    assert clock.now >= 30
    with pytest.raises(FatalError):
        await gate.wait()                        # later waiters stop too


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_server_down_for_seconds_fails_no_file(tmp_path, token):
    data = tmp_path / "data"
    make_labelled_tree(data, ["cat", "dog"], 80, size=(48, 40))
    port = free_port()

    def config() -> ServerConfig:
        return ServerConfig(data_dir=tmp_path / "srv", token=token, port=port, seed=3,
                            latency_ms=15)

    srv = LocalGeti(config())
    await srv.start()
    cfg = make_cfg(srv, token, tmp_path, (data,), concurrency=4, max_attempts=3)
    rec = RecordingReporter()
    run = asyncio.create_task(Run(cfg, rec, sleep=no_sleep,
                                  policy=RetryPolicy(max_attempts=3)).execute())
    for _ in range(200):
        if srv.store.count() >= 10:
            break
        await asyncio.sleep(0.02)
    await srv.stop()                             # refused from now on
    await asyncio.sleep(2.5)
    srv2 = LocalGeti(config())
    await srv2.start()
    try:
        result = await asyncio.wait_for(run, 60)
        failed = [e.reason for e in rec.events if isinstance(e, FileFailed)]
        assert (result.failed, result.uploaded, result.exit_code) == (0, 80, 0), failed[:3]
        assert srv2.store.duplicate_groups() == [] and srv2.store.count() == 80
        texts = [e.text for e in rec.events if isinstance(e, Notice)]
        assert any("the server cannot be reached" in t for t in texts), texts
        assert any("answers again" in t for t in texts), texts
    finally:
        await srv2.stop()


async def test_an_outage_longer_than_max_outage_stops_the_run_with_exit_3(tmp_path, token):
    data = tmp_path / "data"
    make_labelled_tree(data, ["cat"], 30, size=(48, 40))
    port = free_port()
    srv = LocalGeti(ServerConfig(data_dir=tmp_path / "srv", token=token, port=port,
                                 latency_ms=20))
    await srv.start()
    cfg = make_cfg(srv, token, tmp_path, (data,), concurrency=2, max_outage=2.0)
    rec = RecordingReporter()
    run = asyncio.create_task(Run(cfg, rec, sleep=no_sleep).execute())
    for _ in range(200):
        if srv.store.count() >= 3:
            break
        await asyncio.sleep(0.02)
    await srv.stop()
    result = await asyncio.wait_for(run, 40)
    assert result.exit_code == 3 and "has not answered for 2 s" in (result.fatal or "")
    assert result.failed == 0, "an outage is not the files' fault: they stay for the rerun"
