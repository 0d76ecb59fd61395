"""Retryable faults end uploaded exactly once; fatal ones stop the run fast."""

from __future__ import annotations

import asyncio
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
    # 504 after the whole body: the file's own trouble (an outage sign, such as a 503
    # that never reached the service, holds the run instead: tests/test_outage.py)
    server.set_faults(script=["504"] * 10)
    sleeps = SleepRecorder()
    policy = RetryPolicy(max_attempts=4, base_delay=1.0, max_delay=3.0)
    result, rec = await upload(make_cfg(server, token, tmp_path, (data,)), sleep=sleeps,
                               policy=policy)
    assert (result.uploaded, result.failed, result.exit_code) == (0, 1, 1)
    [failed] = [e for e in rec.events if isinstance(e, FileFailed)]
    assert "gave up after 4 failed tries (4 sent)" in failed.reason and "504" in failed.reason
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
    # a gateway that refuses every upload (503 overflow, never reached the service) while
    # the rest of the server answers: the run holds, probes, and stops at --max-outage
    server.set_faults(spec="503=1.0")
    policy = RetryPolicy(max_attempts=100, outage_after=20, budget_floor=1000)
    t0 = time.monotonic()
    result, _ = await upload(make_cfg(server, token, tmp_path, (data,), max_outage=3.0),
                             policy=policy)
    assert result.exit_code == 3 and "has not answered for 3 s" in result.fatal, result.fatal
    assert "only gateway errors" in result.fatal
    assert result.failed == 0 and time.monotonic() - t0 < 20
    assert sum(result.retries.values()) < 200, "held, not a retry storm"
    # a gateway timeout after the whole body (the service may be at fault, not an
    # outage) still stops on the consecutive-failure rule, without a storm
    server.set_faults(spec="504=1.0")
    data2 = tmp_path / "data2"
    make_labelled_tree(data2, ["dog"], 30)
    result, _ = await upload(make_cfg(server, token, tmp_path, (data2,),
                                      journal=tmp_path / "j2.sqlite"), policy=policy)
    assert result.exit_code == 3 and "keeps failing" in result.fatal
    assert sum(result.retries.values()) < 40


async def test_oom_overload_adaptive_concurrency_cuts_and_every_file_lands(tmp_path, token):
    """A server that holds 2 uploads and is OOM-killed by a third (down 300 ms): the
    limit is cut on the 503s, and every file is still stored exactly once."""
    from geti_bulk.events import ConcurrencyChanged
    from geti_bulk.server import LocalGeti, ServerConfig

    data = tmp_path / "data"
    make_labelled_tree(data, ["cat", "dog"], 60)
    srv = LocalGeti(ServerConfig(data_dir=tmp_path / "srv", token=token, max_inflight=2,
                                 restart_ms=300, latency_ms=20))
    async with srv:
        result, rec = await upload(make_cfg(srv, token, tmp_path, (data,), concurrency=8),
                                   sleep=asyncio.sleep)
        assert (result.uploaded, result.failed) == (60, 0)
        assert srv.store.count() == 60 and srv.store.duplicate_groups() == []
        assert srv.state.service.restarts >= 1
    levels = [e.limit for e in rec.events if isinstance(e, ConcurrencyChanged)]
    # the limit was cut (multiplicative decrease) on the server's 503s
    assert any(b < a for a, b in zip([2, *levels], levels, strict=False))


async def test_delay_signal_keeps_adaptive_concurrency_below_an_oom(tmp_path, token):
    """2 workers of 20 ms, 20 ms away: 4 in flight fill the server; it holds 8 and dies on
    a 9th. Fixed concurrency 16 kills it; adaptive with the same ceiling sees the answers
    slow down as uploads queue and stays below, without a single 503."""
    from geti_bulk.server import LocalGeti, ServerConfig

    data = tmp_path / "data"
    make_labelled_tree(data, ["cat", "dog"], 100)
    outcomes = {}
    for adaptive in (False, True):
        srv = LocalGeti(ServerConfig(data_dir=tmp_path / f"srv{adaptive}", token=token,
                                     max_inflight=8, workers=2, service_ms=20,
                                     restart_ms=300, latency_ms=20))
        async with srv:
            cfg = make_cfg(srv, token, tmp_path, (data,), concurrency=16, adaptive=adaptive,
                           journal=tmp_path / f"j{adaptive}.sqlite")
            result, _ = await upload(cfg, sleep=asyncio.sleep)
            assert (result.uploaded, result.failed) == (100, 0)
            assert srv.store.count() == 100 and srv.store.duplicate_groups() == []
            outcomes[adaptive] = (srv.state.service.restarts, srv.state.service.answered_503)
    assert outcomes[False][0] >= 1          # the fixed 16 did knock it over
    assert outcomes[True] == (0, 0)         # adaptive never did


async def test_large_images_go_one_at_a_time_by_their_decoded_size(tmp_path, token):
    """A 4000x4000 PNG is a few KB on disk but 48 MB decoded in Geti's memory: with a
    64 MiB budget only one is in flight at a time; with the default budget several are."""
    import io

    from PIL import Image

    from geti_bulk.server import LocalGeti, ServerConfig

    data = tmp_path / "big"
    data.mkdir()
    buf = io.BytesIO()
    Image.new("L", (4000, 4000)).save(buf, "PNG")
    for i in range(8):
        (data / f"big{i}.png").write_bytes(buf.getvalue())
    peaks = {}
    for budget_mb in (64, 1024):
        srv = LocalGeti(ServerConfig(data_dir=tmp_path / f"srv{budget_mb}", token=token,
                                     latency_ms=30, decode_images=False))
        async with srv:
            cfg = make_cfg(srv, token, tmp_path, (data,), project="Vehicle detection",
                           labels="none", max_inflight_bytes=budget_mb << 20,
                           adaptive=False, journal=tmp_path / f"j{budget_mb}.sqlite")
            result, _ = await upload(cfg)
            assert (result.uploaded, result.failed) == (8, 0)
            peaks[budget_mb] = srv.state.service.peak_inflight
    assert peaks[64] == 1
    assert peaks[1024] > 1
