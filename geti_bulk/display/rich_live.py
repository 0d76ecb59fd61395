"""Live terminal display: an overall bar, one row per file in flight, counters.

`emit` only folds the event into state under a lock (cheap, never waits on I/O); rich's
Live refresh thread pulls `renderable()` a few times a second and draws. Lines meant to
stay above the live area (failures; retries when verbose) are queued by `emit` and
printed by that thread in one batch per refresh, because each print redraws the whole
live area. Lock order is always Live -> ours -> Progress, and we never call into Live or
the console while holding ours, so the refresh thread and the event loop cannot deadlock.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from types import TracebackType
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.text import Text

from geti_bulk.events import (
    Event,
    FileDone,
    FileFailed,
    FileRetrying,
    FileSkipped,
    FileStarted,
    Notice,
    RunFinished,
)

from .summary import rich_summary, stopped_before_anything
from .tally import RateMeter, Tally
from .text import format_bytes, format_duration, format_rate, printable, safe

PATH_WIDTH = 32


class _Live(Live):
    """A Live that first prints the lines queued above it, in one batch per refresh.

    Printing while Live runs redraws the whole live area; doing that per failure would
    cost milliseconds of event-loop time each, so `emit` queues and the refresh thread
    prints.
    """

    def __init__(self, drain: Callable[[], list[RenderableType]],
                 on_error: Callable[[Exception], None] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._drain = drain
        self._on_error = on_error
        self._failed = False

    def refresh(self) -> None:
        if self._failed:
            return
        try:
            with self._lock:
                lines = self._drain()
                if lines:
                    self.console.print(Group(*lines))
                super().refresh()
        except Exception as e:  # noqa: BLE001 — in the refresh thread: no traceback there
            self._failed = True   # the display stops drawing; the next emit says why
            if self._on_error is not None:
                self._on_error(e)


BAR_OVERALL = 24
BAR_ROW = 20


def _bar(text: Text, done: float, total: float, width: int) -> None:
    """A bar like rich's BarColumn, drawn straight into ``text``."""
    frac = 0.0 if total <= 0 else max(0.0, min(1.0, done / total))
    n = int(frac * width)
    text.append("━" * n, "bar.finished" if n == width else "bar.complete")
    text.append("━" * (width - n), "bar.back")


def _short(path: str, width: int = PATH_WIDTH) -> str:
    """Keep the end of the path, which is the part that tells files apart."""
    path = printable(path)
    return path if len(path) <= width else "…" + path[-(width - 1):]


class RichReporter:
    """Reporter for an interactive terminal (see the module docstring)."""

    def __init__(self, console: Console | None = None, *, max_rows: int = 8,
                 clock: Callable[[], float] = time.monotonic,
                 refresh_per_second: float = 4, auto_refresh: bool = True,
                 verbose: bool = False, quiet: bool = False) -> None:
        # a Console made normally honours NO_COLOR and TERM; never force colour here
        self.console = console if console is not None else Console()
        self.max_rows = max(1, max_rows)
        self.verbose = verbose
        self.quiet = quiet
        self._clock = clock
        self._lock = threading.Lock()
        self._tally = Tally()
        self._meter = RateMeter(clock)
        self._finished = False
        # fixed slots: a file keeps its row while in flight; a finished one's row is taken
        # by the next file waiting for one
        self._slots: list[str | None] = [None] * self.max_rows
        self._slot_of: dict[str, int] = {}
        self._unshown: OrderedDict[str, None] = OrderedDict()
        self._above: list[RenderableType] = []    # lines waiting to be printed above
        self._thread_error: Exception | None = None
        self._live = _Live(self._drain, self._drawing_failed, console=self.console,
                           auto_refresh=auto_refresh,
                           refresh_per_second=refresh_per_second,
                           get_renderable=self.renderable)
        self._live_on = False

    # lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        if not self.quiet and not self._live_on and not self._finished:
            self._live.start()
            self._live_on = True

    def stop(self) -> None:
        if self._live_on:
            self._live_on = False
            self._live.stop()
        if self._thread_error is not None:
            raise self._thread_error   # drawing failed in the refresh thread: say so once

    def __enter__(self) -> RichReporter:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # events --------------------------------------------------------------------------

    def _drawing_failed(self, error: Exception) -> None:
        self._thread_error = error

    def emit(self, event: Event) -> None:
        if self._thread_error is not None:
            raise self._thread_error   # the caller switches the display off and says why
        with self._lock:
            moved = self._tally.apply(event)
            if moved:
                self._meter.add(moved)
            self._update_rows(event)
            message = self._message(event)
            if message is not None and self._live_on:
                self._above.append(message)    # printed by the refresh thread, batched
                message = None
        if message is not None:
            self.console.print(message)
        if isinstance(event, RunFinished):
            self._finished = True
            self.stop()   # queued lines and the final frame first, then the summary
            if not stopped_before_anything(event):
                self.console.print(rich_summary(event, self._tally.failures))

    def _drain(self) -> list[RenderableType]:
        with self._lock:
            lines, self._above = self._above, []
        return lines

    def _message(self, event: Event) -> Text | None:
        if isinstance(event, FileFailed):
            text = Text("FAILED ", style="bold red")
            text.append(f"{printable(event.path)}: {safe(event.reason)}")
            return text
        if isinstance(event, Notice) and not self.quiet:
            return Text(safe(event.text))
        if isinstance(event, FileRetrying) and self.verbose and not self.quiet:
            return Text(f"retry {event.attempt} {printable(event.path)}: "
                        f"{safe(event.cause)} (waiting {event.delay:.1f} s)", style="yellow")
        return None

    def _update_rows(self, event: Event) -> None:
        """Which file holds which row (the rows themselves are drawn from the tally when
        a frame is, not on every event: small files make thousands a second)."""
        match event:
            case FileStarted(path=path):
                if path not in self._slot_of and path not in self._unshown:
                    self._unshown[path] = None
                    self._fill_slots()
            case FileDone(path=path) | FileFailed(path=path) | FileSkipped(path=path):
                self._unshown.pop(path, None)
                slot = self._slot_of.pop(path, None)
                if slot is not None:
                    self._slots[slot] = None
                    self._fill_slots()

    def _fill_slots(self) -> None:
        for slot, occupant in enumerate(self._slots):
            if not self._unshown:
                return
            if occupant is None:
                path, _ = self._unshown.popitem(last=False)
                self._slots[slot] = path
                self._slot_of[path] = slot

    # drawing -------------------------------------------------------------------------

    def renderable(self) -> RenderableType:
        """The live area as it stands now; called by Live's refresh thread and by tests.

        One Text built by hand, not rich Progress tables: a frame with eight rows took
        6 ms of CPU to lay out (on a 2-core machine, 4 frames a second), time taken from
        the event loop sending the uploads; this takes a tenth of that."""
        with self._lock:
            return Group(self._frame())   # (a bare Text printed is re-joined, and wraps)

    __rich__ = renderable

    def _frame(self) -> Text:
        t = self._tally
        out = Text(no_wrap=True, overflow="ellipsis")
        if t.target:
            out.append(f"geti-bulk → {printable(t.target)}"
                       + ("  (dry run)" if t.dry_run else ""), "bold")
            out.append("\n")
        self._overall_line(out)
        out.append(f"\nuploaded {t.uploaded} · skipped {t.skipped} · failed {t.failed} · "
                   f"retrying {t.waiting} · retries {t.retries} · concurrency {t.concurrency}")
        if not self._finished:
            for path in self._slots:
                if path is not None:
                    self._row_line(out, path)
            if self._unshown:
                out.append(f"\n… and {len(self._unshown)} more in flight", "dim")
            if t.stopping is not None:
                out.append(f"\nstopping: {safe(t.stopping)} — finishing in-flight uploads "
                           "(Ctrl-C again to cancel)", "bold yellow")
        return out

    def _overall_line(self, out: Text) -> None:
        t = self._tally
        speed = self._meter.rate()
        more = "+" if t.scanning else ""
        if t.stopping is not None:
            eta = "stopping"
        elif t.scanning:
            eta = "scanning…"
        elif speed > 0 and not self._finished:
            eta = f"ETA {format_duration((t.total_bytes - t.resolved_bytes) / speed)}"
        else:
            eta = "ETA -:--:--" if not self._finished else "done"
        label = "stopping" if t.stopping is not None else (
            "scanning…" if t.scanning else "uploading")
        out.append(f"{label:<10} ")
        _bar(out, t.resolved_bytes, max(t.total_bytes, 1), BAR_OVERALL)
        out.append(f" {t.finished_files}/{t.total_files}{more} files "
                   f"{format_bytes(t.resolved_bytes)}/{format_bytes(t.total_bytes)}{more} "
                   f"{format_rate(speed)} {eta}")

    def _row_line(self, out: Text, path: str) -> None:
        flight = self._tally.flights.get(path)
        size, sent = (flight.size, flight.sent) if flight is not None else (0, 0)
        note = ""
        if flight is not None:
            note = f" waiting: {safe(flight.waiting)}" if flight.waiting else (
                f" attempt {flight.attempt}" if flight.attempt > 1 else "")
        out.append(f"\n{_short(path):<{PATH_WIDTH}} ")
        _bar(out, sent, max(size, 1), BAR_ROW)
        out.append(f" {format_bytes(sent)}/{format_bytes(size)}{note}")
