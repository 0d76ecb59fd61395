"""`geti-bulk migrate` settings: two sides, each with its own host, token, TLS options
and dialect. Tokens come from the environment (`GETI_FROM_TOKEN`, `GETI_TO_TOKEN`) or a
token file per side, never from the command line (they would show in `ps`)."""

from __future__ import annotations

import tomllib
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
    skip_existing: bool = False           # adopt target items of the same name/ext/size
    subset: str | None = None             # Geti 3: the subset every moved annotation gets


SIDE_KEYS = {"host": str, "project": str, "dataset": str, "workspace": str,
             "token_file": str, "token": str, "ca_bundle": str, "insecure": bool,
             "dialect": str}


def read_sides(path: Path) -> dict[str, dict[str, object]]:
    """`[from]` and `[to]` of a TOML file, checked; errors name the key path."""
    try:
        data = tomllib.loads(path.expanduser().read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"config: cannot read {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config: {path} is not valid TOML: {e}") from None
    out: dict[str, dict[str, object]] = {}
    for which in ("from", "to"):
        table = data.get(which, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{which}: must be a table ([{which}])")
        for key, value in table.items():
            want = SIDE_KEYS.get(key)
            if want is None:
                raise ConfigError(f"{which} -> {key}: unknown key; known: "
                                  f"{', '.join(SIDE_KEYS)}")
            if not isinstance(value, want):
                raise ConfigError(f"{which} -> {key}: must be a {want.__name__}")
        out[which] = dict(table)
    return out


def side_token(env: Mapping[str, str], env_name: str, token_file: str | None,
               file_token_file: str | None = None, file_token: str | None = None,
               generic: str = "GETI_TOKEN") -> Secret:
    """--X-token-file, then GETI_X_TOKEN_FILE / GETI_X_TOKEN, then the config file's
    token_file / token, then GETI_TOKEN."""
    if token_file:
        return Secret(read_token_file(Path(token_file)))
    file_env = env.get(env_name + "_FILE")
    if file_env:
        return Secret(read_token_file(Path(file_env)))
    if env.get(env_name):
        return Secret(env[env_name])
    if file_token_file:
        return Secret(read_token_file(Path(file_token_file)))
    return Secret(file_token or env.get(generic, ""))


def build_side(*, host: str | None, project: str | None, env: Mapping[str, str], which: str,
               token_file: str | None = None, file_token_file: str | None = None,
               file_token: str | None = None, dataset: str | None = None,
               workspace: str | None = None, ca_bundle: str | None = None,
               insecure: bool = False, dialect: str | None = None) -> Side:
    up = which.upper()
    if not host:
        raise ConfigError(f"{which}: no host; pass --{which} URL (or host in the [{which}] "
                          "table of --config)")
    return Side(host=normalize_host(host), project=project,
                token=side_token(env, f"GETI_{up}_TOKEN", token_file, file_token_file,
                                 file_token),
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
