"""Faults of the local Geti 3, applied to the write requests (multipart media upload,
``media:from-upload``, annotation POST).

There is no gateway in front of Geti 3 (GETI3_API.md §1: Hypercorn serves the app
directly), so there are no 502/503/504 kinds. Kinds, as ``kind=probability`` in the spec
(one seeded draw per write; a script, consumed first, names one kind or ``ok`` per write):

============= =================================================================
``locked``     the write waits ``locked_ms`` at its commit, then Starlette's plain 500
               ``Internal Server Error`` with nothing committed: SQLite's "database is
               locked" (§5, issue #7614). Also happens, without any spec, to every write
               that arrives while ``locked_writers`` others are in flight.
``reset``      part of the body is read, then the connection is dropped; nothing stored
``stored500``  the media / annotations are committed, then a plain 500 (§12's open
               question: a failed response after a commit)
``slow``       the write holds its slot ``slow_ms`` longer before committing
============= =================================================================
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web

from ..faults import NO_FAULT
from ..replies import PlainError

KINDS = frozenset({"locked", "reset", "stored500", "slow"})
_RESET_READ = 64 * 1024


def parse_spec(spec: str) -> list[tuple[str, float]]:
    """``"locked=0.1,reset=0.02"`` → ``[("locked", 0.1), ("reset", 0.02)]`` (validated)."""
    result: list[tuple[str, float]] = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        kind, sep, prob_text = item.partition("=")
        kind = kind.strip().lower()
        if not sep or kind not in KINDS:
            raise ValueError(f"bad fault {item!r}: expected kind=probability, kinds {sorted(KINDS)}")
        try:
            prob = float(prob_text)
        except ValueError:
            raise ValueError(f"bad fault probability in {item!r}") from None
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"fault probability out of [0, 1] in {item!r}")
        result.append((kind, prob))
    if sum(p for _, p in result) > 1.0 + 1e-9:
        raise ValueError("fault probabilities add up to more than 1")
    return result


def _check_script(script: Iterable[str]) -> list[str]:
    entries = [str(s).strip().lower() for s in script]
    for entry in entries:
        if entry not in KINDS and entry not in NO_FAULT:
            raise ValueError(f"bad scripted fault {entry!r}: kinds {sorted(KINDS)} or 'ok'")
    return entries


class Injector:
    """Seeded choice of at most one fault per write; counts what it chose."""

    def __init__(self, spec: str = "", seed: int = 0) -> None:
        self._rng = random.Random(f"geti-bulk:geti3-faults:{seed}")
        self._spec = parse_spec(spec)
        self._script: list[str] = []
        self.counts: Counter[str] = Counter()

    def configure(self, spec: str = "", script: Iterable[str] | None = None) -> None:
        parsed, entries = parse_spec(spec), _check_script(script or [])
        self._spec, self._script = parsed, entries

    def draw(self) -> str | None:
        if self._script:
            entry = self._script.pop(0)
            kind = None if entry in NO_FAULT else entry
        else:
            kind = self._pick()
        if kind is not None:
            self.counts[kind] += 1
        return kind

    def _pick(self) -> str | None:
        if not self._spec:
            return None
        draw = self._rng.random()
        for kind, prob in self._spec:
            if draw < prob:
                return kind
            draw -= prob
        return None


@dataclass
class Write:
    """One write request in flight: its fault, and whether the lock is lost."""

    gate: WriteGate
    fault: str | None
    locked: bool

    async def commit_point(self) -> None:
        """Call right before committing: ``slow`` waits, a locked write times out (§5)."""
        if self.fault == "slow":
            await asyncio.sleep(self.gate.slow_ms / 1000)
        if self.locked:
            await asyncio.sleep(self.gate.locked_ms / 1000)
            self.gate.locked_answered += 1
            raise PlainError(500)
        if self.gate.write_ms:   # SQLite has one writer: a commit waits for the others
            async with self.gate.writer:
                await asyncio.sleep(self.gate.write_ms / 1000)

    def after_commit(self) -> None:
        """Call right after committing: ``stored500`` answers 500 anyway."""
        if self.fault == "stored500":
            raise PlainError(500)


class WriteGate:
    """Counts writes in flight; beyond ``limit`` admitted ones, a new write is locked."""

    def __init__(self, injector: Injector, limit: int, locked_ms: int, slow_ms: int,
                 write_ms: int = 0) -> None:
        self.injector = injector
        self.write_ms = write_ms
        self.writer = asyncio.Lock()
        self.limit = limit
        self.locked_ms = locked_ms
        self.slow_ms = slow_ms
        self.admitted = 0
        self.inflight = 0
        self.peak = 0
        self.locked_answered = 0
        self.started = time.monotonic()

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[Write]:
        fault = self.injector.draw()
        crowded = self.limit > 0 and self.admitted >= self.limit
        write = Write(self, fault, locked=fault == "locked" or crowded)
        if not write.locked:
            self.admitted += 1
        self.inflight += 1
        self.peak = max(self.peak, self.inflight)
        try:
            yield write
        finally:
            self.inflight -= 1
            if not write.locked:
                self.admitted -= 1


async def reset_connection(request: web.Request) -> web.Response:
    """Read part of the body, then drop the connection (the response is never sent)."""
    try:
        await request.content.read(_RESET_READ)
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=500)
