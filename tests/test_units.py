"""Unit tests through our own seams: retry policy, limiter, labels, body framing, config."""

from __future__ import annotations

import random

import anyio
import pytest

from geti_bulk.concurrency import AdaptiveLimiter
from geti_bulk.config import build, read_token_file
from geti_bulk.errors import ConfigError, FileError, LabelSetupError, TransientError
from geti_bulk.geti.body import MultipartFileBody
from geti_bulk.geti.client import Secret
from geti_bulk.geti.mapping import map_status, parse_retry_after
from geti_bulk.geti.models import Label, Project, Task
from geti_bulk.labels import plan_labels
from geti_bulk.retry import RetryBudget, RetryPolicy


def test_full_jitter_stays_within_the_capped_exponential():
    p = RetryPolicy(base_delay=0.5, max_delay=8.0)
    rng = random.Random(1)
    for attempt in range(1, 12):
        cap = min(8.0, 0.5 * 2 ** (attempt - 1))
        samples = [p.backoff(attempt, rng) for _ in range(200)]
        assert all(0 <= s <= cap for s in samples)
        assert max(samples) > cap * 0.8          # really spread over the range
    err = TransientError("x", status=429, retry_after=7)
    assert 7 <= p.delay(err, 1, rng) <= 7.5
    assert p.delay(TransientError("x", retry_after=10_000), 1, rng) <= p.max_retry_after + 0.5


def test_retry_budget_limits_a_storm():
    b = RetryBudget(RetryPolicy(budget_floor=3, budget_ratio=0.5))
    for _ in range(4):
        b.file_started()
    spent = [b.try_spend("503") for _ in range(10)]
    assert spent.count(True) == 5 and b.by_cause == {"503": 5}


def test_retry_after_seconds_and_http_date():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("soon") is None


def test_status_mapping():
    from multidict import CIMultiDict
    h = CIMultiDict({"Retry-After": "2"})
    assert type(map_status(401, b"Invalid authorization token", h, what="x")).__name__ == "AuthError"
    assert type(map_status(507, b'{"error_code":"not_enough_space","message":"m"}', h,
                           what="x")).__name__ == "ServerFullError"
    e = map_status(503, b"overflow", h, what="x", body_complete=False)
    assert isinstance(e, TransientError) and e.retry_after == 2.0 and e.cause == "503"
    assert type(map_status(500, b"Internal Server Error", h, what="x")).__name__ == "AmbiguousError"
    assert type(map_status(415, b'{"error_code":"invalid_media","message":"m"}', h,
                           what="x")).__name__ == "InvalidMediaError"
    nf = map_status(404, b'{"error_code":"project_not_found","message":"gone"}', h, what="project")
    assert type(nf).__name__ == "TargetNotFoundError" and "gone" in str(nf)


async def test_limiter_aimd_and_byte_budget():
    changes: list[int] = []
    now = [0.0]
    lim = AdaptiveLimiter(8, initial=8, max_bytes=100, on_change=changes.append,
                          clock=lambda: now[0])
    lim.on_success(0.1)                     # rtt 0.1 s: a congestion event lasts 0.2 s
    lim.on_overload()
    assert lim.limit == 8                   # one stray 503 is not congestion
    lim.on_overload()
    lim.on_overload()                       # same congestion event: one cut
    assert lim.limit == 4 and changes == [4]   # the first cut ends slow start: halve
    now[0] = 0.3
    lim.on_overload()
    lim.on_overload()
    assert lim.limit == 3                   # later cuts keep 85 %
    lim.on_success(0.1)
    assert lim.limit == 3                   # holds the level for ~10 round trips
    now[0] = 1.4
    for _ in range(4):
        lim.on_success(0.1)
    # the second cut came with no answer between: the same outage, whose cliff is 8
    assert lim.limit == 4
    now[0] = 2.0
    lim.on_overload()
    lim.on_overload()                       # after answers at 4, a loss at 4: a new event
    assert lim.limit == 3
    now[0] = 3.5
    for _ in range(8):
        lim.on_success(0.1)
    assert lim.limit == 3                   # 4 drew a loss: out of reach for CLIFF_MEMORY
    now[0] = 63.5
    for _ in range(4):
        lim.on_success(0.1)
    assert lim.limit == 4                   # then probes upwards, +1 per window
    for _ in range(19):
        lim.on_success(0.1)
    now[0] = 65.0
    lim.on_overload()
    lim.on_overload()                       # 2 of the last 20: below a quarter, no cut
    assert lim.limit >= 4
    big = AdaptiveLimiter(4, initial=4, max_bytes=100)
    await big.acquire(80)                   # one large file always goes
    with anyio.move_on_after(0.05) as scope:
        await big.acquire(80)               # a second would exceed the byte budget
    assert scope.cancelled_caught and big.in_flight == 1
    await big.acquire(10)                   # small ones still fit
    assert big.in_flight == 2


def _project(task_type: str, labels: list[Label]) -> Project:
    return Project("p" * 24, "P", (Task("d", "Dataset", "dataset", ()),
                                   Task("t", "T", task_type, tuple(labels))), ())


def test_label_rules():
    single = _project("classification", [Label("1", "cat", "g"), Label("2", "dog", "g")])
    plan = plan_labels(single, {"cat", "DOG"})
    assert plan.ids_for(("cat",)) == ("1",) and plan.ids_for(("DOG",)) == ("2",)
    with pytest.raises(FileError, match="mutually exclusive"):
        plan.ids_for(("cat", "DOG"))
    with pytest.raises(LabelSetupError, match="zebra") as e:
        plan_labels(single, {"cat", "zebra", "emu"})
    assert "emu" in str(e.value) and "cat, dog" in str(e.value)
    multi = _project("classification", [Label("1", "a", "ga"), Label("2", "b", "gb"),
                                        Label("3", "No class", "empty", is_empty=True)])
    mp = plan_labels(multi, {"a", "b", "No class"})
    assert mp.ids_for(("a", "b")) == ("1", "2")
    with pytest.raises(FileError, match="empty label"):
        mp.ids_for(("a", "No class"))
    anomaly = _project("anomaly", [Label("n", "Normal", "x"), Label("a", "Anomalous", "x", is_anomalous=True)])
    assert plan_labels(anomaly, {"Normal"}).ids_for(("Normal",)) == ("n",)
    with pytest.raises(LabelSetupError, match="labels none"):
        plan_labels(_project("detection", [Label("1", "car", "g")]), {"car"})
    assert plan_labels(_project("detection", []), set()).ids_for(()) == ()


async def test_body_has_exact_content_length(tmp_path):
    p = tmp_path / 'we"ird\nname.jpg'
    p.write_bytes(b"x" * 3_000_001)
    st = p.stat()
    body = MultipartFileBody(str(p), p.name, st.st_size, st.st_mtime_ns, ("a" * 24,), chunk=1 << 16)
    chunks: list[bytes] = []

    async def write(c: bytes) -> None:
        chunks.append(c)

    await body.write_to(write)
    data = b"".join(chunks)
    assert len(data) == body.content_length
    assert b'filename="we%22ird%0Aname.jpg"' in data
    assert b'{"label_ids": ["' + b"a" * 24 + b'"]}' in data
    assert data.endswith(f"--{body.boundary}--\r\n".encode()) and body.complete


def test_secret_and_config_never_show_the_token(tmp_path):
    tok = "geti_pat_" + "a" * 43 + "_" + "b" * 6
    s = Secret(tok)
    assert tok not in repr(s) and tok not in str(s) and s.get() == tok
    (tmp_path / "d").mkdir()
    cfg = build({"target.host": "geti.example", "target.project": "P", "target.token": tok},
                env={}, sources=(tmp_path / "d",))
    assert tok not in repr(cfg) and cfg.host == "https://geti.example"
    f = tmp_path / "t"
    f.write_text(f"export GETI_TOKEN='{tok}'\n")
    assert read_token_file(f) == tok
    f.write_text("A=1\nB=2\n")
    with pytest.raises(ConfigError, match="neither a bare token"):
        read_token_file(f)


def test_config_example_documents_only_real_keys():
    from pathlib import Path

    from geti_bulk.config import KEYS, read_toml

    example = Path(__file__).resolve().parents[1] / "config.example.toml"
    values = read_toml(example)          # raises on any unknown key
    assert set(values) == set(KEYS)      # and documents every key


def test_limiter_slow_start_until_first_congestion():
    now = [0.0]
    lim = AdaptiveLimiter(16, initial=2, clock=lambda: now[0])
    for _ in range(2):
        lim.on_success(0.01)
    assert lim.limit == 4                  # doubled in one window
    for _ in range(4):
        lim.on_success(0.01)
    assert lim.limit == 8
    lim.on_overload()
    lim.on_overload()
    lim.on_overload()
    assert lim.limit == 4
    now[0] = 10.0
    for _ in range(5):
        lim.on_success(0.01)
    assert lim.limit == 5                  # additive after congestion: about +1 per window
    fixed = AdaptiveLimiter(6, adaptive=False)
    fixed.on_overload()
    fixed.on_success()
    assert fixed.limit == 6


def test_proxy_comes_from_the_environment_once(monkeypatch):
    from geti_bulk.geti.client import env_proxy

    for var in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    assert env_proxy("https://geti.example.com") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp:3128")
    assert env_proxy("https://geti.example.com") == "http://proxy.corp:3128"
    assert env_proxy("http://geti.example.com") is None            # only https is proxied
    monkeypatch.setenv("NO_PROXY", "geti.example.com")
    assert env_proxy("https://geti.example.com") is None


def test_fast_header_parser_agrees_with_pillow():
    import io
    import random

    from PIL import Image

    from geti_bulk.media import check_image_head, fast_image_size

    rng = random.Random(5)
    for _ in range(60):
        w, h = rng.randint(1, 700), rng.randint(1, 700)
        buf = io.BytesIO()
        if rng.random() < 0.5:
            Image.new("RGB", (w, h)).save(buf, "JPEG", progressive=rng.random() < 0.5,
                                          exif=b"Exif\x00\x00" + bytes(rng.randint(0, 3000)))
        else:
            Image.new("RGB", (w, h)).save(buf, "PNG")
        data = buf.getvalue()
        assert fast_image_size(data) == Image.open(io.BytesIO(data)).size
    assert fast_image_size(b"\xff\xd8garbage") is None          # Pillow decides then
    assert "not a readable image" in check_image_head(b"\xff\xd8garbage", "x.jpg")
    assert "16x16" in check_image_head(_png(16, 16), "x.png")


def _png(w: int, h: int) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (w, h)).save(buf, "PNG")
    return buf.getvalue()


class _QueueingServer:
    """Answers after `base` seconds while `knee` or fewer uploads are in flight (`knee`
    workers); each one beyond waits its turn in the server's memory: `per_queued` more,
    by default one service time shared by the workers."""

    def __init__(self, lim: AdaptiveLimiter, now: list[float], base: float = 0.04,
                 knee: int = 4, per_queued: float | None = None) -> None:
        self.lim, self.now, self.base, self.knee = lim, now, base, knee
        self._per = per_queued

    @property
    def per(self) -> float:
        return self._per if self._per is not None else self.base / self.knee

    @per.setter
    def per(self, value: float) -> None:
        self._per = value

    async def answers(self, count: int) -> list[int]:
        """Keep the limiter full and answer `count` uploads; the limits seen."""
        lim, seen = self.lim, []
        for _ in range(count):
            while lim.in_flight < lim.limit:
                await lim.acquire(0)
            load = lim.in_flight
            await lim.release(0)
            wait = self.base + max(0, load - self.knee) * self.per
            self.now[0] += wait / load
            lim.on_success(wait, wait)
            seen.append(lim.limit)
        return seen


async def test_limiter_grows_while_answers_keep_pace_and_stops_at_the_knee():
    now = [0.0]
    lim = AdaptiveLimiter(16, clock=lambda: now[0])
    seen = await _QueueingServer(lim, now, knee=6).answers(400)
    assert max(seen) <= 10         # x1.5 per round: one round at 1.5x the knee at most ...
    assert 6 <= min(seen[-200:]) and max(seen[-200:]) <= 8   # ... then the server is kept
    assert lim.queued < 2.0                                    # full with ~1 queued


async def test_limiter_steps_down_when_answers_slow_down_but_not_below_the_floor():
    now = [0.0]
    lim = AdaptiveLimiter(16, initial=12, clock=lambda: now[0])
    server = _QueueingServer(lim, now, knee=12)
    await server.answers(100)             # learns the base at 12 in flight
    assert lim.limit >= 12
    server.knee = 3                       # the server slows down (fewer replicas, say)
    seen = await server.answers(400)
    assert seen[-1] <= 5                  # it came down to the new knee, a step at a time
    # (up by the additive +10 % at most: the round it was answering when it slowed)
    assert not any(b > max(a + 1, a * 1.2) for a, b in zip(seen, seen[1:], strict=False))
    assert not any(b > a + 1 for a, b in zip(seen[50:], seen[51:], strict=False))
    server.knee, server.per = 1, 0.2      # one at a time, and queueing hurts
    seen = await server.answers(400)
    assert min(seen) == 2 and max(seen[-50:]) <= 4   # delay alone never goes below 2


async def test_limiter_does_not_grow_a_limit_the_uploads_do_not_reach():
    now = [0.0]
    lim = AdaptiveLimiter(16, initial=4, clock=lambda: now[0])
    for _ in range(200):                  # one upload at a time, however fast the answers
        await lim.acquire(0)
        await lim.release(0)
        now[0] += 0.01
        lim.on_success(0.01, 0.01)
    assert lim.limit == 4


async def test_limiter_remeasures_its_base_every_ten_seconds():
    now = [0.0]
    lim = AdaptiveLimiter(8, clock=lambda: now[0])
    server = _QueueingServer(lim, now, knee=16)
    seen = await server.answers(3000)     # 3000 x 40 ms / 8 in flight: 15 s
    assert now[0] > 10.0
    assert 4 in seen[seen.index(8):]      # halved for the probe ...
    assert seen[-1] == 8                  # ... and back


@pytest.mark.parametrize(("text", "maybe_stored"), [
    ("no healthy upstream", False),
    ("upstream connect error or disconnect/reset before headers. reset reason: overflow", False),
    ("upstream connect error or disconnect/reset before headers. "
     "reset reason: connection failure", False),
    ("upstream connect error or disconnect/reset before headers. "
     "reset reason: connection termination", True),     # the service died under it
    ("Service Unavailable", True),
])
def test_a_503_that_never_reached_the_service_needs_no_reconcile(text, maybe_stored):
    error = map_status(503, text.encode(), {}, what="dataset")
    assert isinstance(error, TransientError)
    assert (type(error).__name__ == "AmbiguousError") is maybe_stored


def test_an_image_weighs_its_decoded_size_in_the_memory_budget():
    from geti_bulk import media

    kind = media.media_kind("x.png")
    assert kind is not None
    reason, dims = media.inspect_head(_png(7680, 40), "x.png", kind)
    assert (reason, dims) == (None, (7680, 40))
    assert media.server_memory(1000, dims) == 7680 * 40 * 3
    assert media.server_memory(10**7, dims) == 10**7          # a file larger than decoded
    assert media.server_memory(500, None) == 500               # a video: its size
    assert media.inspect_head(_png(16, 16), "x.png", kind)[0] is not None   # too small


async def test_limiter_serves_waiters_in_order_and_a_cancelled_waiter_leaks_nothing():
    lim = AdaptiveLimiter(2, initial=2, max_bytes=100, adaptive=False)
    order: list[str] = []

    async def worker(name: str, size: int) -> None:
        await lim.acquire(size)
        order.append(name)

    await lim.acquire(60)                       # 60 of 100 bytes, 1 of 2 slots
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker, "big", 50)        # does not fit the bytes: waits
        await anyio.sleep(0.01)
        tg.start_soon(worker, "small", 10)      # would fit, but queues behind "big"
        await anyio.sleep(0.01)
        assert order == []
        with anyio.CancelScope() as scope:      # a third waiter gives up
            scope.deadline = anyio.current_time() + 0.01
            await lim.acquire(1)
        assert scope.cancelled_caught
        await lim.release(60)                   # "big" goes, then "small" fits too
    assert order == ["big", "small"]
    assert (lim.in_flight, lim.bytes_in_flight) == (2, 60)
