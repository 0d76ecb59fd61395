"""The `migrate` subcommand's options and its two commands (move, and `--verify`)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geti_bulk.migrate.conversions import CONVERSIONS

if TYPE_CHECKING:
    from geti_bulk.migrate.config import MigrateConfig
    from geti_bulk.pipeline import RunResult


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "migrate", help="move a Geti project (media and annotations) into another Geti",
        description="Move every image and video of a Geti project, with its latest "
                    "annotation, into a project on another Geti (Geti 2 → Geti 3 is the "
                    "main case), item by item, exactly once: rerun the same command to "
                    "resume. Tokens: GETI_FROM_TOKEN and GETI_TO_TOKEN (or *_FILE, or "
                    "--from-token-file/--to-token-file); Geti 3 needs none.")
    g = p.add_argument_group("source")
    g.add_argument("--from", dest="from_host", metavar="URL",
                   help="the source Geti's URL (or [from] host in --config)")
    g.add_argument("--from-project", metavar="NAME_OR_ID")
    g.add_argument("--from-dataset", metavar="NAME_OR_ID",
                   help="Geti 2: the dataset to move (default: the training dataset)")
    g.add_argument("--from-workspace", metavar="NAME_OR_ID")
    g.add_argument("--from-token-file", metavar="FILE",
                   help="file holding the source's token [env GETI_FROM_TOKEN_FILE; or the "
                        "token itself in GETI_FROM_TOKEN]")
    g.add_argument("--from-ca-bundle", metavar="PEM")
    g.add_argument("--from-insecure", action="store_true", default=None,
                   help="do not verify the source's TLS certificate")
    g.add_argument("--from-dialect", choices=["auto", "geti2", "geti3"])
    g = p.add_argument_group("target")
    g.add_argument("--to", dest="to_host", metavar="URL")
    t = g.add_mutually_exclusive_group()
    t.add_argument("--to-project", metavar="NAME_OR_ID")
    t.add_argument("--create-project", nargs="?", const="", metavar="NAME",
                   help="create the target project (Geti 3) with the source's task type and "
                        "labels (default name: the source project's); a rerun finds it")
    g.add_argument("--to-workspace", metavar="NAME_OR_ID")
    g.add_argument("--to-dataset", metavar="NAME_OR_ID")
    g.add_argument("--to-token-file", metavar="FILE",
                   help="[env GETI_TO_TOKEN_FILE; or the token itself in GETI_TO_TOKEN]")
    g.add_argument("--to-ca-bundle", metavar="PEM")
    g.add_argument("--to-insecure", action="store_true", default=None)
    g.add_argument("--to-dialect", choices=["auto", "geti2", "geti3"])
    p.add_argument("--config", type=Path, metavar="TOML",
                   help="a file with [from] and [to] tables (host, project, dataset, "
                        "workspace, token_file or token, ca_bundle, insecure, dialect); "
                        "flags win over it, GETI_FROM_TOKEN/GETI_TO_TOKEN over its tokens")
    g = p.add_argument_group("what")
    g.add_argument("--label-map", action="append", default=[],
                   help="OLD=NEW renames a source label to a target label (empty NEW drops "
                        "it), or a FILE of such lines; may repeat")
    g.add_argument("--skip-unknown-labels", action="store_true")
    g.add_argument("--convert", action="append", default=[], choices=sorted(CONVERSIONS),
                   help="allow a documented conversion of what Geti 3 cannot hold: "
                        + "; ".join(f"{k}: {v}" for k, v in CONVERSIONS.items()))
    g = p.add_argument_group("how")
    g.add_argument("--concurrency", type=int, default=8)
    g.add_argument("--max-attempts", type=int, default=8)
    g.add_argument("--max-outage", default="10m", metavar="DURATION")
    g.add_argument("--journal", type=Path)
    g.add_argument("--report", type=Path)
    g.add_argument("--subset", choices=["training", "validation", "testing"],
                   help="Geti 3 target: the subset each moved item's annotation assigns "
                        "(e.g. a Geti 2 project's second dataset as testing)")
    g.add_argument("--skip-existing", action="store_true",
                   help="an item already on the target (same name, extension and size, not "
                        "claimed by another) is not sent again; its annotation is checked and "
                        "posted if it differs (for a migration whose journal was lost)")
    g.add_argument("--dry-run", action="store_true",
                   help="resolve both sides, plan labels and conversions, send nothing")
    g.add_argument("--verify", action="store_true",
                   help="send nothing: compare the two projects (every source item on the "
                        "target exactly once, annotations within 1 px)")
    g.add_argument("--sha256", action="store_true",
                   help="with --verify: also download both sides and compare their bytes")
    g = p.add_argument_group("output")
    g.add_argument("--progress", choices=["auto", "rich", "plain", "json", "none"],
                   default="auto")
    g.add_argument("-q", "--quiet", action="store_true")
    g.add_argument("-v", "--verbose", action="store_true")


def build_config(a: argparse.Namespace) -> MigrateConfig:
    from geti_bulk.config import parse_duration
    from geti_bulk.migrate.config import MigrateConfig, build_side, check, read_sides

    env = os.environ
    file = read_sides(a.config) if a.config else {"from": {}, "to": {}}
    sides = [build_side(env=env, which=which, token_file=getattr(a, f"{which}_token_file"),
                        **_side_values(a, which, file[which]))
             for which in ("from", "to")]
    source, target = sides
    create = a.create_project
    if create == "":
        create = source.project
    return check(MigrateConfig(
        source=source, target=target, create_project=create,
        label_map=tuple(a.label_map), skip_unknown_labels=a.skip_unknown_labels,
        conversions=frozenset(a.convert), concurrency=a.concurrency,
        max_attempts=a.max_attempts, max_outage=parse_duration(a.max_outage, "max_outage"),
        journal=a.journal, report=a.report, progress=a.progress, verbose=a.verbose,
        quiet=a.quiet, dry_run=a.dry_run, skip_existing=a.skip_existing,
        subset=a.subset))


def _side_values(a: argparse.Namespace, which: str,
                 file: dict[str, object]) -> dict[str, Any]:
    """One side's settings: the flag when given, else the config file's value."""
    def pick(key: str) -> Any:
        value = getattr(a, f"{which}_{key}", None)
        return value if value is not None else file.get(key)

    return {"host": pick("host"), "project": pick("project"), "dataset": pick("dataset"),
            "workspace": pick("workspace"), "ca_bundle": pick("ca_bundle"),
            "insecure": bool(pick("insecure")), "dialect": pick("dialect"),
            "file_token_file": file.get("token_file"), "file_token": file.get("token")}


def cmd_migrate(a: argparse.Namespace, tell: Callable[[RunResult], None] | None = None) -> int:
    """`tell` prints the run's last words on stderr as upload's do (the CLI's `_tell`)."""
    cfg = build_config(a)
    for side, name in ((cfg.source, "from"), (cfg.target, "to")):
        if side.insecure:
            print(f"geti-bulk: warning: TLS certificate verification is off for {side.host} "
                  f"(--{name}-insecure)", file=sys.stderr)
    if a.verify:
        return _verify(cfg, a)
    from geti_bulk.display import make_reporter
    from geti_bulk.migrate.run import Migration

    reporter = make_reporter(cfg.progress, stream=sys.stdout, verbose=cfg.verbose,
                             quiet=cfg.quiet)
    run = Migration(cfg, reporter)
    reporter.start()
    try:
        result = asyncio.run(run.execute(handle_signals=True))
    finally:
        reporter.stop()
    if tell is not None:
        tell(result)
    elif result.fatal:
        print(f"geti-bulk: error: {result.fatal}", file=sys.stderr)
    return int(result.exit_code)


def _verify(cfg: MigrateConfig, a: argparse.Namespace) -> int:
    from geti_bulk.migrate.verify import verify_migration

    now = time.time()
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    report = a.report or Path(f"geti-bulk-verify-migrate-{stamp}-{os.getpid()}.jsonl")
    result = asyncio.run(verify_migration(cfg, report, sha256=a.sha256))
    for line in result.problems[:50]:
        print(f"  {line}")
    print(result.summary())
    print(f"report: {report}")
    return int(result.exit_code)
