"""Output layer: turns pipeline events into something for people or scripts to read.

Depends on `geti_bulk.events` only. Every reporter has `emit(event)` (synchronous,
cheap, called on the event loop thread), `start()`, `stop()` and context-manager use:

- `RichReporter`  live bars for a terminal (`rich_live.py`)
- `PlainReporter` stable text lines for CI and logs (`plain.py`)
- `JsonReporter`  JSON lines for scripts (`jsonl.py`, schema in docs/json-events.md)
- `NullReporter`  nothing at all

`make_reporter` picks one from a `--progress` style mode string.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from geti_bulk.events import Event

if TYPE_CHECKING:
    from .jsonl import JsonReporter
    from .plain import PlainReporter
    from .rich_live import RichReporter

MODES = ("auto", "rich", "plain", "json", "none")

__all__ = ["MODES", "DisplayReporter", "JsonReporter", "NullReporter", "PlainReporter",
           "RichReporter", "make_reporter"]


def __getattr__(name: str) -> Any:
    """The reporters are imported when first used: rich alone takes ~40 ms to import,
    which a run with `--progress plain`, `json` or `none` does not need to pay."""
    if name == "RichReporter":
        from .rich_live import RichReporter
        return RichReporter
    if name == "PlainReporter":
        from .plain import PlainReporter
        return PlainReporter
    if name == "JsonReporter":
        from .jsonl import JsonReporter
        return JsonReporter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class DisplayReporter(Protocol):
    """A `Reporter` with a lifecycle: `start()` before the run, `stop()` after it."""

    def emit(self, event: Event) -> None: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...


class NullReporter:
    """Prints nothing (`--progress none`)."""

    def emit(self, event: Event) -> None:
        pass

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def __enter__(self) -> NullReporter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        pass


def make_reporter(mode: str, *, stream: TextIO | None = None, verbose: bool = False,
                  quiet: bool = False) -> DisplayReporter:
    """`auto` is rich on a terminal and plain otherwise; `quiet` keeps only failures and
    the summary; `none` prints nothing. `stream` defaults to the current `sys.stdout`."""
    if mode not in MODES:
        raise ValueError(f"progress mode must be one of {', '.join(MODES)}, not {mode!r}")
    out = stream if stream is not None else sys.stdout
    if mode == "auto":
        isatty = getattr(out, "isatty", None)
        mode = "rich" if callable(isatty) and isatty() else "plain"
    if mode == "rich":
        from rich.console import Console

        from .rich_live import RichReporter
        # a normally made Console honours NO_COLOR, TERM=dumb and the terminal width
        return RichReporter(Console(file=out), verbose=verbose, quiet=quiet)
    if mode == "plain":
        from .plain import PlainReporter
        return PlainReporter(out, verbose=verbose, quiet=quiet)
    if mode == "json":
        from .jsonl import JsonReporter
        return JsonReporter(out, quiet=quiet)
    return NullReporter()
