"""The `geti-bulk` command line: parsing, precedence, reporter choice, exit codes.

Exit codes: 0 all uploaded or skipped, 1 some file failed, 2 usage or configuration
error, 3 the run was stopped by a fatal error, 130 interrupted (Ctrl-C).
This is the only module with a broad `except`: nothing reaches the user as a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from geti_bulk import __version__
from geti_bulk.errors import ConfigError, GetiBulkError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_FATAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def _add_target_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("target")
    g.add_argument("--host", help="Geti server URL, e.g. https://geti.example.com [env GETI_HOST]")
    g.add_argument("--project", help="project name or id [env GETI_PROJECT]")
    g.add_argument("--dataset", help="dataset name or id (default: the training dataset) [env GETI_DATASET]")
    g.add_argument("--workspace", help="workspace name or id (default: the only one) [env GETI_WORKSPACE]")
    g.add_argument("--token-file", help="file holding the token, bare or as GETI_TOKEN=... "
                                        "[env GETI_TOKEN_FILE; or the token itself in GETI_TOKEN]")
    g.add_argument("--token", help=argparse.SUPPRESS)  # works, but warns: visible in `ps`
    g.add_argument("--ca-bundle", help="PEM file of CAs to trust instead of certifi's [env GETI_CA_BUNDLE]")
    g.add_argument("--insecure", action="store_true", default=None,
                   help="do not verify the server's TLS certificate (prints a warning)")
    g.add_argument("--dialect", choices=["auto", "geti2", "geti3"],
                   help="which Geti: auto (the default) asks GET /api/openapi.json; Geti 3 "
                        "needs no token [env GETI_DIALECT]")
    g.add_argument("--config", type=Path, help="TOML config file (see config.example.toml)")


def _add_source_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("what to upload")
    g.add_argument("--manifest", action="append", type=Path, default=[],
                   help="CSV (path,labels) or JSON-lines manifest; may repeat")
    g.add_argument("--labels", choices=["folders", "none"],
                   help="labels from folder names (root/<label>/file.jpg, optionally under "
                        "train|val|test), or none (default: folders)")
    g.add_argument("--format", choices=["auto", "coco", "yolo", "voc", "datumaro", "folders",
                                        "manifest"],
                   help="dataset layout: COCO instances JSON, YOLO (Ultralytics images/ + "
                        "labels/), Pascal VOC XML, Datumaro JSON, classification folders "
                        "(label/file.jpg) or --manifest; auto (the default) says what it "
                        "found and why")
    g.add_argument("--label-map", action="append",
                   help="OLD=NEW renames a dataset category to a project label (NEW may "
                        "list several, comma-separated, e.g. the detection and the class "
                        "label of a task chain; empty drops it), or a FILE of such lines; "
                        "may repeat")
    g.add_argument("--skip-unknown-labels", action="store_true", default=None,
                   help="drop (and count) objects whose category matches no project label, "
                        "instead of stopping before anything is sent")
    g.add_argument("--subset-dataset", action="append", metavar="SUBSET=DATASET",
                   help="send a subset (train/val/test folder, COCO file, YOLO split) to "
                        "another dataset of the project, e.g. val=\"Testing set\"; may repeat")
    g.add_argument("--keep-auto-training", action="store_true", default=None,
                   help="leave the project's auto-training on while annotations are posted "
                        "(by default it is switched off and restored at the end)")
    g.add_argument("--include", action="append", help="only files matching this glob; may repeat")
    g.add_argument("--exclude", action="append", help="skip files matching this glob; may repeat")
    g.add_argument("--follow-symlinks", action="store_true", default=None)
    g.add_argument("--include-hidden", action="store_true", default=None,
                   help="also upload dot-files and dot-folders")
    g.add_argument("--skip-existing", action="store_true", default=None,
                   help="skip files already in the dataset (same name, extension and size)")
    g.add_argument("--reupload-changed", action="store_true", default=None,
                   help="upload files that changed since the journal saw them uploaded")
    g.add_argument("--hash", action="store_true", default=None,
                   help="keep a sha256 of each uploaded file in the journal, so a file whose "
                        "mtime changed but whose content did not is not uploaded again")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="geti-bulk",
        description="Fast, resumable, exactly-once bulk uploads of images and videos to Intel Geti.")
    parser.add_argument("--version", action="version", version=f"geti-bulk {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    up = sub.add_parser("upload", help="upload folders or a manifest into a Geti dataset",
                        description="Upload every supported image and video under PATH... "
                                    "Rerun the same command to resume.")
    up.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="folders or files")
    _add_target_options(up)
    _add_source_options(up)
    g = up.add_argument_group("how")
    g.add_argument("--concurrency", type=int,
                   help="most uploads in flight: the ceiling the adaptive level stays under "
                        "(default 64; 10 for Geti 3; 8 with --fixed-concurrency) "
                        "[env GETI_BULK_CONCURRENCY]")
    g.add_argument("--fixed-concurrency", action="store_true",
                   help="do not adapt concurrency to the server's answers")
    g.add_argument("--max-inflight-mb", type=int,
                   help="budget of server memory in flight, MiB (default 256): an upload "
                        "weighs its size or, for an image, width x height x 3 if larger")
    g.add_argument("--max-attempts", type=int,
                   help="failed tries per file before it fails (default 8)")
    g.add_argument("--max-outage", metavar="DURATION",
                   help="how long the server may be unreachable (or answer only gateway "
                        "errors) before the run stops; meanwhile uploads wait and files keep "
                        "their tries (default 10m; e.g. 90s, 1h)")
    g.add_argument("--journal", help="journal file (default: one per host/project/dataset "
                                     "under $XDG_STATE_HOME/geti-bulk) [env GETI_BULK_JOURNAL]")
    g.add_argument("--no-journal", action="store_true", help="do not keep a journal (no resume)")
    g.add_argument("--report", help="JSON-lines report of every file (default: next to the "
                                    "journal; with --no-journal, in the current folder)")
    g.add_argument("--dry-run", action="store_true",
                   help="resolve the target, check labels and files, send no media")
    g = up.add_argument_group("output")
    g.add_argument("--progress", choices=["auto", "rich", "plain", "json", "none"],
                   help="auto: rich on a terminal, plain lines otherwise")
    g.add_argument("--json", action="store_true", help="JSON-lines events on stdout (= --progress json)")
    g.add_argument("-q", "--quiet", action="store_true", help="only failures and the summary")
    g.add_argument("-v", "--verbose", action="store_true", help="also show retries")

    ve = sub.add_parser(
        "verify", help="check that a Geti dataset holds a source dataset, once and right",
        description="Compare a source dataset with the Geti dataset: every file stored "
                    "exactly once (name, extension, size) and its latest annotation equal "
                    "to what upload would post, within 1 px. Sends nothing. Exit 0 only "
                    "when everything matches; one JSON line per file in the report.")
    ve.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="folders or files")
    _add_target_options(ve)
    _add_source_options(ve)
    ve.add_argument("--concurrency", type=int, help="requests in flight (default 8)")
    ve.add_argument("--report", help="JSON-lines report (default: geti-bulk-verify-<time>.jsonl)")
    ve.add_argument("--progress", choices=["auto", "rich", "plain", "json", "none"],
                    default="none", help=argparse.SUPPRESS)

    st = sub.add_parser("status", help="show a journal's counts and failures",
                        description="Show what a journal holds: files uploaded, skipped, "
                                    "failed and still marked sending, and the failures.")
    st.add_argument("journal", type=Path, nargs="?", help="journal file")
    st.add_argument("--all", action="store_true", help="list every journal under the state folder")

    sub.add_parser("serve", help="run the Geti-compatible local server (see `serve --help`)",
                   add_help=False)
    demo = sub.add_parser("demo", help="start the local server, make a labelled dataset and upload it",
                          description="Start the local Geti server in this process, generate "
                                      "a labelled dataset of real images, upload it with the "
                                      "live display, and verify every stored byte.")
    demo.add_argument("--files", type=int, default=300,
                      help="how many images (default 300), plus one large PNG per label")
    demo.add_argument("--faults", default="503=0.05,stored500=0.02,reset=0.02",
                      help="faults the local server injects (default shows retries)")
    demo.add_argument("--latency-ms", type=int, default=40,
                      help="delay the local server adds to every request (default 40)")
    demo.add_argument("--progress", choices=["auto", "rich", "plain", "json", "none"], default="auto")
    demo.add_argument("--task", choices=["classification", "detection"], default="classification",
                      help="classification: labelled folders (labels at upload); detection: a "
                           "generated COCO dataset whose boxes are posted after each image, "
                           "then read back and verified")
    demo.add_argument("--keep", type=Path, metavar="DIR",
                      help="keep the dataset, the server's data and the report in DIR "
                           "(default: a temporary folder, removed on exit)")
    return parser


def _flags(ns: argparse.Namespace) -> dict[str, Any]:
    a = _Defaults(ns)
    return {
        "target.host": a.host, "target.project": a.project, "target.dataset": a.dataset,
        "target.workspace": a.workspace, "target.token_file": a.token_file,
        "target.token": a.token, "target.ca_bundle": a.ca_bundle, "target.insecure": a.insecure,
        "upload.labels": a.labels, "upload.include": a.include, "upload.exclude": a.exclude,
        "upload.follow_symlinks": a.follow_symlinks, "upload.include_hidden": a.include_hidden,
        "upload.skip_existing": a.skip_existing, "upload.reupload_changed": a.reupload_changed,
        "upload.hash": a.hash,
        "upload.concurrency": a.concurrency,
        "upload.adaptive": False if a.fixed_concurrency else None,
        "upload.max_inflight_mb": a.max_inflight_mb, "upload.max_attempts": a.max_attempts,
        "upload.journal": a.journal, "upload.report": a.report,
        "upload.format": a.format, "upload.label_map": a.label_map,
        "upload.skip_unknown_labels": a.skip_unknown_labels,
        "upload.subset_dataset": a.subset_dataset,
        "upload.keep_auto_training": a.keep_auto_training,
        "upload.max_outage": a.max_outage, "target.dialect": a.dialect,
        "output.progress": "json" if a.json else a.progress,
    }


class _Defaults:
    """A namespace whose missing options read as None (not every command has them)."""

    def __init__(self, ns: argparse.Namespace) -> None:
        self._ns = ns

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ns, name, None)


def cmd_verify(a: argparse.Namespace) -> int:
    import time as _time

    from geti_bulk import config
    from geti_bulk.events import RecordingReporter
    from geti_bulk.pipeline import Run

    cfg = config.build(_flags(a), config_file=a.config, sources=tuple(a.paths),
                       manifests=tuple(a.manifest), use_journal=False)
    now = _time.time()
    stamp = _time.strftime("%Y%m%d-%H%M%S", _time.localtime(now)) + f"-{int(now * 1000) % 1000:03d}"
    report = Path(a.report) if a.report else Path(f"geti-bulk-verify-{stamp}-{os.getpid()}.jsonl")
    run = Run(cfg, RecordingReporter(), verify_report=report)
    result = asyncio.run(run.execute(handle_signals=True))
    if result.fatal:
        print(f"geti-bulk: error: {result.fatal}", file=sys.stderr)
        return result.exit_code
    v = run.verify_result
    for line in v.problems:
        print(f"  {line}")
    print(v.summary())
    print(f"report: {v.report_path}")
    return int(v.exit_code)


def _warn(msg: str) -> None:
    print(f"geti-bulk: warning: {msg}", file=sys.stderr)


def cmd_upload(a: argparse.Namespace) -> int:
    from geti_bulk import config
    from geti_bulk.display import make_reporter
    from geti_bulk.pipeline import Run
    from geti_bulk.scan import check_manifests

    if a.token:
        _warn("--token is visible to other users in the process list; "
              "prefer GETI_TOKEN or --token-file")
    cfg = config.build(_flags(a), config_file=a.config, sources=tuple(a.paths),
                       manifests=tuple(a.manifest), dry_run=a.dry_run, verbose=a.verbose,
                       quiet=a.quiet, use_journal=not a.no_journal)
    check_manifests(cfg.manifests)
    if cfg.insecure:
        _warn(f"TLS certificate verification is off for {cfg.host} (--insecure)")
    reporter = make_reporter(cfg.progress, stream=sys.stdout, verbose=cfg.verbose, quiet=cfg.quiet)
    run = Run(cfg, reporter)
    reporter.start()
    try:
        result = asyncio.run(run.execute(handle_signals=True))
    finally:
        reporter.stop()
    if result.fatal:
        print(f"geti-bulk: error: {result.fatal}", file=sys.stderr)
    return result.exit_code


def cmd_status(a: argparse.Namespace) -> int:
    from geti_bulk.journal import JournalReader, default_journal_path
    from geti_bulk.journal_lock import check_journal_file

    if a.all or a.journal is None:
        folder = default_journal_path("x", "x", "x").parent
        journals = sorted(folder.glob("*.sqlite")) if folder.is_dir() else []
        if not journals:
            print(f"no journals under {folder}")
            return EXIT_OK
        if a.journal is None and not a.all and len(journals) > 1:
            print("several journals; name one (or use --all):")
        for j in journals:
            _print_status(JournalReader(j), j, brief=len(journals) > 1)
        return EXIT_OK
    if a.journal.is_dir():
        raise ConfigError(f"journal: {a.journal} is a folder; name a journal file in it")
    if not a.journal.is_file():
        raise ConfigError(f"journal: {a.journal} does not exist")
    check_journal_file(a.journal)   # reads only; never takes the run's lock
    _print_status(JournalReader(a.journal), a.journal, brief=False)
    return EXIT_OK


def _print_status(reader: Any, path: Path, *, brief: bool) -> None:
    counts = reader.counts()
    meta = reader.meta()
    total = sum(counts.values())
    parts = ", ".join(f"{counts.get(s, 0)} {s}" for s in ("uploaded", "skipped", "failed", "sending"))
    if counts.get("media"):
        parts += f", {counts['media']} stored with their annotation still to post"
    print(f"{path}\n  target: {meta.get('target', '?')}\n  {total} files: {parts}")
    if counts.get("sending"):
        print("  'sending' files were in flight when a run stopped; the next run checks the "
              "server for them before sending again")
    if not brief:
        for key, reason in reader.failures():
            print(f"  FAILED {key}: {reason}")
    reader.close()


def main(argv: list[str] | None = None) -> int:
    code = _main(argv)
    try:
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):   # `geti-bulk … | head -1`: nobody reads any more
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())   # so the interpreter's last flush is quiet
    return code


def _main(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "serve":
        from geti_bulk.server import serve_main
        return serve_main(argv[1:])
    parser = build_parser()
    a = parser.parse_args(argv)
    if a.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        if a.command == "upload":
            return cmd_upload(a)
        if a.command == "status":
            return cmd_status(a)
        if a.command == "verify":
            return cmd_verify(a)
        if a.command == "demo":
            from geti_bulk.demo import run_demo
            return run_demo(files=a.files, faults=a.faults, latency_ms=a.latency_ms,
                            progress=a.progress, keep=a.keep, task=a.task)
    except ConfigError as e:
        print(f"geti-bulk: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except GetiBulkError as e:
        print(f"geti-bulk: error: {e}", file=sys.stderr)
        return EXIT_FATAL
    except KeyboardInterrupt:
        print("geti-bulk: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:  # the one broad catch: a bug still gets one readable line
        print(f"geti-bulk: internal error: {type(e).__name__}: {e} "
              "(set GETI_BULK_DEBUG=1 for a traceback)", file=sys.stderr)
        if os.environ.get("GETI_BULK_DEBUG"):
            raise
        return EXIT_FATAL
    parser.print_help()
    return EXIT_USAGE


if __name__ == "__main__":
    raise SystemExit(main())
