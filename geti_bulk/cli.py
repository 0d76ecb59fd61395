"""The `geti-bulk` command line: parsing, precedence, reporter choice, exit codes.

Exit codes: 0 all uploaded or skipped (also: nothing to upload, with a warning), 1 some
file failed, 2 usage or configuration error, 3 the run was stopped by a fatal error (a
full journal disk too), 128 + the signal's number when a signal stopped it: 130 Ctrl-C
(SIGINT), 143 SIGTERM, 129 SIGHUP. The run catches what escapes it, and `main` what
escapes the commands: nothing reaches the user as a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

from geti_bulk import __version__
from geti_bulk.errors import ConfigError, GetiBulkError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_FATAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
LIST_STATES = {"done": ("uploaded", "skipped"), "uploaded": ("uploaded",),
               "skipped": ("skipped",), "failed": ("failed",), "sending": ("sending",),
               "media": ("media",), "all": ()}
EXIT_CODES = ("exit codes: 0 every file uploaded or skipped (or nothing to upload: a warning "
              "says so), 1 some file failed (see the report), 2 usage or configuration "
              "error, 3 stopped by a fatal error (token, project, server disk, outage, the "
              "journal's disk full), 128+N stopped by signal N: 130 Ctrl-C, 143 SIGTERM, "
              "129 SIGHUP (in-flight uploads finish first; the same signal again cancels them)")


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
    g.add_argument("--follow-symlinks", action="store_true", default=None,
                   help="upload the files symlinks point to (folder loops are detected); "
                        "without it symlinks are skipped and counted in the summary")
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
                                    "Rerun the same command to resume. Other files beside "
                                    "the media (.xml, .txt, .json …) are ignored and counted.",
                        epilog=f"environment: {{env}}. {EXIT_CODES}.")
    up.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="folders or files")
    _add_target_options(up)
    _add_source_options(up)
    g = up.add_argument_group("how")
    g.add_argument("--concurrency", type=int,
                   help="most uploads in flight: the ceiling the adaptive level stays under "
                        "(default 64; 10 for Geti 3; 8 with --fixed-concurrency; with --shard "
                        "K/N, that divided by N, rounded up, at least 2) "
                        "[env GETI_BULK_CONCURRENCY]")
    g.add_argument("--fixed-concurrency", action="store_true",
                   help="do not adapt concurrency to the server's answers "
                        "[env GETI_BULK_ADAPTIVE=0]")
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
                                     "(and shard) under $XDG_STATE_HOME/geti-bulk) "
                                     "[env GETI_BULK_JOURNAL]")
    g.add_argument("--shard", metavar="K/N",
                   help="upload only shard K of N (K from 0 to N-1, like Kubernetes' "
                        "JOB_COMPLETION_INDEX), split as rclone's --hash-filter K/N splits "
                        "each file's path relative to its source argument, so N machines or "
                        "processes share one migration; each shard keeps its own journal "
                        "[env GETI_BULK_SHARD]")
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

    up.format_help = _with_env_vars(up)    # type: ignore[method-assign]
    ve.format_help = _with_env_vars(ve)    # type: ignore[method-assign]
    from geti_bulk.migrate.command import add_parser as add_migrate_parser

    add_migrate_parser(sub)   # `migrate`: a Geti project into another Geti
    st = sub.add_parser("status", help="show a journal's counts and failures (or several "
                                       "shards' journals as one)",
                        description="Show what a journal holds: files uploaded, skipped, "
                                    "failed and still marked sending, and the failures. "
                                    "Several journals (the shards of one --shard split) "
                                    "are shown as one: totals, a line per shard, failures "
                                    "with their shard, and any shard missing.")
    st.add_argument("journal", type=Path, nargs="*", help="journal file(s)")
    st.add_argument("--all", action="store_true", help="list every journal under the state folder")
    st.add_argument("--list", choices=sorted(LIST_STATES), dest="list_state",
                    help="also name the files in that state, one per line (state, path, "
                         "media id, reason; tab-separated): done = uploaded or skipped, "
                         "i.e. what a rerun skips as already uploaded")

    k8s = sub.add_parser(
        "k8s-manifest", help="print a Kubernetes Indexed Job running N --shard uploads",
        description="Print a Kubernetes Job (completionMode: Indexed) whose pod K runs "
                    "`geti-bulk upload --shard K/N` over a dataset volume mounted read-only, "
                    "with its journal at /journals/shard-K-of-N.sqlite on a persistent volume "
                    "and the token from a Secret. Options after `--` are passed to upload. "
                    "See deploy/k8s/README.md.")
    k8s.add_argument("--shards", type=int, required=True, help="N: pods, shards and journals")
    k8s.add_argument("--host", required=True, help="Geti server URL")
    k8s.add_argument("--project", required=True, help="project name or id")
    k8s.add_argument("--dataset", help="dataset name or id (default: the training dataset)")
    k8s.add_argument("--image", default="ghcr.io/example/geti-bulk:0.1.0",
                     help="container image with geti-bulk (deploy/k8s/Dockerfile)")
    k8s.add_argument("--name", default="geti-bulk-upload", help="the Job's name")
    k8s.add_argument("--namespace")
    k8s.add_argument("--source", default=".",
                     help="the tree's path inside the dataset volume (default: its root)")
    k8s.add_argument("--data-claim", default="geti-bulk-dataset",
                     help="PersistentVolumeClaim of the dataset, mounted read-only at /data")
    k8s.add_argument("--journal-claim", default="geti-bulk-journals",
                     help="PersistentVolumeClaim (ReadWriteMany) for journals and reports")
    k8s.add_argument("--secret", default="geti-bulk-token", help="Secret holding the token")
    k8s.add_argument("--secret-key", default="token", help="key of the token in the Secret")
    k8s.add_argument("--backoff-per-index", type=int, default=6,
                     help="retries of one shard's pod before that index fails (default 6)")
    k8s.add_argument("upload_args", nargs="*", metavar="-- UPLOAD_OPTION",
                     help="more `geti-bulk upload` options, after `--`")

    sub.add_parser("serve", help="run the Geti-compatible local server (see `serve --help`)",
                   add_help=False)
    demo = sub.add_parser("demo", help="start the local server, make a labelled dataset and upload it",
                          description="Start the local Geti server in this process, generate "
                                      "a labelled dataset of real images, upload it with the "
                                      "live display, and verify every stored byte.")
    demo.add_argument("--files", type=int, default=300,
                      help="how many images (default 300), plus one large PNG per label")
    demo.add_argument("--faults", default=None,
                      help="faults the local server injects (default shows retries: "
                           "503=0.05,stored500=0.02,reset=0.02; with --dialect geti3 "
                           "locked=0.03,stored500=0.02,reset=0.02)")
    demo.add_argument("--dialect", choices=["geti2", "geti3"], default="geti2",
                      help="which local server: Geti 2 (default) or Geti 3 (HTTPS with a "
                           "self-signed certificate, no token, labels as annotations)")
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


def _with_env_vars(p: argparse.ArgumentParser) -> Any:
    """`format_help` that first names each option's environment variable: the config
    (and aiohttp with it) is imported only when help is shown, not on every start."""
    plain = p.format_help

    def format_help() -> str:
        from geti_bulk.config import ENV_RULE

        _name_env_vars(p)
        if p.epilog and "{env}" in p.epilog:
            p.epilog = p.epilog.replace("{env}", ENV_RULE)
        return plain()

    return format_help


def _name_env_vars(p: argparse.ArgumentParser) -> None:
    """Every option with a config key names its environment variable (`config.ENV_RULE`)."""
    from geti_bulk.config import KEYS, env_name

    for action in p._actions:
        if not action.option_strings or action.help in (None, argparse.SUPPRESS):
            continue
        key = next((f"{sec}.{action.dest}" for sec in ("target", "upload", "output")
                    if f"{sec}.{action.dest}" in KEYS), None)
        if key is None:
            continue
        var = env_name(key)
        if var not in str(action.help):
            action.help = f"{action.help} [env {var}]"


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
        "upload.shard": a.shard,
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
    if result.fatal or result.interrupted:
        _tell(result)
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
    display_error = None
    try:
        reporter.start()
    except Exception as e:  # noqa: BLE001 — no live display, the run still goes
        display_error = e
    try:
        result = asyncio.run(run.execute(handle_signals=True))
    finally:
        try:
            reporter.stop()
        except Exception as e:  # noqa: BLE001
            display_error = display_error or e
    if display_error is not None and result.display_error is None:
        result.display_error = f"{type(display_error).__name__}: {display_error}"
    _tell(result)
    return result.exit_code


def _tell(result: Any) -> None:
    """The run's last words on stderr: warnings, then the error or the signal."""
    if result.internal is not None and os.environ.get("GETI_BULK_DEBUG"):
        import traceback

        traceback.print_exception(result.internal)
    for text in result.warnings:
        _warn(text)
    if result.display_error:
        _warn(f"the display failed ({result.display_error}) and was switched off; the run "
              "went on, and the report has every file")
    if result.fatal:
        print(f"geti-bulk: error: {result.fatal}", file=sys.stderr)
    elif result.interrupted:
        name = signal.Signals(result.signal or signal.SIGINT).name
        how = "Ctrl-C (SIGINT)" if name == "SIGINT" else name
        print(f"geti-bulk: stopped by {how}; rerun the same command to resume",
              file=sys.stderr)


def cmd_status(a: argparse.Namespace) -> int:
    from geti_bulk.journal import JournalReader, default_journal_path
    from geti_bulk.journal_lock import check_journal_file
    from geti_bulk.status import one_journal, read_view, status_lines

    if a.all or not a.journal:
        folder = default_journal_path("x", "x", "x").parent
        journals = sorted(folder.glob("*.sqlite")) if folder.is_dir() else []
        if not journals:
            print(f"no journals under {folder}")
            return EXIT_OK
        if not a.journal and not a.all and len(journals) > 1:
            print("several journals; name one, or several shards' (or use --all):")
        for j in journals:
            print("\n".join(one_journal(read_view(j), brief=len(journals) > 1)))
        return EXIT_OK
    for j in a.journal:
        if j.is_dir():
            raise ConfigError(f"journal: {j} is a folder; name a journal file in it")
        if not j.is_file():
            raise ConfigError(f"journal: {j} does not exist")
    # reads only; never takes a run's lock
    print("\n".join(status_lines(list(a.journal), check_journal_file)))
    if a.list_state:
        for j in a.journal:     # a shard's journal after another's, each in key order
            _print_rows(JournalReader(j), LIST_STATES[a.list_state])
    return EXIT_OK


def _print_rows(reader: Any, states: tuple[str, ...]) -> None:
    """Every file in `states`, in key order, a page at a time (a million rows stream)."""
    after = ""
    try:
        while page := reader.rows(states, after):
            for key, state, media_id, reason in page:
                print("\t".join((state, _one_line(key), media_id or "", _one_line(reason or ""))))
            after = page[-1][0]
    finally:
        reader.close()


def _one_line(text: str) -> str:
    return text.replace("\t", " ").replace("\n", " ").replace("\r", " ")


def cmd_k8s_manifest(a: argparse.Namespace) -> int:
    from geti_bulk.deploy import JobSpec, render

    spec = JobSpec(shards=a.shards, host=a.host, project=a.project, image=a.image, name=a.name,
                   namespace=a.namespace, dataset=a.dataset, source=a.source,
                   data_claim=a.data_claim, journal_claim=a.journal_claim, secret=a.secret,
                   secret_key=a.secret_key, backoff_per_index=a.backoff_per_index,
                   extra_args=tuple(a.upload_args))
    _check_upload_args(a.upload_args)
    try:
        text = render(spec)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    sys.stdout.write(text)
    return EXIT_OK


def _check_upload_args(args: list[str]) -> None:
    """The options after `--` must be `geti-bulk upload`'s: a pod given another one would
    exit 2 on every retry of its index."""
    import contextlib
    import io

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            build_parser().parse_args(["upload", "/data", *args])
    except SystemExit:
        why = err.getvalue().strip().splitlines()[-1:] or ["invalid options"]
        raise ConfigError("k8s-manifest: the options after -- are not valid for "
                          f"`geti-bulk upload` ({why[0].split('error: ', 1)[-1]})") from None


class _Stdout:
    """sys.stdout that a reader going away (`| head -1`, a closed terminal, `>&-`) cannot
    break: output stops, the command goes on and exits with its own code."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.gone = inner is None

    def _lost(self) -> None:
        self.gone = True
        try:   # the interpreter's last flush of the real stdout must be quiet too
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.close(devnull)
        except OSError:
            pass

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                return int(self._inner.write(text))
            except (OSError, ValueError):   # EPIPE, EIO (terminal hung up), EBADF, closed
                self._lost()
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self._inner.flush()
            except (OSError, ValueError):
                self._lost()

    def isatty(self) -> bool:
        if self.gone:
            return False
        try:
            return bool(self._inner.isatty())
        except (OSError, ValueError):
            return False

    def __getattr__(self, name: str) -> Any:
        if self._inner is None:
            raise AttributeError(name)
        return getattr(self._inner, name)


def main(argv: list[str] | None = None) -> int:
    real = sys.stdout
    sys.stdout = out = _Stdout(real)
    try:
        code = _main(argv)
        out.flush()
    except KeyboardInterrupt:    # Ctrl-C while still starting (imports, parsing)
        print("geti-bulk: interrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
    finally:
        sys.stdout = real
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
    if a.command in ("upload", "verify", "migrate"):   # their connectors all pass ssl=
        from geti_bulk.lean_import import import_aiohttp

        import_aiohttp()
    try:
        if a.command == "upload":
            return cmd_upload(a)
        if a.command == "status":
            return cmd_status(a)
        if a.command == "verify":
            return cmd_verify(a)
        if a.command == "k8s-manifest":
            return cmd_k8s_manifest(a)
        if a.command == "migrate":
            from geti_bulk.migrate.command import cmd_migrate
            return cmd_migrate(a, tell=_tell)
        if a.command == "demo":
            from geti_bulk.demo import run_demo
            return run_demo(files=a.files, faults=a.faults, latency_ms=a.latency_ms,
                            progress=a.progress, keep=a.keep, task=a.task, dialect=a.dialect)
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
        if type(e).__module__ == "sqlite3":   # `status` on a journal the disk fails
            print(f"geti-bulk: error: the journal could not be read: {e}", file=sys.stderr)
            return EXIT_FATAL
        print(f"geti-bulk: internal error: {type(e).__name__}: {e} "
              "(set GETI_BULK_DEBUG=1 for a traceback)", file=sys.stderr)
        if os.environ.get("GETI_BULK_DEBUG"):
            raise
        return EXIT_FATAL
    parser.print_help()
    return EXIT_USAGE


if __name__ == "__main__":
    raise SystemExit(main())
