"""Events the pipeline emits, and the Reporter protocol that consumes them.

Events are frozen facts in the past tense. Reporters (rich, plain, JSON lines,
the journal's report) see nothing else of the pipeline. `emit` is synchronous
and must never block the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class RunStarted:
    target: str          # human-readable "host / project / dataset", never the token
    concurrency: int
    dry_run: bool = False
    ceiling: int | None = None   # adaptive: the most uploads in flight it may grow to


@dataclass(frozen=True, slots=True)
class FileQueued:
    path: str
    size: int


@dataclass(frozen=True, slots=True)
class ScanDone:
    files: int
    bytes: int


@dataclass(frozen=True, slots=True)
class FileStarted:
    path: str
    size: int
    attempt: int


@dataclass(frozen=True, slots=True)
class BytesSent:
    """`n` bytes of `path` went out; negative when a retry rewinds the progress."""

    path: str
    n: int


@dataclass(frozen=True, slots=True)
class FileRetrying:
    path: str
    attempt: int         # failed tries so far (sends and reconcile queries, 1-based)
    cause: str           # "503", "429", "timeout", "network", "500"...
    delay: float         # seconds before the next attempt
    message: str = ""


@dataclass(frozen=True, slots=True)
class FileDone:
    path: str
    size: int
    media_id: str
    attempts: int
    adopted: bool = False   # found already stored on the server after an ambiguous failure
    shapes: int = 0         # annotations posted or found right on the server
    notes: str = ""         # clipped / dropped / converted shapes, with reasons


@dataclass(frozen=True, slots=True)
class FileFailed:
    path: str
    reason: str
    size: int = 0
    status: int | None = None
    media_id: str | None = None   # the media is stored; only its annotation failed


JOURNAL_SKIP = "already uploaded (journal)"   # FileSkipped.reason on a resume
AGAIN = "again"   # FileJob.prior_state of a file this run has already handed on
REACHED_TWICE = ("reached twice in this run (a followed symlink or an overlapping source): "
                 "uploaded once")


@dataclass(frozen=True, slots=True)
class FileSkipped:
    path: str
    reason: str
    size: int = 0
    media_id: str | None = None   # when the file is already in Geti


@dataclass(frozen=True, slots=True)
class JournalSkipped:
    """Files the journal already holds as uploaded and unchanged, counted in bulk: a
    resume of a million files is a few of these, not a million rows (`-v`: one
    FileSkipped each instead). `geti-bulk status --list done JOURNAL` names them."""

    files: int
    bytes: int


@dataclass(frozen=True, slots=True)
class Notice:
    """One line worth telling the user (the dataset format found and why, label notes)."""

    text: str


@dataclass(frozen=True, slots=True)
class ConcurrencyChanged:
    limit: int


@dataclass(frozen=True, slots=True)
class RunStopping:
    """Graceful stop requested (first Ctrl-C, or a fatal error)."""

    reason: str


@dataclass(frozen=True, slots=True)
class RunFinished:
    uploaded: int
    skipped: int
    failed: int
    bytes_sent: int
    elapsed: float
    retries: dict[str, int] = field(default_factory=dict)
    fatal: str | None = None
    interrupted: bool = False
    not_started: int = 0
    report_path: str | None = None
    signal: str | None = None      # "SIGTERM", "SIGHUP", "SIGINT" when a signal stopped it
    ignored: int = 0               # files in the folders that are not media (.xml, .txt …)
    symlinks_skipped: int = 0      # symlinks not followed (no --follow-symlinks)
    unlabelled: int = 0            # uploaded into a classification project without a label
    shapes_clipped: int = 0
    shapes_dropped: int = 0


Event = (RunStarted | FileQueued | ScanDone | FileStarted | BytesSent | FileRetrying
         | FileDone | FileFailed | FileSkipped | JournalSkipped | ConcurrencyChanged | RunStopping
         | RunFinished | Notice)


class Reporter(Protocol):
    def emit(self, event: Event) -> None:
        """Take one event; cheap, synchronous, never blocks."""


class MultiReporter:
    """Fan one event out to several reporters."""

    def __init__(self, *reporters: Reporter) -> None:
        self.reporters = [r for r in reporters if r is not None]

    def emit(self, event: Event) -> None:
        for r in self.reporters:
            r.emit(event)


class GuardedReporter:
    """A display that raises (a bug, a terminal gone away) must not stop the upload: the
    first exception switches it off and is kept in `error`; the run goes on, and the
    report and the journal keep every row."""

    def __init__(self, inner: Reporter) -> None:
        self.inner = inner
        self.error: Exception | None = None

    def emit(self, event: Event) -> None:
        if self.error is not None:
            return
        try:
            self.inner.emit(event)
        except Exception as e:  # noqa: BLE001 — the display is not worth the run
            self.error = e


class RecordingReporter:
    """Keeps every event; used by tests and the library API."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)
