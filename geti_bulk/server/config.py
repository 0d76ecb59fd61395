"""Configuration and shared runtime state of the local Geti server."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from .auth import AuthRules
from .configuration import Configurations
from .faults import DOWNLOAD_KINDS, FaultInjector
from .overload import UploadService
from .seed import IdFactory, World
from .store import Store


@dataclass(frozen=True)
class ServerConfig:
    """How to run a ``LocalGeti``. ``token`` is the one valid personal access token."""

    data_dir: Path
    token: str = field(repr=False)
    host: str = "127.0.0.1"
    port: int = 0  # 0 = pick a free port
    admin_token: str | None = field(default=None, repr=False)  # generated if None
    faults: str = ""  # fault spec, see ``faults.py``
    annotation_faults: str = ""  # the same, for annotation POSTs (no ``crash``)
    download_faults: str = ""  # for media downloads (display/full, display/stream), see media.py
    latency_ms: int = 0  # added before answering every API request
    seed: int = 0  # seeds ids and the fault RNG
    max_inflight: int = 0  # uploads the service can hold at once (0 = no limit), see overload.py
    overload: str = "oom"  # past max_inflight: "oom" (the service dies, restarts) or "refuse"
    restart_ms: int = 2000  # oom: how long the service stays down
    workers: int = 0  # uploads processed at once, the others wait in memory (0 = no limit)
    service_ms: int = 0  # simulated processing time per upload, holding a worker
    decode_ns_per_pixel: float = 0.0  # more processing time per image pixel (a decoder's cost)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    seed_file: Path | None = None  # JSON projects instead of the defaults (see seed.py)
    discard: bool = False  # benchmark mode: hash the bytes, keep only a head for probing
    max_upload_bytes: int = int(4.7 * 1024**3)
    disk_full: bool = False  # every upload answers 507 not_enough_space
    decode_images: bool = True
    slow_ms: int = 2000  # delay of the "slow" fault


@dataclass
class ServerState:
    """Everything the handlers share; lives in the aiohttp app under ``STATE``."""

    config: ServerConfig
    world: World
    store: Store
    faults: FaultInjector
    admin_token: str
    media_ids: IdFactory
    auth_rules: AuthRules
    service: UploadService
    annotation_faults: FaultInjector
    configurations: Configurations
    scene_ids: IdFactory
    annotation_ids: IdFactory
    uploads_received: int = 0
    annotation_posts: int = 0
    requests: int = 0
    download_faults: FaultInjector = field(
        default_factory=lambda: FaultInjector(kinds=DOWNLOAD_KINDS, stream="downloads"))
    first_request_at: float | None = None  # wall clock of the first API request's arrival
    first_upload_at: float | None = None  # ... and of the first upload's (start-up time)


STATE: web.AppKey[ServerState] = web.AppKey("geti_bulk_state", ServerState)
