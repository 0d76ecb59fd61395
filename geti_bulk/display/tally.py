"""Run state folded from events, shared by the rich and plain reporters.

`Tally.apply` is the only writer; it is cheap (a few dict and integer operations per
event) and keeps memory bounded by the files in flight plus a capped set of failure
reasons, never by the number of files in the run.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from geti_bulk.events import (
    BytesSent,
    ConcurrencyChanged,
    Event,
    FileDone,
    FileFailed,
    FileQueued,
    FileRetrying,
    FileSkipped,
    FileStarted,
    JournalSkipped,
    RunStarted,
    RunStopping,
    ScanDone,
)

MAX_REASONS = 50      # distinct failure reasons kept; the rest are lumped together
EXAMPLES = 3          # example paths kept per reason
OTHER_REASONS = "(other reasons)"


@dataclass(slots=True)
class FailureGroup:
    count: int = 0
    examples: list[str] = field(default_factory=list)


class FailureGroups:
    """reason -> count and up to `EXAMPLES` paths, capped at `MAX_REASONS` reasons."""

    def __init__(self) -> None:
        self.groups: dict[str, FailureGroup] = {}

    def add(self, reason: str, path: str) -> None:
        if reason not in self.groups and len(self.groups) >= MAX_REASONS:
            reason = OTHER_REASONS
        group = self.groups.setdefault(reason, FailureGroup())
        group.count += 1
        if len(group.examples) < EXAMPLES:
            group.examples.append(path)

    def most_common(self) -> list[tuple[str, FailureGroup]]:
        return sorted(self.groups.items(), key=lambda item: -item[1].count)


@dataclass(slots=True)
class Flight:
    """One file being uploaded (or waiting to retry)."""

    size: int
    sent: int = 0
    attempt: int = 1
    waiting: str = ""     # "503, retry in 1.3 s" while between attempts


class RateMeter:
    """Bytes per second over a sliding window, in fixed-width buckets (O(1) per add)."""

    def __init__(self, clock: Callable[[], float], window: float = 5.0,
                 bucket: float = 0.25) -> None:
        self._clock = clock
        self._window = window
        self._bucket = bucket
        self._buckets: deque[list[float]] = deque()   # [bucket start, bytes]
        self._since = clock()

    def add(self, n: int) -> None:
        now = self._clock()
        start = now - (now % self._bucket)
        if self._buckets and self._buckets[-1][0] == start:
            self._buckets[-1][1] += n
        else:
            self._buckets.append([start, float(n)])
        self._trim(now)

    def rate(self) -> float:
        now = self._clock()
        self._trim(now)
        span = min(self._window, now - self._since)
        if span <= 0:
            return 0.0
        return max(0.0, sum(b[1] for b in self._buckets) / span)

    def _trim(self, now: float) -> None:
        while self._buckets and self._buckets[0][0] < now - self._window:
            self._buckets.popleft()


class Tally:
    """Counters, totals and files in flight, as the events describe them."""

    def __init__(self) -> None:
        self.target = ""
        self.dry_run = False
        self.concurrency = 0
        self.uploaded = 0
        self.skipped = 0
        self.failed = 0
        self.retries = 0
        self.queued_files = 0
        self.queued_bytes = 0
        self.scan: ScanDone | None = None
        self.sent_bytes = 0          # net bytes on the wire (rewinds subtract)
        self.resolved_bytes = 0      # bytes of finished files + bytes sent of files in flight
        self.stopping: str | None = None
        self.waiting = 0             # files between a failed attempt and the next one
        self.flights: dict[str, Flight] = {}
        self.failures = FailureGroups()

    @property
    def scanning(self) -> bool:
        return self.scan is None

    @property
    def finished_files(self) -> int:
        return self.uploaded + self.skipped + self.failed

    @property
    def total_files(self) -> int:
        known = self.queued_files if self.scan is None else max(self.scan.files,
                                                                self.queued_files)
        return max(known, self.finished_files)

    @property
    def total_bytes(self) -> int:
        known = self.queued_bytes if self.scan is None else max(self.scan.bytes,
                                                                self.queued_bytes)
        return max(known, self.resolved_bytes)

    def apply(self, event: Event) -> int:
        """Fold one event in; returns the net bytes it moved (for rate meters)."""
        match event:
            case BytesSent(path=path, n=n):
                return self._sent(path, n)
            case FileStarted(path=path, size=size, attempt=attempt):
                flight = self.flights.setdefault(path, Flight(size=size))
                self.waiting -= bool(flight.waiting)
                flight.size, flight.attempt, flight.waiting = size, attempt, ""
            case FileRetrying(path=path, cause=cause, delay=delay):
                self.retries += 1
                between = self.flights.get(path)
                if between is not None:
                    self.waiting += not between.waiting
                    between.waiting = f"{cause}, retry in {delay:.1f} s"
            case FileDone(path=path, size=size):
                self.uploaded += 1
                self._finish(path, size)
            case FileFailed(path=path, size=size, reason=reason):
                self.failed += 1
                self.failures.add(reason, path)
                self._finish(path, size)
            case FileSkipped(path=path, size=size):
                self.skipped += 1
                self._finish(path, size)
            case JournalSkipped(files=files, bytes=nbytes):
                self.skipped += files
                self.queued_files += files
                self.queued_bytes += nbytes
                self.resolved_bytes += nbytes
            case FileQueued(size=size):
                self.queued_files += 1
                self.queued_bytes += size
            case ScanDone():
                self.scan = event
            case RunStarted(target=target, concurrency=concurrency, dry_run=dry_run):
                self.target, self.concurrency, self.dry_run = target, concurrency, dry_run
            case ConcurrencyChanged(limit=limit):
                self.concurrency = limit
            case RunStopping(reason=reason):
                self.stopping = reason
        return 0

    def _sent(self, path: str, n: int) -> int:
        flight = self.flights.get(path)
        if flight is not None:
            new = max(0, flight.sent + n)   # a stray rewind never shows negative progress
            n = new - flight.sent
            flight.sent = new
        self.sent_bytes += n
        self.resolved_bytes += n
        return n

    def _finish(self, path: str, size: int) -> None:
        flight = self.flights.pop(path, None)
        sent = 0
        if flight is not None:
            sent = flight.sent
            self.waiting -= bool(flight.waiting)
        self.resolved_bytes += max(size, sent) - sent
