"""The upload service's capacity, for rehearsing overload (GETI_API.md §5).

The real resource service processes uploads in a thread pool on a few CPUs and holds
each one in memory (whole-image decode) inside a 3 GiB pod. Pushed past what it can
hold, it is OOM-killed: every upload in flight fails with an Envoy 503, and until the
pod is back the gateway answers ``no healthy upstream``. This module plays that:

* ``workers`` uploads are processed at once, each for ``service_ms``; the others wait,
  still held in memory, so latency rises before anything fails;
* ``max_inflight`` uploads can be held at once. One more, and in ``oom`` mode the
  service dies: uploads in flight are answered 503 (nothing of theirs is stored unless
  it already was), and the upload routes and ``media:query`` answer 503 for
  ``restart_ms``. In ``refuse`` mode the extra upload alone gets a 503, like an Envoy
  circuit breaker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from aiohttp import web

from .replies import plain

if TYPE_CHECKING:
    from .faults import FaultInjector

OVERLOAD_MODES = ("oom", "refuse")
OVERFLOW = "upstream connect error or disconnect/reset before headers. reset reason: overflow"
TERMINATED = ("upstream connect error or disconnect/reset before headers. "
              "reset reason: connection termination")
NO_UPSTREAM = "no healthy upstream"
_ENVOY = {"server": "envoy"}


class UploadService:
    def __init__(self, *, max_inflight: int = 0, mode: str = "oom", restart_ms: int = 2000,
                 workers: int = 0, service_ms: int = 0,
                 faults: FaultInjector | None = None) -> None:
        if mode not in OVERLOAD_MODES:
            raise ValueError(f"overload mode must be one of {', '.join(OVERLOAD_MODES)}")
        for name, value in (("max-inflight", max_inflight), ("restart-ms", restart_ms),
                            ("workers", workers), ("service-ms", service_ms)):
            if value < 0:
                raise ValueError(f"--{name} must be 0 or more, not {value}")
        self.max_inflight = max_inflight
        self.mode = mode
        self.restart_s = restart_ms / 1000
        self.service_s = service_ms / 1000
        self._workers = asyncio.Semaphore(workers) if workers > 0 else None
        self._faults = faults
        self._held: set[asyncio.Task[object]] = set()
        self._killed: set[asyncio.Task[object]] = set()
        self._down_until = 0.0
        self.inflight = 0
        self.peak_inflight = 0
        self.restarts = 0
        self.answered_503 = 0

    def _record(self, kind: str) -> None:
        if self._faults is not None:
            self._faults.record(kind)

    @property
    def down(self) -> bool:
        return time.monotonic() < self._down_until

    def unavailable(self) -> web.Response | None:
        """While the pod restarts, the gateway has nowhere to send the request."""
        if not self.down:
            return None
        self.answered_503 += 1
        return plain(503, NO_UPSTREAM, _ENVOY)

    def admit(self) -> web.Response | None:
        """Called as an upload arrives; a response means it is not taken."""
        down = self.unavailable()
        if down is not None:
            return down
        if not self.max_inflight or self.inflight < self.max_inflight:
            return None
        self.answered_503 += 1
        if self.mode == "refuse":
            self._record("overload")
            return plain(503, OVERFLOW, _ENVOY)
        self._record("oom")
        self._kill()
        return plain(503, TERMINATED, _ENVOY)

    def crash(self) -> web.Response:
        """The ``crash`` fault: the service dies under the calling upload (and every
        other one in flight), as an OOM kill would; the answer to the caller."""
        self._kill(spare=asyncio.current_task())
        self.answered_503 += 1
        return plain(503, TERMINATED, _ENVOY)

    def _kill(self, spare: asyncio.Task[object] | None = None) -> None:
        self.restarts += 1
        self._killed = {t for t in self._killed if not t.done()}
        self._down_until = time.monotonic() + self.restart_s
        for task in self._held:
            if task is not spare and task not in self._killed:
                self._killed.add(task)
                task.cancel()

    @asynccontextmanager
    async def holding(self) -> AsyncIterator[None]:
        """The upload is held in memory for the duration of the block."""
        task = asyncio.current_task()
        assert task is not None
        self._held.add(task)
        self.inflight += 1
        self.peak_inflight = max(self.peak_inflight, self.inflight)
        try:
            yield
        finally:
            self.inflight -= 1
            self._held.discard(task)

    def killed(self, error: asyncio.CancelledError) -> web.Response:
        """The answer to an upload whose pod died under it; re-raise any other cancel."""
        task = asyncio.current_task()
        if task is None or task not in self._killed:
            raise error
        self._killed.discard(task)
        task.uncancel()
        self.answered_503 += 1
        return plain(503, TERMINATED, _ENVOY)

    @asynccontextmanager
    async def working(self) -> AsyncIterator[None]:
        """A worker processes the upload (``service_ms`` of it, then the real work)."""
        if self._workers is None:
            if self.service_s:
                await asyncio.sleep(self.service_s)
            yield
            return
        async with self._workers:
            if self.service_s:
                await asyncio.sleep(self.service_s)
            yield
