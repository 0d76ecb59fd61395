"""Retryable faults end uploaded exactly once; fatal ones stop the run fast."""

from __future__ import annotations

import time

import pytest

from geti_bulk.events import FileDone, FileFailed, FileRetrying, FileStarted
from geti_bulk.retry import RetryPolicy
from geti_bulk.sampledata import image_bytes, make_labelled_tree
from tests.conftest import SleepRecorder, make_cfg, sha256, stored_by_sha, upload


def one_image(tmp_path, name="a.jpg", size=(64, 64)):
    d = tmp_path / "data"
    d.mkdir(exist_ok=True)
    p = d / name
    p.write_bytes(image_bytes(*size, seed=len(name)))
    return d, p


@pytest.mark.parametrize("fault", ["502", "503", "504", "429", "reset", "stored500", "slow"])
async def test_each_retryable_fault_ends_uploaded_once(server, token, tmp_path, fault):
    data, p = one_image(tmp_path)
    server.set_faults(script=[fault, fault])
    sleeps = SleepRecorder()
    result, rec = await upload(make_cfg(server, token, tmp_path, (data,), concurrency=1),
                               sleep=sleeps)
    assert (result.uploaded, result.failed, result.exit_code) == (1, 0, 0)
    [stored] = stored_by_sha(server)[sha256(p)]
    assert server.store.count() == 1, "no duplicate even when the server stored then failed"
    done = [e for e in rec.events if isinstance(e, FileDone)]
    assert done[0].media_id == stored.id
    retries = [e for e in rec.events if isinstance(e, FileRetrying)]
    if fault == "slow":
        assert retries == []
    elif fault == "stored500":
        # the first 500 came after storing: reconciliation adopts it, nothing is re-sent
        assert done[0].adopted and len(retries) == 1
        assert len([e for e in rec.events if isinstance(e, FileStarted)]) == 1
    else:
        assert len(retries) == 2 and done[0].attempts == 3
        cause = "network" if fault == "reset" else fault
        assert {r.cause for r in retries} == {cause}
        assert result.retries == {cause: 2}


@pytest.mark.parametrize("fault", ["429ra", "503ra"])
async def test_retry_after_is_honoured(server, token, tmp_path, fault):
    data, _ = one_image(tmp_path)
    server.set_faults(script=[fault])
    sleeps = SleepRecorder()
    result, _ = await upload(make_cfg(server, token, tmp_path, (data,)), sleep=sleeps)
    assert result.uploaded == 1
    assert len(sleeps.delays) == 1 and 1.0 <= sleeps.delays[0] <= 1.5


async def test_backoff_grows_with_full_jitter_and_gives_up(server, token, tmp_path):
    data, _ = one_image(tmp_path)
    server.set_faults(script=["503"] * 10)
    sleeps = SleepRecorder()
    policy = RetryPolicy(max_attempts=4, base_delay=1.0, max_delay=3.0)
    result, rec = await upload(make_cfg(server, token, tmp_path, (data,)), sleep=sleeps,
                               policy=policy)
    assert (result.uploaded, result.failed, result.exit_code) == (0, 1, 1)
    [failed] = [e for e in rec.events if isinstance(e, FileFailed)]
    assert "gave up after 4 attempts" in failed.reason and "503" in failed.reason
    assert len(sleeps.delays) == 3
    for attempt, d in enumerate(sleeps.delays, 1):
        assert 0 <= d <= min(3.0, 2 ** (attempt - 1))
    assert server.store.count() == 0


async def test_invalid_media_on_server_is_not_retried(server, token, tmp_path):
    # a JPEG whose header is fine but whose data is cut: the server's decode rejects it
    data, p = one_image(tmp_path, size=(400, 300))
    raw = p.read_bytes()
    p.write_bytes(raw[: len(raw) // 3])
    result, rec = await upload(make_cfg(server, token, tmp_path, (data,)))
    [failed] = [e for e in rec.events if isinstance(e, FileFailed)]
    assert "415" in failed.reason and "not able to interpret" in failed.reason
    assert not [e for e in rec.events if isinstance(e, FileRetrying)]
    assert result.exit_code == 1


async def test_wrong_token_stops_at_once(server, tmp_path):
    from geti_bulk.server.seed import generate_pat

    data = tmp_path / "data"
    make_labelled_tree(data, ["cat"], 5)
    wrong = generate_pat()
    t0 = time.monotonic()
    result, rec = await upload(make_cfg(server, wrong, tmp_path, (data,)))
    assert result.exit_code == 3 and "401" in result.fatal
    assert wrong not in result.fatal and wrong not in repr(rec.events)
    assert time.monotonic() - t0 < 5
    assert server.store.count() == 0


async def test_disk_full_stops_the_run_without_retries(tmp_path, token):
    from geti_bulk.server import LocalGeti, ServerConfig

    data = tmp_path / "data"
    make_labelled_tree(data, ["cat", "dog"], 40)
    srv = LocalGeti(ServerConfig(data_dir=tmp_path / "srv", token=token, disk_full=True))
    async with srv:
        result, rec = await upload(make_cfg(srv, token, tmp_path, (data,)))
    assert result.exit_code == 3
    assert "507" in result.fatal and "not_enough_space" in result.fatal
    assert not [e for e in rec.events if isinstance(e, FileRetrying)]
    started = [e for e in rec.events if isinstance(e, FileStarted)]
    assert len(started) <= 8, "in-flight uploads only; nothing new starts after a 507"


async def test_outage_stops_the_run_instead_of_a_retry_storm(server, token, tmp_path):
    data = tmp_path / "data"
    make_labelled_tree(data, ["cat"], 30)
    server.set_faults(spec="503=1.0")
    policy = RetryPolicy(max_attempts=100, outage_after=20, budget_floor=1000)
    result, _ = await upload(make_cfg(server, token, tmp_path, (data,)), policy=policy)
    assert result.exit_code == 3 and "keeps failing" in result.fatal
    assert sum(result.retries.values()) < 40


async def test_overload_mode_adaptive_concurrency_backs_off(tmp_path, token):
    from geti_bulk.server import LocalGeti, ServerConfig

    data = tmp_path / "data"
    make_labelled_tree(data, ["cat", "dog"], 60)
    srv = LocalGeti(ServerConfig(data_dir=tmp_path / "srv", token=token, max_inflight=2,
                                 latency_ms=20))
    async with srv:
        result, rec = await upload(make_cfg(srv, token, tmp_path, (data,), concurrency=8))
        assert (result.uploaded, result.failed) == (60, 0)
        assert srv.store.count() == 60 and srv.store.duplicate_groups() == []
    from geti_bulk.events import ConcurrencyChanged
    levels = [e.limit for e in rec.events if isinstance(e, ConcurrencyChanged)]
    # the limit was cut (multiplicative decrease) on the server's 503s
    assert any(b < a for a, b in zip([4, *levels], levels, strict=False))
