"""JSON lines: one object per event per line, for scripts and log shippers.

Every line is `{"event": <name>, "ts": <unix time, float seconds>, ...fields}` where
`<name>` is the event class in snake_case and the fields are the dataclass fields, by
name. Strings are JSON-escaped (non-ASCII as `\\u00e9`-style escapes); `reason`, `message`, `cause`,
`fatal`, `target`, `notes` and `text` pass through a credential mask. Each line is flushed at once.

    event               fields
    run_started         target: str, concurrency: int, dry_run: bool,
                        ceiling: int | null (adaptive: the most it may grow to)
    file_queued         path: str, size: int
    scan_done           files: int, bytes: int
    file_started        path: str, size: int, attempt: int
    bytes_sent          path: str, n: int          (coalesced, see below)
    file_retrying       path: str, attempt: int, cause: str, delay: float, message: str
    file_done           path: str, size: int, media_id: str, attempts: int, adopted: bool,
                        shapes: int, notes: str
    file_failed         path: str, reason: str, size: int, status: int | null,
                        media_id: str | null
    file_skipped        path: str, reason: str, size: int, media_id: str | null
    journal_skipped     files: int, bytes: int   (files a resume skips in bulk)
    notice              text: str
    concurrency_changed limit: int
    run_stopping        reason: str
    run_finished        uploaded: int, skipped: int, failed: int, bytes_sent: int,
                        elapsed: float, retries: {cause: count}, fatal: str | null,
                        interrupted: bool, not_started: int, report_path: str | null
                        signal: str | null, ignored: int, symlinks_skipped: int,
                        unlabelled: int, shapes_clipped: int, shapes_dropped: int

`bytes_sent` is coalesced: at most one line per file per `coalesce` seconds (0.5), whose
`n` is the sum of the events it stands for (negative when a retry rewound the file), so
summing `n` per path still gives the net bytes sent. Pending bytes are always written
before that file's `file_started`, `file_retrying`, `file_done` and `file_failed`, and
before `run_finished`. With `quiet`, only `file_failed` and `run_finished` are written.
See also docs/json-events.md.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TextIO

from geti_bulk.events import (
    BytesSent,
    Event,
    FileDone,
    FileFailed,
    FileRetrying,
    FileStarted,
    RunFinished,
)

from .text import event_name, redact

_MASKED = frozenset({"reason", "message", "cause", "fatal", "target", "notes", "text"})


class JsonReporter:
    """Writes the JSON lines described in the module docstring to `stream`."""

    def __init__(self, stream: TextIO, *, coalesce: float = 0.5,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time, quiet: bool = False) -> None:
        self.stream = stream
        self.coalesce = coalesce
        self.quiet = quiet
        self._clock = clock
        self._wall_clock = wall_clock
        self._pending: dict[str, int] = {}       # path -> bytes not yet written
        self._last: dict[str, float] = {}        # path -> when its last bytes_sent went out
        self._closed = False

    def start(self) -> None:
        """Nothing to start; present so every reporter has the same lifecycle."""

    def stop(self) -> None:
        for path in list(self._pending):
            self._flush_bytes(path)
        if not self._closed:
            try:
                self.stream.flush()
            except (BrokenPipeError, ValueError):
                self._closed = True

    def __enter__(self) -> JsonReporter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def emit(self, event: Event) -> None:
        if self.quiet and not isinstance(event, FileFailed | RunFinished):
            return
        if isinstance(event, BytesSent):
            self._bytes(event)
            return
        if isinstance(event, FileStarted | FileRetrying | FileDone | FileFailed):
            self._flush_bytes(event.path)
            if isinstance(event, FileDone | FileFailed):
                self._last.pop(event.path, None)
        elif isinstance(event, RunFinished):
            for path in list(self._pending):
                self._flush_bytes(path)
        self._write(event_name(type(event)), _fields(event))

    def _bytes(self, event: BytesSent) -> None:
        self._pending[event.path] = self._pending.get(event.path, 0) + event.n
        now = self._clock()
        last = self._last.get(event.path)
        if last is None or now - last >= self.coalesce:
            self._flush_bytes(event.path)

    def _flush_bytes(self, path: str) -> None:
        n = self._pending.pop(path, None)
        if n is not None:
            self._last[path] = self._clock()
            self._write("bytes_sent", {"path": path, "n": n})

    def _write(self, name: str, fields: dict[str, Any]) -> None:
        record = {"event": name, "ts": self._wall_clock(), **fields}
        if self._closed:
            return
        try:
            self.stream.write(json.dumps(record) + "\n")
            self.stream.flush()
        except (BrokenPipeError, ValueError):   # the reader of the stream went away
            self._closed = True


def _fields(event: Event) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(event):
        value = getattr(event, f.name)
        out[f.name] = redact(value) if f.name in _MASKED and isinstance(value, str) else value
    return out
