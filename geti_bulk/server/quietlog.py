"""`geti-bulk serve` logs: one line, never a traceback, when a client goes away mid-request.

A client killed while it sends a body (a `kill -9` test, Ctrl-C of an upload, a benchmark
contender stopped) is routine for these servers. aiohttp logs what it meets afterwards
("Unhandled exception", "Error handling request") with the whole traceback, and asyncio
does the same for a TLS transport that dies. Those become one line,
`geti-bulk serve: connection reset by client (…)`; every other error keeps its traceback.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import sys
from typing import Any

PREFIX = "geti-bulk serve"
_LOGGERS = ("aiohttp", "geti_bulk.server", "asyncio")


def client_gone(exc: BaseException | None) -> bool:
    """A connection reset, a broken pipe, a TLS record cut short, or an upload body that
    ended early: the client went away (also when wrapped as another error's cause)."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, ConnectionError | ssl.SSLError | asyncio.IncompleteReadError):
            return True
        name = type(exc).__name__
        if name in ("ClientConnectionResetError", "ClientPayloadError", "ContentLengthError"):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


class OneLine(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        exc = record.exc_info[1] if record.exc_info else None
        if client_gone(exc):
            return f"{PREFIX}: connection reset by client ({type(exc).__name__}: {exc})"
        return super().format(record)


def install(loop: asyncio.AbstractEventLoop | None = None) -> logging.Handler:
    """Log the server's loggers through `OneLine` on stderr, and route the event loop's
    connection errors there too. Returns the handler (tests read what it writes)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLine(f"{PREFIX}: %(levelname)s %(name)s: %(message)s"))
    for name in _LOGGERS:
        log = logging.getLogger(name)
        log.addHandler(handler)
        log.propagate = False
        if log.level == logging.NOTSET:
            log.setLevel(logging.WARNING)
    if loop is not None:
        def on_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            exc = context.get("exception")
            if client_gone(exc):
                logging.getLogger("geti_bulk.server").warning(
                    context.get("message", "connection error"), exc_info=exc)
                return
            loop.default_exception_handler(context)

        loop.set_exception_handler(on_error)
    return handler
