"""Retry policy, pure: which errors retry, how long to wait, when to give up.

Capped exponential backoff with full jitter (AWS architecture blog, s3transfer),
`Retry-After` honoured, a per-file attempt limit, and a run-wide retry budget so an
outage turns into a stopped run, not a retry storm. Randomness is injected.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from geti_bulk.errors import TransientError

# "500-locked?": a Geti 3 write answered 500, most often SQLite's lock timeout under
# parallel writes (GETI3_API.md §5)
OVERLOAD_CAUSES = frozenset({"429", "502", "503", "504", "timeout", "500-locked?"})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 8          # failed tries per file (sends and reconcile queries)
    base_delay: float = 0.25       # seconds
    max_delay: float = 30.0
    max_retry_after: float = 300.0
    budget_ratio: float = 0.5      # retries allowed per started file, run-wide ...
    budget_floor: int = 100        # ... plus this many
    outage_after: int = 200        # consecutive transient failures with no success: stop

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Full jitter: uniform(0, min(cap, base * 2**(attempt-1)))."""
        return rng.uniform(0.0, min(self.max_delay, self.base_delay * 2 ** max(0, attempt - 1)))

    def delay(self, error: TransientError, attempt: int, rng: random.Random) -> float:
        jittered = self.backoff(attempt, rng)
        if error.retry_after is not None:
            # the server's word wins, plus a little jitter so waiters do not return together
            return min(self.max_retry_after, error.retry_after) + rng.uniform(0, self.base_delay)
        return jittered


@dataclass(slots=True)
class RetryBudget:
    """Run-wide accounting: retries may not exceed floor + ratio × files started."""

    policy: RetryPolicy
    started: int = 0
    retries: int = 0
    consecutive_failures: int = 0
    by_cause: dict[str, int] = field(default_factory=dict)

    def file_started(self) -> None:
        self.started += 1

    def succeeded(self) -> None:
        self.consecutive_failures = 0

    def failed(self) -> None:
        self.consecutive_failures += 1

    @property
    def outage(self) -> bool:
        return self.consecutive_failures >= self.policy.outage_after

    def try_spend(self, cause: str) -> bool:
        allowed = self.policy.budget_floor + self.policy.budget_ratio * self.started
        if self.retries >= allowed:
            return False
        self.retries += 1
        self.by_cause[cause] = self.by_cause.get(cause, 0) + 1
        return True
