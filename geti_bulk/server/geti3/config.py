"""Configuration of the local Geti 3 server (GETI3_API.md §1, §5, §6)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

GETI3_VERSION = "3.2.0"  # GETI3_API.md §1: "Geti Desktop 3.2.0" (issue #7614)
UPLOAD_MAX_SIZE = 53_687_091_200  # §6: UPLOAD_MAX_SIZE default, 50 GiB
UPLOAD_TTL_S = 24 * 3600  # §6: UPLOAD_TTL_HOURS default 24 h
UPLOAD_GC_S = 15 * 60  # §6: expired/consumed uploads collected every 15 min


@dataclass(frozen=True)
class Geti3Config:
    """How to run a ``LocalGeti3``. There is no token: Geti 3 has no authentication (§2)."""

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 0  # 0 = pick a free port (the real default is 7860, §1)
    admin_token: str | None = field(default=None, repr=False)  # generated if None
    faults: str = ""  # kind=probability list, see ``faults.py``
    locked_writers: int = 10  # writes in flight beyond this get "database is locked" (0 = off)
    locked_ms: int = 30_000  # §5: SQLite lock timeout of 30 s before the 500
    latency_ms: int = 0  # added before answering every API request
    write_ms: int = 0  # each commit holds SQLite's one writer this long (writes queue for it)
    slow_ms: int = 2000  # delay of the "slow" fault
    seed: int = 0  # seeds the ids of the seeded projects and the fault generator
    plain_http: bool = False  # benchmarks only; real Geti 3 always serves HTTPS (§1)
    tls_cert: Path | None = None  # given cert/key; otherwise a self-signed pair in data_dir
    tls_key: Path | None = None
    spa: bool = True  # serve the UI's index.html for unknown GETs, as the Docker image does (§3)
    seed_projects: bool = True  # create the four default projects on first start
    upload_max_size: int = UPLOAD_MAX_SIZE
    upload_ttl_s: float = UPLOAD_TTL_S
    upload_gc_s: float = UPLOAD_GC_S
    version: str = GETI3_VERSION
