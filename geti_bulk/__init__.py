"""geti-bulk: fast, resumable, exactly-once bulk media uploads to Intel Geti."""

from __future__ import annotations

__version__ = "0.1.0"

from geti_bulk.api import upload  # noqa: E402

__all__ = ["__version__", "upload"]
