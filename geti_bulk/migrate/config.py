"""`geti-bulk migrate` settings: two sides, each with its own host, token, TLS options
and dialect. Tokens come from the environment (`GETI_FROM_TOKEN`, `GETI_TO_TOKEN`) or a
token file per side, never from the command line (they would show in `ps`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from geti_bulk.config import parse_duration, read_token_file
from geti_bulk.errors import ConfigError
from geti_bulk.geti.client import Secret, normalize_host


@dataclass(frozen=True, slots=True)
class Side:
    host: str
    project: str | None
    token: Secret = field(repr=False)
    dataset: str | None = None
    workspace: str | None = None
    ca_bundle: str | None = None
    insecure: bool = False
    dialect: str = "auto"


@dataclass(frozen=True, slots=True)
class MigrateConfig:
    source: Side
    target: Side
    create_project: str | None = None     # name of the project to create on the target
    label_map: tuple[str, ...] = ()
    skip_unknown_labels: bool = False
    conversions: frozenset[str] = frozenset()
    concurrency: int = 8
    max_attempts: int = 8
    max_outage: float = 600.0
    journal: Path | None = None
    use_journal: bool = True
    report: Path | None = None
    hash_content: bool = True             # keep each item's sha256 (of the bytes moved)
    progress: str = "auto"
    verbose: bool = False
    quiet: bool = False
    dry_run: bool = False


def side_token(env: Mapping[str, str], env_name: str, token_file: str | None,
               generic: str = "GETI_TOKEN") -> Secret:
    if token_file:
        return Secret(read_token_file(Path(token_file)))
    file_env = env.get(env_name + "_FILE")
    if file_env:
        return Secret(read_token_file(Path(file_env)))
    return Secret(env.get(env_name) or env.get(generic, ""))


def build_side(*, host: str | None, project: str | None, env: Mapping[str, str], which: str,
               token_file: str | None = None, dataset: str | None = None,
               workspace: str | None = None, ca_bundle: str | None = None,
               insecure: bool = False, dialect: str | None = None) -> Side:
    up = which.upper()
    if not host:
        raise ConfigError(f"{which}: no host; pass --{which} URL")
    return Side(host=normalize_host(host), project=project,
                token=side_token(env, f"GETI_{up}_TOKEN", token_file),
                dataset=dataset or None, workspace=workspace or None,
                ca_bundle=ca_bundle or None, insecure=bool(insecure),
                dialect=dialect or "auto")


def check(cfg: MigrateConfig) -> MigrateConfig:
    if cfg.concurrency < 1:
        raise ConfigError("migrate -> concurrency: must be at least 1")
    if cfg.max_attempts < 1:
        raise ConfigError("migrate -> max_attempts: must be at least 1")
    if not cfg.source.project:
        raise ConfigError("from: name the source project with --from-project")
    if not cfg.target.project and not cfg.create_project:
        raise ConfigError("to: name the target project with --to-project, or pass "
                          "--create-project [NAME]")
    if cfg.target.project and cfg.create_project:
        raise ConfigError("to: --to-project and --create-project exclude each other")
    return cfg


__all__ = ["MigrateConfig", "Side", "build_side", "check", "parse_duration"]
