"""Adaptive concurrency: AIMD on the number of uploads in flight, plus a budget of
bytes in flight so that large files are not sent ten at a time (GETI_API.md §5: the
real upload service decodes whole images in a 3 GiB pod; its own web UI throttles).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

import anyio


class AdaptiveLimiter:
    def __init__(self, ceiling: int, *, initial: int | None = None, adaptive: bool = True,
                 max_bytes: int = 256 << 20, floor: int = 1,
                 on_change: Callable[[int], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ceiling = max(1, ceiling)
        self.floor = max(1, min(floor, self.ceiling))
        self.adaptive = adaptive
        start = initial if initial is not None else (min(4, self.ceiling) if adaptive else self.ceiling)
        self._limit = float(max(self.floor, min(self.ceiling, start)))
        self.max_bytes = max_bytes
        self.in_flight = 0
        self.bytes_in_flight = 0
        self.peak = 0
        self._cond = anyio.Condition()
        self._on_change = on_change
        self._clock = clock
        self._last_cut = -1e9
        self._slow_start = adaptive   # like TCP: grow fast until the first congestion signal
        self._rtt: float | None = None   # smoothed seconds per upload
        self._recent: deque[bool] = deque(maxlen=20)   # last answers: True = overload signal

    @property
    def limit(self) -> int:
        return int(self._limit)

    def _fits(self, size: int) -> bool:
        if self.in_flight >= self.limit:
            return False
        # one file always goes, however large; otherwise keep within the byte budget
        return self.in_flight == 0 or self.bytes_in_flight + size <= self.max_bytes

    async def acquire(self, size: int) -> None:
        async with self._cond:
            while not self._fits(size):
                await self._cond.wait()
            self.in_flight += 1
            self.bytes_in_flight += size
            self.peak = max(self.peak, self.in_flight)

    async def release(self, size: int) -> None:
        async with self._cond:
            self.in_flight -= 1
            self.bytes_in_flight -= size
            self._cond.notify_all()

    def _set(self, value: float) -> None:
        old = self.limit
        self._limit = max(float(self.floor), min(float(self.ceiling), value))
        if self.limit != old and self._on_change is not None:
            self._on_change(self.limit)

    def _window(self) -> float:
        """One congestion event lasts about two round trips: cut once per event."""
        return max(0.05, 2.0 * (self._rtt if self._rtt is not None else 0.5))

    def _probe_delay(self) -> float:
        """After a cut, hold the level for ~10 round trips before probing upwards, so a
        steady server sees one probe (and at most one 503) per period, not one per window."""
        return max(0.2, 10.0 * (self._rtt if self._rtt is not None else 0.05))

    def on_success(self, rtt: float | None = None) -> None:
        if rtt is not None:
            self._rtt = rtt if self._rtt is None else 0.9 * self._rtt + 0.1 * rtt
        self._recent.append(False)
        if not self.adaptive:
            return
        if self._slow_start:
            self._set(self._limit + 1.0)        # doubles per window of successes
        elif self._clock() - self._last_cut >= self._probe_delay():
            self._set(self._limit + 1.0 / self._limit)   # additive: +1 per window

    def on_overload(self) -> None:
        """Multiplicative decrease, once per congestion event, when the recent answers show
        congestion (at least 2, and a quarter, of the last 20): a stray 503 from a gateway
        blip must not collapse the rate, a saturated server answers many. Halve on the
        first event (slow start overshoots), then keep 85 %."""
        self._recent.append(True)
        if not self.adaptive:
            return
        bad = sum(self._recent)
        if bad < 2 or bad < 0.25 * len(self._recent):
            return
        now = self._clock()
        if now - self._last_cut < self._window():
            return
        beta = 0.5 if self._slow_start else 0.85
        self._slow_start = False
        self._last_cut = now
        self._recent.clear()           # the next cut needs fresh evidence
        self._set(self._limit * beta)
