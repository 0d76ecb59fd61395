"""A Geti 3-compatible local server (``geti-bulk serve --dialect geti3``), built from
``GETI3_API.md``: HTTPS with a self-signed certificate, no authentication, UUID ids, one
dataset per project, multipart and TUS uploads, annotations, the SPA fallback, and seeded
write faults (``faults.py``)."""

from __future__ import annotations

from .config import Geti3Config
from .server import LocalGeti3

__all__ = ["Geti3Config", "LocalGeti3"]
