"""Flags, environment and a TOML file → one frozen `UploadConfig`.

Precedence: command-line flag > environment > config file > default. Errors name
the key path (`upload -> concurrency: must be at least 1`), as hatch does.
The token is read from `GETI_TOKEN`, a token file (plain or `.env` style) or the
config file, and is kept in a `Secret` that never prints.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geti_bulk.errors import ConfigError
from geti_bulk.geti.client import Secret, normalize_host
from geti_bulk.shard import Shard, parse_shard

# key path -> (type, default, env var; None: the name `env_name` derives)
KEYS: dict[str, tuple[type | tuple[type, ...], Any, str | None]] = {
    "target.host": (str, "", "GETI_HOST"),
    "target.token_file": (str, "", "GETI_TOKEN_FILE"),
    "target.workspace": (str, "", "GETI_WORKSPACE"),
    "target.project": (str, "", "GETI_PROJECT"),
    "target.dataset": (str, "", "GETI_DATASET"),
    "target.ca_bundle": (str, "", "GETI_CA_BUNDLE"),
    "target.insecure": (bool, False, None),
    "target.dialect": (str, "auto", "GETI_DIALECT"),
    "upload.labels": (str, "folders", None),
    "upload.include": (list, [], None),
    "upload.exclude": (list, [], None),
    "upload.follow_symlinks": (bool, False, None),
    "upload.include_hidden": (bool, False, None),
    "upload.concurrency": (int, 0, "GETI_BULK_CONCURRENCY"),
    "upload.adaptive": (bool, True, None),
    "upload.max_inflight_mb": (int, 256, None),
    "upload.max_attempts": (int, 8, None),
    "upload.skip_existing": (bool, False, None),
    "upload.reupload_changed": (bool, False, None),
    "upload.hash": (bool, False, None),
    "upload.journal": (str, "", "GETI_BULK_JOURNAL"),
    "upload.report": (str, "", None),
    "upload.chunk_kb": (int, 1024, None),
    "upload.format": (str, "auto", None),
    "upload.label_map": (list, [], None),
    "upload.skip_unknown_labels": (bool, False, None),
    "upload.subset_dataset": (list, [], None),
    "upload.keep_auto_training": (bool, False, None),
    "upload.max_outage": (str, "10m", None),
    "upload.shard": (str, "", "GETI_BULK_SHARD"),
    "output.progress": (str, "auto", None),
}
# upload.concurrency unset (0 inside) means: adaptive, a ceiling of 64 the delay and loss
# signals find the knee below (10 for Geti 3, whose writes go to one SQLite file: its UI
# sends 10 at most, GETI3_API.md §5); --fixed-concurrency, 8.
DEFAULT_CEILING = 64
GETI3_CEILING = 10
FIXED_DEFAULT = 8
FORMATS = ("auto", "coco", "yolo", "voc", "datumaro", "folders", "manifest")
CHOICES = {"upload.labels": ("folders", "none"), "upload.format": FORMATS,
           "target.dialect": ("auto", "geti2", "geti3"),
           "output.progress": ("auto", "rich", "plain", "json", "none")}
MINIMUM = {"upload.concurrency": 1, "upload.max_inflight_mb": 1, "upload.max_attempts": 1,
           "upload.chunk_kb": 16}


@dataclass(frozen=True, slots=True)
class UploadConfig:
    host: str
    project: str
    token: Secret = field(repr=False)
    sources: tuple[Path, ...] = ()
    manifests: tuple[Path, ...] = ()
    workspace: str | None = None
    dataset: str | None = None
    ca_bundle: str | None = None
    insecure: bool = False
    labels: str = "folders"
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    follow_symlinks: bool = False
    include_hidden: bool = False
    concurrency: int = FIXED_DEFAULT   # most uploads in flight (adaptive: the ceiling)
    adaptive: bool = True
    concurrency_auto: bool = False     # not set by the user: the dialect may lower it
    max_inflight_bytes: int = 256 << 20
    max_attempts: int = 8
    skip_existing: bool = False
    reupload_changed: bool = False
    hash_content: bool = False         # keep a sha256 per uploaded file in the journal
    journal: Path | None = None        # None: the default path for the target
    use_journal: bool = True
    report: Path | None = None
    chunk_size: int = 1 << 20
    dry_run: bool = False
    progress: str = "auto"
    verbose: bool = False
    quiet: bool = False
    format: str = "auto"               # see FORMATS; auto says what it found and why
    label_map: tuple[str, ...] = ()    # old=new pairs or files of them
    skip_unknown_labels: bool = False
    subset_dataset: tuple[tuple[str, str], ...] = ()   # (subset, dataset name or id)
    keep_auto_training: bool = False
    max_outage: float = 600.0          # seconds the server may stay unreachable
    dialect: str = "auto"              # auto | geti2 | geti3 (GETI3_API.md §10)
    shard: Shard | None = None         # --shard K/N (K 0-based): this run's part of the tree


def _subsets(values: list[str]) -> tuple[tuple[str, str], ...]:
    out = []
    for v in values:
        subset, sep, dataset = v.partition("=")
        if not sep or not subset.strip() or not dataset.strip():
            raise ConfigError(f"upload -> subset_dataset: {v!r}: expected SUBSET=DATASET, "
                              "e.g. val=\"Testing set\"")
        out.append((subset.strip().lower(), dataset.strip()))
    return tuple(out)


NO_TOKEN = ("token: no Geti token; set GETI_TOKEN, or pass --token-file FILE (or "
            "target.token_file in the config); Geti 3 needs none")


def parse_duration(text: str, where: str) -> float:
    """`90`, `90s`, `10m`, `1h` → seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(text))
    if not m:
        raise ConfigError(f"{where}: expected a duration like 90s, 10m or 1h, not {text!r}")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def read_toml(path: Path) -> dict[str, Any]:
    import tomllib  # only with a config file (~3 ms of import otherwise spent on every start)

    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"config: cannot read {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config: {path} is not valid TOML: {e}") from None
    flat: dict[str, Any] = {}
    sections = sorted({k.split(".", 1)[0] for k in KEYS})
    for section, values in data.items():
        if not isinstance(values, dict):
            raise ConfigError(f"{section}: expected a [{section}] table")
        if section not in sections:
            raise ConfigError(f"[{section}]: unknown section (known: {', '.join(sections)})")
        for k, v in values.items():
            key = f"{section}.{k}"
            if key == "target.token":
                flat[key] = v
                continue
            if key not in KEYS:
                known = ", ".join(sorted(x.split(".", 1)[1] for x in KEYS if x.startswith(section + ".")))
                raise ConfigError(f"{section} -> {k}: unknown key (known: {known or 'none'})")
            flat[key] = v
    return flat


def _check(key: str, value: Any) -> Any:
    typ = KEYS[key][0]
    where = key.replace(".", " -> ")
    if typ is bool and not isinstance(value, bool):
        raise ConfigError(f"{where}: must be true or false, not {value!r}")
    if typ is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{where}: must be a whole number, not {value!r}")
    if typ is str and not isinstance(value, str):
        raise ConfigError(f"{where}: must be a string, not {value!r}")
    if typ is list:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
            raise ConfigError(f"{where}: must be a list of strings")
    if key in MINIMUM and value < MINIMUM[key]:
        raise ConfigError(f"{where}: must be at least {MINIMUM[key]}, not {value}")
    if key in CHOICES and value not in CHOICES[key]:
        raise ConfigError(f"{where}: must be one of {', '.join(CHOICES[key])}, not {value!r}")
    return value


ENV_RULE = ("every config key has an environment variable: target.NAME is GETI_NAME "
            "(GETI_HOST, GETI_PROJECT …), upload.NAME and output.NAME are GETI_BULK_NAME "
            "(GETI_BULK_MAX_OUTAGE=30m, GETI_BULK_FOLLOW_SYMLINKS=1); switches take 1/0, "
            "true/false or yes/no, lists take items separated by ';'. A flag wins over "
            "the environment, which wins over --config")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def env_name(key: str) -> str:
    """The environment variable of a config key (see `ENV_RULE`)."""
    explicit = KEYS[key][2]
    if explicit:
        return explicit
    section, name = key.split(".", 1)
    prefix = "GETI_" if section == "target" else "GETI_BULK_"
    return prefix + name.upper()


def _env_value(key: str, raw: str) -> Any:
    typ = KEYS[key][0]
    if typ is int:
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{env_name(key)}: must be a whole number, not {raw!r}") from None
    if typ is bool:
        word = raw.strip().lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
        raise ConfigError(f"{env_name(key)}: must be 1/0, true/false or yes/no, not {raw!r}")
    if typ is list:
        return [x.strip() for x in raw.split(";") if x.strip()]
    return raw


def read_token_file(path: Path) -> str:
    """A file holding the token alone, or `.env` style with `GETI_TOKEN=...`."""
    try:
        text = path.expanduser().read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"token file: cannot read {path}: {e.strerror}") from None
    for line in text.splitlines():
        m = re.match(r"\s*(?:export\s+)?GETI_TOKEN\s*=\s*['\"]?([^'\"\s]+)", line)
        if m:
            return m.group(1)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    if len(lines) == 1 and "=" not in lines[0]:
        return lines[0]
    raise ConfigError(f"token file: {path} holds neither a bare token nor a GETI_TOKEN= line")


def resolve(flags: Mapping[str, Any], env: Mapping[str, str], config_file: Path | None) -> dict[str, Any]:
    """Merge the layers into one flat dict of checked values (plus `token`)."""
    file_values = read_toml(config_file) if config_file else {}
    out: dict[str, Any] = {}
    defaulted: set[str] = set()
    for key, (_typ, default, _env) in KEYS.items():
        var = env_name(key)
        if flags.get(key) is not None:
            value = flags[key]
        elif env.get(var):
            value = _env_value(key, env[var])
        elif key in file_values:
            value = file_values[key]
        else:
            out[key] = default      # (upload.concurrency's 0: not set, see DEFAULT_CEILING)
            defaulted.add(key)
            continue
        out[key] = _check(key, value)
    out["defaulted"] = defaulted
    token = flags.get("target.token") or env.get("GETI_TOKEN", "")
    if not token and out["target.token_file"]:
        token = read_token_file(Path(out["target.token_file"]))
    if not token and file_values.get("target.token"):
        token = str(file_values["target.token"])
    out["token"] = token
    return out


def build(flags: Mapping[str, Any], env: Mapping[str, str] | None = None,
          config_file: Path | None = None, *, sources: tuple[Path, ...] = (),
          manifests: tuple[Path, ...] = (), dry_run: bool = False, verbose: bool = False,
          quiet: bool = False, use_journal: bool = True) -> UploadConfig:
    v = resolve(flags, os.environ if env is None else env, config_file)
    if not v["token"] and v["target.dialect"] == "geti2":
        raise ConfigError(NO_TOKEN)
    if not v["target.project"]:
        raise ConfigError("project: name the project with --project, GETI_PROJECT or "
                          "target.project in the config")
    if not sources and not manifests:
        raise ConfigError("sources: give at least one folder or file, or --manifest FILE")
    for s in sources:
        if not s.exists() and not s.is_symlink():
            raise ConfigError(f"sources: {s} does not exist")
    for m in manifests:
        if not m.is_file():
            raise ConfigError(f"manifest: {m} is not a readable file")

    shard = parse_shard(v["upload.shard"])
    concurrency = v["upload.concurrency"] or (
        DEFAULT_CEILING if v["upload.adaptive"] else FIXED_DEFAULT)
    if shard is not None and not v["upload.concurrency"]:
        concurrency = shard_concurrency(concurrency, shard.count)
    try:
        host = normalize_host(v["target.host"])
    except ValueError as e:    # `http://[::1`: not a URL at all
        raise ConfigError(f"host: invalid URL {v['target.host']!r} ({e})") from None
    ca = v["target.ca_bundle"] or None
    if ca and not Path(ca).is_file():
        raise ConfigError(f"target -> ca_bundle: {ca} is not a file")
    return UploadConfig(
        host=host, project=v["target.project"],
        token=Secret(v["token"]), sources=sources, manifests=manifests,
        workspace=v["target.workspace"] or None, dataset=v["target.dataset"] or None,
        ca_bundle=ca, insecure=v["target.insecure"], labels=v["upload.labels"],
        include=tuple(v["upload.include"]), exclude=tuple(v["upload.exclude"]),
        follow_symlinks=v["upload.follow_symlinks"], include_hidden=v["upload.include_hidden"],
        concurrency=concurrency,
        concurrency_auto=not v["upload.concurrency"], adaptive=v["upload.adaptive"],
        max_inflight_bytes=v["upload.max_inflight_mb"] << 20,
        max_attempts=v["upload.max_attempts"], skip_existing=v["upload.skip_existing"],
        reupload_changed=v["upload.reupload_changed"], hash_content=v["upload.hash"],
        journal=Path(v["upload.journal"]).expanduser() if v["upload.journal"] else None,
        use_journal=use_journal,
        report=Path(v["upload.report"]).expanduser() if v["upload.report"] else None,
        chunk_size=v["upload.chunk_kb"] << 10, dry_run=dry_run,
        progress=v["output.progress"], verbose=verbose, quiet=quiet,
        format=v["upload.format"], label_map=tuple(v["upload.label_map"]),
        skip_unknown_labels=v["upload.skip_unknown_labels"],
        subset_dataset=_subsets(v["upload.subset_dataset"]),
        keep_auto_training=v["upload.keep_auto_training"],
        max_outage=parse_duration(v["upload.max_outage"], "upload -> max_outage"),
        dialect=v["target.dialect"], shard=shard)


def shard_concurrency(default: int, shards: int) -> int:
    """The default ceiling of one of N shards: N runs against one server together have
    the ceiling one run would have (64 adaptive, 8 fixed, 10 on Geti 3), never below 2 each.
    An explicit --concurrency (flag, env or file) is taken as it is."""
    return max(2, -(-default // shards))
