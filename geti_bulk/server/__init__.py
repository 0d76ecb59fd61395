"""A Geti 2.x-compatible local server (aiohttp) for tests, demos and benchmarks.

Public interface: ``ServerConfig``, ``LocalGeti`` and ``serve_main`` (the
``geti-bulk serve`` command). See ``GETI_API.md`` for the behaviour it reproduces.
"""

from __future__ import annotations

from .cli import serve_main
from .config import ServerConfig
from .geti3 import Geti3Config, LocalGeti3
from .server import LocalGeti
from .store import MediaRecord, Store

__all__ = ["Geti3Config", "LocalGeti", "LocalGeti3", "MediaRecord", "ServerConfig", "Store",
           "serve_main"]
