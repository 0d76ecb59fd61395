"""The library API under the CLI: `geti_bulk.upload(...)`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from geti_bulk.events import RecordingReporter, Reporter


def upload(paths: list[str | Path] | tuple[str | Path, ...] = (), *, project: str, host: str,
           token: str, manifests: tuple[str | Path, ...] = (), reporter: Reporter | None = None,
           **options: Any) -> Any:
    """Upload `paths` into `project` on `host`; returns a `RunResult`.

    `options` take the config keys without their section: `dataset`, `workspace`,
    `labels`, `concurrency`, `journal`, `report`, `ca_bundle`, `insecure`,
    `skip_existing`, `include`, `exclude`, ... (see config.example.toml).
    """
    from geti_bulk import config
    from geti_bulk.pipeline import Run
    from geti_bulk.scan import check_manifests

    flags: dict[str, Any] = {"target.host": host, "target.project": project, "target.token": token}
    for key, value in options.items():
        if key in ("dry_run", "use_journal"):
            continue
        full = next((k for k in config.KEYS if k.split(".", 1)[1] == key), None)
        if full is None:
            raise TypeError(f"upload() got an unknown option {key!r}")
        flags[full] = value
    cfg = config.build(flags, env={}, sources=tuple(Path(p) for p in paths),
                       manifests=tuple(Path(m) for m in manifests),
                       dry_run=bool(options.get("dry_run", False)),
                       use_journal=bool(options.get("use_journal", True)))
    check_manifests(cfg.manifests)
    return asyncio.run(Run(cfg, reporter or RecordingReporter()).execute())
