"""Import aiohttp without loading the system's CAs into two contexts nobody uses.

At import, ``aiohttp.connector`` builds its default SSL contexts (``_SSL_CONTEXT_VERIFIED``
and ``_SSL_CONTEXT_UNVERIFIED``), each loading every CA of the system store: about 70 ms
of a 220 ms import on a small machine. geti-bulk never uses them: each of its connectors
gets an explicit ``ssl=`` (its own context, from certifi or ``--ca-bundle``, or ``False``
for plain HTTP; ``tests/test_lean_import.py`` checks every one), and aiohttp only falls
back to those defaults for a request without a context of its own.

`import_aiohttp` imports aiohttp with ``SSLContext.set_default_verify_paths`` a no-op for
the duration of the import only (``create_default_context`` loads the defaults through
it), and puts it back at once. The verified default is thus left with no CA at all: it
*fails closed* (it trusts no server), never open. The unverified default verifies nothing
anyway (``CERT_NONE``), with or without CAs.

Only the CLI calls it, before anything imports aiohttp (``cli.main``): a library user's
process keeps aiohttp's defaults. When aiohttp is already imported it does nothing.
"""

from __future__ import annotations

import ssl
import sys
import threading
from typing import Any

_MISSING = object()
_lock = threading.Lock()


def _no_default_paths(self: ssl.SSLContext) -> None:
    """Stands in for `SSLContext.set_default_verify_paths` while aiohttp is imported."""


def import_aiohttp() -> Any:
    """``import aiohttp``, without its default contexts' CAs if it is not imported yet."""
    with _lock:
        if "aiohttp" in sys.modules:
            import aiohttp

            return aiohttp
        cls = ssl.SSLContext
        own = cls.__dict__.get("set_default_verify_paths", _MISSING)
        cls.set_default_verify_paths = _no_default_paths   # type: ignore[method-assign]
        try:
            import aiohttp
            import aiohttp.connector  # noqa: F401  (where the defaults are built)
        finally:
            if own is _MISSING:
                del cls.set_default_verify_paths
            else:
                cls.set_default_verify_paths = own   # type: ignore[method-assign]
        return aiohttp
