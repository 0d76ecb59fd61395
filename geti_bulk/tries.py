"""One file's tries, shared by its steps (media, annotation): what a failure costs.

A failure that never reached the service (`outage.is_outage_sign`) holds the run and
keeps the file's tries; any other transient failure counts, grows a full-jitter backoff
(`Retry-After` honoured) and spends the run-wide budget; 200 of them in a row stop the
run. 429/502/503/504 and timeouts also tell the limiter the server is loaded.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable

from geti_bulk.concurrency import AdaptiveLimiter
from geti_bulk.errors import FatalError, TransientError
from geti_bulk.events import FileRetrying, Reporter
from geti_bulk.outage import OutageGate
from geti_bulk.retry import OVERLOAD_CAUSES, RetryBudget, RetryPolicy

OUTAGE_SIGNS_PER_FILE = 64   # a gateway that refuses one file forever still ends its tries


class Tries:
    def __init__(self, key: str, *, policy: RetryPolicy, budget: RetryBudget,
                 limiter: AdaptiveLimiter, gate: OutageGate | None, reporter: Reporter,
                 rng: random.Random, sleep: Callable[[float], Awaitable[None]]) -> None:
        self.key = key
        self.policy = policy
        self.budget = budget
        self.limiter = limiter
        self.gate = gate
        self.reporter = reporter
        self.rng = rng
        self.sleep = sleep
        self.failures = 0      # counted: sends and reconcile queries that failed
        self.signs = 0         # not counted: failures that never reached the service

    async def before(self) -> None:
        """Wait out an outage before the next request."""
        if self.gate is not None and self.gate.active:
            await self.gate.wait()

    def succeeded(self) -> None:
        self.budget.succeeded()
        if self.gate is not None:
            self.gate.succeeded()

    async def failed(self, error: TransientError) -> str | None:
        """Wait before the next try and return None, or return why to give up."""
        if error.cause in OVERLOAD_CAUSES:
            self.limiter.on_overload()
        if self.gate is not None and self.gate.failed(error):
            self.signs += 1
            if self.signs < OUTAGE_SIGNS_PER_FILE:
                await self._hold(error)
                return None
        self.failures += 1
        self.budget.failed()
        if self.budget.outage:
            raise FatalError(f"the server keeps failing ({self.budget.consecutive_failures} "
                             f"failures in a row, last: {error}); stopped. Rerun the same "
                             "command to resume")
        if self.failures >= self.policy.max_attempts:
            return f"gave up after {self.failures} failed tries"
        if not self.budget.try_spend(error.cause):
            return "retry budget used up"
        delay = self.policy.delay(error, self.failures, self.rng)
        self.reporter.emit(FileRetrying(self.key, self.failures, error.cause, delay, str(error)))
        await self.sleep(delay)
        return None

    async def _hold(self, error: TransientError) -> None:
        """Back off (or wait out the outage) without spending one of the file's tries."""
        assert self.gate is not None
        self.budget.by_cause[error.cause] = self.budget.by_cause.get(error.cause, 0) + 1
        if self.gate.active:
            self.reporter.emit(FileRetrying(self.key, self.signs, error.cause, 0.0,
                                            f"waiting for the server: {error}"))
            await self.gate.wait()
            return
        delay = self.policy.delay(error, self.signs, self.rng)
        self.reporter.emit(FileRetrying(self.key, self.signs, error.cause, delay, str(error)))
        await self.sleep(delay)
