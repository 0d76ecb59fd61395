"""``LocalGeti``: start/stop the server in the running event loop."""

from __future__ import annotations

import secrets
import ssl
from types import TracebackType
from typing import Any

from aiohttp import web

from .app import build_app
from .auth import AuthRules
from .config import ServerConfig, ServerState
from .configuration import Configurations
from .faults import ANNOTATION_KINDS, DOWNLOAD_KINDS, FaultInjector
from .overload import UploadService
from .seed import IdFactory, World, build_world, load_seed_file
from .store import Store


class LocalGeti:
    """A Geti 2.x-compatible server on a local port (see ``ServerConfig``)."""

    def __init__(self, config: ServerConfig) -> None:
        if not config.token.strip():
            raise ValueError("the server needs a non-empty token")
        self.config = config
        specs = load_seed_file(config.seed_file) if config.seed_file else None
        self.world: World = build_world(config.seed, specs)
        self.store = Store(config.data_dir)
        self.admin_token = config.admin_token or secrets.token_urlsafe(24)
        faults = FaultInjector(config.faults, config.seed)
        service = UploadService(max_inflight=config.max_inflight, mode=config.overload,
                                restart_ms=config.restart_ms, workers=config.workers,
                                service_ms=config.service_ms, faults=faults)
        self._state = ServerState(
            config=config,
            world=self.world,
            store=self.store,
            faults=faults,
            service=service,
            admin_token=self.admin_token,
            media_ids=IdFactory(config.seed, "media"),
            auth_rules=AuthRules(config.token, self.world.organization_id),
            annotation_faults=FaultInjector(config.annotation_faults, config.seed,
                                            kinds=ANNOTATION_KINDS, stream="annotation-faults"),
            configurations=Configurations(self.store.connection),
            scene_ids=IdFactory(config.seed, "scenes"),
            annotation_ids=IdFactory(config.seed, "annotations"),
            download_faults=FaultInjector(config.download_faults, config.seed,
                                          kinds=DOWNLOAD_KINDS, stream="downloads"),
        )
        self._runner: web.AppRunner | None = None
        self.base_url = ""
        self.info: dict[str, Any] = {}
        self.token_file: str | None = None  # set by the CLI when it wrote/read one

    @property
    def state(self) -> ServerState:
        return self._state

    async def start(self) -> None:
        """Bind and serve; afterwards ``base_url`` and ``info`` are known."""
        ssl_context = self._ssl_context()
        runner = web.AppRunner(build_app(self._state), handle_signals=False, access_log=None)
        await runner.setup()
        site = web.TCPSite(
            runner, self.config.host, self.config.port, ssl_context=ssl_context, backlog=512
        )
        await site.start()
        self._runner = runner
        host, port = runner.addresses[0][:2]
        if ":" in host:
            host = f"[{host}]"
        scheme = "https" if ssl_context else "http"
        self.base_url = f"{scheme}://{host}:{port}"
        self.info = self._describe()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.store.close()

    async def __aenter__(self) -> LocalGeti:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def set_faults(self, spec: str = "", script: list[str] | None = None) -> None:
        """Replace the fault spec and queue a script (consumed first, one per upload)."""
        self._state.faults.configure(spec, script)

    def set_download_faults(self, spec: str = "", script: list[str] | None = None) -> None:
        """Faults of media downloads (``display/full``, ``display/stream``): the gateway
        kinds, ``slow``, and ``reset`` (half the bytes, then the connection drops)."""
        self._state.download_faults.configure(spec, script)

    def set_annotation_faults(self, spec: str = "", script: list[str] | None = None) -> None:
        """The same for annotation POSTs (image and video frame); kinds as for uploads
        but ``crash``: ``stored500`` stores the scene, then answers 500."""
        self._state.annotation_faults.configure(spec, script)

    def _ssl_context(self) -> ssl.SSLContext | None:
        if not self.config.tls_cert:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.config.tls_cert, self.config.tls_key)
        return context

    def _describe(self) -> dict[str, Any]:
        world = self.world
        return {
            "base_url": self.base_url,
            "organization_id": world.organization_id,
            "workspace_id": world.workspace_id,
            "workspace_name": world.workspace_name,
            "token_file": self.token_file,
            "admin_token": self.admin_token,
            "data_dir": str(self.store.data_dir),
            "projects": [
                {
                    "id": p.id,
                    "name": p.name,
                    "task_type": p.task_type,
                    "datasets": [
                        {"id": d.id, "name": d.name, "use_for_training": d.use_for_training}
                        for d in p.datasets
                    ],
                    "labels": [
                        {"id": label.id, "name": label.name, "group": label.group,
                         "is_empty": label.is_empty, "is_anomalous": label.is_anomalous}
                        for label in p.labels
                    ],
                }
                for p in world.projects
            ],
        }
