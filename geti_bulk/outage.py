"""An outage holds the run; it does not fail files.

When the server cannot be reached, or answers nothing but gateway errors (502/503/504),
the fault is not the files': every worker parks before its next try, one probe asks
the server with capped, jittered backoff, and when it answers the workers go on with
the tries they had. Only an outage longer than `max_outage` stops the run (exit 3; the
next run resumes). Per-file trouble keeps the per-file try limit.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable

import anyio

from geti_bulk.errors import AmbiguousError, FatalError, TransientError
from geti_bulk.events import Notice, Reporter

GATEWAY_STATUSES = frozenset({502, 503, 504})


def is_outage_sign(error: TransientError) -> bool:
    """Nothing reached the service: refused, dropped before the body was out, or a
    gateway answering for it. A file that keeps meeting these still ends its tries, after
    `OUTAGE_SIGNS_PER_FILE` of them."""
    if error.cause == "connect":
        return True
    if error.cause == "network" and not isinstance(error, AmbiguousError):
        return True     # the connection dropped before the body was out: nothing stored
    return error.status in GATEWAY_STATUSES and not isinstance(error, AmbiguousError)


class OutageGate:
    def __init__(self, probe: Callable[[], Awaitable[None]], reporter: Reporter, *,
                 max_outage: float = 600.0, threshold: int = 3, base_delay: float = 0.5,
                 max_delay: float = 30.0, release_spread: float = 1.0, rng: random.Random | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] | None = None) -> None:
        self.probe = probe
        self.reporter = reporter
        self.max_outage = max_outage
        self.threshold = threshold
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.release_spread = release_spread
        self.rng = rng or random.Random()
        self.clock = clock
        self.sleep = sleep or anyio.sleep
        self.signs = 0                 # outage signs in a row, run-wide
        self.since: float | None = None
        self.outages = 0
        self.waited = 0.0
        self._over: anyio.Event | None = None
        self._fatal: FatalError | None = None
        self._probing = False

    @property
    def active(self) -> bool:
        return self._over is not None

    def succeeded(self) -> None:
        """A real answer (not the probe's): the outage, if any, is over for good."""
        self.signs = 0
        if self.since is not None:
            self.reporter.emit(Notice(f"server answers again after "
                                      f"{self.clock() - self.since:.1f} s; uploads go on"))
        self.since = None

    def failed(self, error: TransientError) -> bool:
        """Count a failure; True when it is an outage sign (the file keeps that try)."""
        if not is_outage_sign(error):
            self.signs = 0
            return False
        self.signs += 1
        if self.signs >= self.threshold and self._over is None:
            self._begin(error)
        return True

    def _begin(self, error: TransientError) -> None:
        self._over = anyio.Event()
        if self.since is not None:
            return       # the probe answered, but uploads still meet only the gateway
        self.since = self.clock()
        self.outages += 1
        self.reporter.emit(Notice(
            f"{outage_text(error)}: uploads wait while the server is probed, and the run "
            f"stops after {_minutes(self.max_outage)} without an answer"))

    async def wait(self) -> None:
        """Park while an outage lasts; the first waiter probes. FatalError past the limit."""
        if self._fatal is not None:
            raise self._fatal
        over = self._over
        if over is None:
            return
        if not self._probing:
            self._probing = True
            await self._probe_until_back(over)
        else:
            await over.wait()
            if self._fatal is None:
                # waiters go back spread out, not as one herd that knocks the server over
                await self.sleep(self.rng.uniform(0, self.release_spread))
        if self._fatal is not None:
            raise self._fatal

    async def _probe_until_back(self, over: anyio.Event) -> None:
        try:
            await self._probe_loop()
        finally:                       # waiters always wake: to go on, or to stop
            self._probing = False
            self.signs = 0
            self._over = None
            over.set()

    async def _probe_loop(self) -> None:
        tries = 0
        while self.since is not None:     # None: a real answer ended the outage meanwhile
            tries += 1
            delay = self.rng.uniform(0, min(self.max_delay, self.base_delay * 2 ** (tries - 1)))
            await self.sleep(max(0.05, delay))
            try:
                await self.probe()
            except FatalError as e:    # a 401 while probing is still a 401
                self._fatal = e
                return
            except TransientError as e:
                if self._too_long(e):
                    return
                continue
            if self._too_long(None):
                return
            return

    def _too_long(self, error: TransientError | None) -> bool:
        if self.since is None or self.clock() - self.since < self.max_outage:
            return False
        last = f"last: {error}" if error else "it answers, but uploads get only gateway errors"
        self._fatal = FatalError(
            f"the server has not answered for {_minutes(self.max_outage)} ({last}); "
            "stopped. Rerun the same command to resume")
        return True


def outage_text(error: TransientError) -> str:
    """What the outage looks like, in words: refused, dropped, or a gateway's answer."""
    text = str(error)
    if error.cause == "connect":
        return f"the server cannot be reached ({text})"
    if error.status in GATEWAY_STATUSES:
        detail = text.removeprefix("server answered ").removeprefix(str(error.status)).strip(" :")
        return (f"the server's gateway answers {error.status} for every upload"
                + (f" ({detail})" if detail else ""))
    return f"the connection to the server keeps dropping ({text})"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"
