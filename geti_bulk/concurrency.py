"""Adaptive concurrency: AIMD on the number of uploads in flight, plus a budget of
bytes in flight so that large files are not sent ten at a time (GETI_API.md §5: the
real upload service decodes whole images in a 3 GiB pod; its own web UI throttles).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio


class AdaptiveLimiter:
    def __init__(self, ceiling: int, *, initial: int | None = None, adaptive: bool = True,
                 max_bytes: int = 256 << 20, floor: int = 1,
                 on_change: Callable[[int], None] | None = None,
                 clock: Callable[[], float] = time.monotonic, cooldown: float = 1.0) -> None:
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
        self._cooldown = cooldown
        self._last_cut = -1e9
        self._slow_start = adaptive   # like TCP: grow fast until the first congestion signal

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

    def on_success(self) -> None:
        if self.adaptive:
            # slow start doubles the limit per window of successes; after the first
            # congestion signal, additive increase: +1 per window
            self._set(self._limit + (1.0 if self._slow_start else 1.0 / self._limit))

    def on_overload(self) -> None:
        """Multiplicative decrease, at most once per cooldown (one congestion event)."""
        if not self.adaptive:
            return
        self._slow_start = False
        now = self._clock()
        if now - self._last_cut >= self._cooldown:
            self._last_cut = now
            self._set(self._limit / 2)
