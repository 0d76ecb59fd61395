"""``LocalGeti3``: a Geti 3-compatible server (GETI3_API.md) on a local port, started and
stopped in the running event loop, like the Geti 2 ``LocalGeti``."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import ssl
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from .app import build_app
from .certs import ensure_certs
from .config import Geti3Config
from .faults import Injector, WriteGate
from .seed import seed_projects
from .state import Geti3State
from .store import Store
from .tus_store import UploadStore


class LocalGeti3:
    """HTTPS by default (a self-signed pair in ``data_dir`` unless ``tls_cert`` is given)."""

    def __init__(self, config: Geti3Config) -> None:
        if bool(config.tls_cert) != bool(config.tls_key):
            raise ValueError("tls_cert and tls_key go together")
        self.config = config
        self.store = Store(config.data_dir)
        if config.seed_projects:
            seed_projects(self.store, config.seed)
        self.admin_token = config.admin_token or secrets.token_urlsafe(24)
        injector = Injector(config.faults, config.seed)
        self.state = Geti3State(
            config=config, store=self.store, uploads=UploadStore(self.store), injector=injector,
            gate=WriteGate(injector, config.locked_writers, config.locked_ms, config.slow_ms,
                           config.write_ms),
            admin_token=self.admin_token)
        self.cert_path: Path | None = None
        self.key_path: Path | None = None
        self._runner: web.AppRunner | None = None
        self._gc: asyncio.Task[None] | None = None
        self.base_url = ""
        self.info: dict[str, Any] = {}

    async def start(self) -> None:
        """Bind and serve; afterwards ``base_url`` and ``info`` are known."""
        context = self._ssl_context()
        runner = web.AppRunner(build_app(self.state), handle_signals=False, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.config.host, self.config.port, ssl_context=context,
                           backlog=512)
        await site.start()
        self._runner = runner
        host, port = runner.addresses[0][:2]
        host = f"[{host}]" if ":" in host else host
        self.base_url = f"{'https' if context else 'http'}://{host}:{port}"
        self.info = self._describe()
        self._gc = asyncio.create_task(self._collect_uploads())

    async def stop(self) -> None:
        if self._gc is not None:
            self._gc.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._gc
            self._gc = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.store.close()

    async def __aenter__(self) -> LocalGeti3:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    def set_faults(self, spec: str = "", script: list[str] | None = None) -> None:
        """Replace the fault spec and queue a script (consumed first, one entry per write)."""
        self.state.injector.configure(spec, script)

    def _ssl_context(self) -> ssl.SSLContext | None:
        if self.config.plain_http:
            return None
        if self.config.tls_cert and self.config.tls_key:
            self.cert_path, self.key_path = self.config.tls_cert, self.config.tls_key
        else:
            self.cert_path, self.key_path = ensure_certs(self.store.data_dir)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_path, self.key_path)
        return context

    async def _collect_uploads(self) -> None:
        """Every ``upload_gc_s``: drop expired and consumed uploads not in use (§6)."""
        while True:
            await asyncio.sleep(self.config.upload_gc_s)
            uploads = self.state.uploads
            for upload_id in uploads.collectable(time.time()):
                if upload_id not in self.state.busy_uploads:
                    uploads.delete(upload_id)

    def _describe(self) -> dict[str, Any]:
        return {
            "dialect": "geti3",
            "base_url": self.base_url,
            "version": self.config.version,
            "tls": self.cert_path is not None,
            "cert_path": str(self.cert_path.resolve()) if self.cert_path else None,
            "data_dir": str(self.store.data_dir),
            "admin_token": self.admin_token,
            "projects": [
                {"id": p.id, "name": p.name, "task_type": p.task_type,
                 "exclusive_labels": p.exclusive_labels,
                 "labels": [{"id": label.id, "name": label.name} for label in p.labels]}
                for p in self.store.list_projects()
            ],
        }
