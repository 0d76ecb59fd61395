"""Plain line output for CI, cron and `| tee`: no control codes, one fact per line.

Line formats (stable; `<path>` and `<reason>` have control characters escaped):

    start: <target> (concurrency <n>|adaptive from <n> up to <m>[, dry run])
    scan done: <files> files, <size>
    uploaded <path> <bytes> <media_id>[ (adopted)][ after <n> attempts]
    skipped <path>: <reason>
    skipped <n> files: already uploaded (journal); each is in the report
                                        (once, before the summary, instead of a line per
                                         file a resume skips; per file with verbose)
    FAILED <path>: <reason>
    retry <n> <path>: <cause> (waiting <seconds> s)          verbose only
    concurrency: <n>                                         verbose only
    progress: <done>/<total>[+] files, <size>, <rate>, <failed> failed
    stopping: <reason>
    --- summary ---                                          then `label: value` lines

`<bytes>` is an exact byte count; `<size>` and `<rate>` are decimal units (`12.0 MB`,
`3.1 MB/s`). A `+` after the total means the scan is still running. The progress line
is written at most once per `interval` seconds, checked whenever an event arrives; its
rate is measured since the previous progress line. With `quiet`, only `FAILED` lines and
the summary are written (not the one line for journal skips either).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

from geti_bulk.events import (
    JOURNAL_SKIP,
    ConcurrencyChanged,
    Event,
    FileDone,
    FileFailed,
    FileRetrying,
    FileSkipped,
    JournalSkipped,
    Notice,
    RunFinished,
    RunStarted,
    RunStopping,
    ScanDone,
)

from .summary import plain_summary, stopped_before_anything
from .tally import Tally
from .text import format_bytes, format_rate, printable, safe


class PlainReporter:
    """Writes the lines described in the module docstring to `stream`."""

    def __init__(self, stream: TextIO, *, interval: float = 10.0,
                 clock: Callable[[], float] = time.monotonic, verbose: bool = False,
                 quiet: bool = False) -> None:
        self.stream = stream
        self.interval = interval
        self.verbose = verbose
        self.quiet = quiet
        self._clock = clock
        self._tally = Tally()
        self._mark_time = clock()
        self._mark_bytes = 0
        self._journal_skips = 0
        self._closed = False

    def start(self) -> None:
        """Nothing to start; present so every reporter has the same lifecycle."""

    def stop(self) -> None:
        if not self._closed:
            try:
                self.stream.flush()
            except (BrokenPipeError, ValueError):
                self._closed = True

    def __enter__(self) -> PlainReporter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def emit(self, event: Event) -> None:
        self._tally.apply(event)
        if isinstance(event, RunStarted):
            self._mark_time = self._clock()   # progress intervals count from the start
        if isinstance(event, RunFinished):
            if self._journal_skips and not self.quiet:
                self._write(f"skipped {self._journal_skips} files: {JOURNAL_SKIP}; the report "
                            "counts them in one line, `geti-bulk status --list done "
                            "JOURNAL` names them")
            if not stopped_before_anything(event):
                self._write(*plain_summary(event, self._tally.failures))
            return
        if isinstance(event, JournalSkipped):
            self._journal_skips += event.files
            if not self.quiet:
                self._maybe_progress()
            return
        if (isinstance(event, FileSkipped) and event.reason == JOURNAL_SKIP
                and not self.verbose):
            self._journal_skips += 1      # a resume of 500,000 files is not 500,000 lines
            if not self.quiet:
                self._maybe_progress()
            return
        line = self._line(event)
        if line is not None and (not self.quiet or isinstance(event, FileFailed)):
            self._write(line)
        if not self.quiet:
            self._maybe_progress()

    def _line(self, event: Event) -> str | None:
        match event:
            case FileDone(path=path, size=size, media_id=media_id):
                extra = " (adopted)" if event.adopted else ""
                if event.attempts > 1:
                    extra += f" after {event.attempts} attempts"
                if event.shapes:
                    extra += f", {event.shapes} shape(s)"
                if event.notes and self.verbose:
                    extra += f" ({safe(event.notes)})"
                return f"uploaded {printable(path)} {size} {printable(media_id)}{extra}"
            case FileSkipped(path=path, reason=reason):
                return f"skipped {printable(path)}: {safe(reason)}"
            case FileFailed(path=path, reason=reason):
                return f"FAILED {printable(path)}: {safe(reason)}"
            case FileRetrying(path=path, attempt=attempt, cause=cause, delay=delay):
                if self.verbose:
                    return (f"retry {attempt} {printable(path)}: {safe(cause)} "
                            f"(waiting {delay:.1f} s)")
            case ConcurrencyChanged(limit=limit):
                if self.verbose:
                    return f"concurrency: {limit}"
            case RunStarted(target=target, concurrency=concurrency, dry_run=dry_run,
                            ceiling=ceiling):
                dry = ", dry run" if dry_run else ""
                level = (f"adaptive from {concurrency} up to {ceiling}"
                         if ceiling is not None and ceiling > concurrency else str(concurrency))
                return f"start: {printable(target)} (concurrency {level}{dry})"
            case ScanDone(files=files, bytes=size):
                return f"scan done: {files} files, {format_bytes(size)}"
            case RunStopping(reason=reason):
                return f"stopping: {safe(reason)}"
            case Notice(text=text):
                return safe(text)
        return None

    def _maybe_progress(self) -> None:
        now = self._clock()
        if now - self._mark_time < self.interval:
            return
        t = self._tally
        rate = (t.sent_bytes - self._mark_bytes) / (now - self._mark_time)
        self._mark_time, self._mark_bytes = now, t.sent_bytes
        more = "+" if t.scanning else ""
        self._write(f"progress: {t.finished_files}/{t.total_files}{more} files, "
                    f"{format_bytes(t.sent_bytes)}, {format_rate(rate)}, {t.failed} failed")

    def _write(self, *lines: str) -> None:
        if self._closed:
            return
        try:
            self.stream.write("".join(line + "\n" for line in lines))
            self.stream.flush()
        except (BrokenPipeError, ValueError):   # `| head -1`: the reader went away
            self._closed = True                 # the run goes on; its report has every row
