"""One run: resolve the target, plan labels, then one producer and N workers in one
anyio task group over one aiohttp session, with nothing unbounded between them.

Per-file errors become rows; a FatalError stops the run at once (in-flight uploads are
cancelled and stay `sending` in the journal, so the next run reconciles them). A first
`request_stop()` (Ctrl-C) stops feeding and lets in-flight uploads finish; `cancel()`
(a second Ctrl-C) cancels them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import hashlib
import itertools
import os
import random
import signal
import sqlite3
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import anyio

from geti_bulk.config import (
    FIXED_DEFAULT,
    GETI3_CEILING,
    NO_TOKEN,
    UploadConfig,
    shard_concurrency,
)
from geti_bulk.errors import ConfigError, FatalError, GetiBulkError
from geti_bulk.events import (
    AGAIN,
    ConcurrencyChanged,
    FileQueued,
    GuardedReporter,
    JournalSkipped,
    MultiReporter,
    Notice,
    Reporter,
    RunFinished,
    RunStarted,
    RunStopping,
    ScanDone,
)
from geti_bulk.geti.client import GetiClient, Target, env_proxy, make_ssl, pick_dataset
from geti_bulk.geti.dialect import detect as detect_dialect
from geti_bulk.retry import RetryBudget, RetryPolicy
from geti_bulk.scan import (
    ScanCounts,
    ScanOptions,
    covered_sources,
    folder_label_names,
    iter_jobs,
    manifest_label_names,
)

if TYPE_CHECKING:   # imported by `_import_late`, while the target is resolved
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

    from geti_bulk.annotate import Annotator
    from geti_bulk.attempts import ExistingIndex, FileUploader, Head, read_heads
    from geti_bulk.autotrain import AutoTraining
    from geti_bulk.concurrency import AdaptiveLimiter
    from geti_bulk.datasets import Sources, dataset_jobs, open_sources
    from geti_bulk.jobs import FileJob
    from geti_bulk.journal import (
        Journal,
        JournalReader,
        JournalResumeStore,
        PriorState,
        default_journal_path,
        journal_error,
    )
    from geti_bulk.journal_lock import JournalLock, check_journal_file
    from geti_bulk.labels import (
        AnnotationLabels,
        LabelPlan,
        parse_label_map,
        plan_annotation_labels,
        plan_labels,
        unused_label_map,
    )
    from geti_bulk.media import media_kind
    from geti_bulk.outage import OutageGate
    from geti_bulk.report import ReportWriter
    from geti_bulk.shard import SPLIT_RULE, journal_shard_problem
    from geti_bulk.sources.model import SourceAnnotation, SourceObject


_late_done = False
_late_lock = threading.Lock()


def _import_late() -> None:
    """Import the modules a run needs only once its target is known (about 50 ms of CPU
    on a small machine), binding their names here as if imported at the top. The thread
    that opens the sources calls it first, while the target is resolved over the network;
    the entry points that need them call it again (free once done)."""
    global _late_done
    global Annotator, FileUploader, read_heads, AutoTraining, AdaptiveLimiter, dataset_jobs
    global open_sources, FileJob, Journal, JournalReader, JournalResumeStore
    global default_journal_path, journal_error, JournalLock, check_journal_file
    global LabelPlan, parse_label_map, plan_annotation_labels, plan_labels
    global unused_label_map, media_kind, OutageGate, ReportWriter, SPLIT_RULE
    global journal_shard_problem, SourceAnnotation, SourceObject
    with _late_lock:
        if _late_done:
            return
        import anyio.streams.memory  # noqa: F401  (the run's queues)

        from geti_bulk.annotate import Annotator
        from geti_bulk.attempts import FileUploader, read_heads
        from geti_bulk.autotrain import AutoTraining
        from geti_bulk.concurrency import AdaptiveLimiter
        from geti_bulk.datasets import dataset_jobs, open_sources
        from geti_bulk.jobs import FileJob
        from geti_bulk.journal import (
            Journal,
            JournalReader,
            JournalResumeStore,
            default_journal_path,
            journal_error,
        )
        from geti_bulk.journal_lock import JournalLock, check_journal_file
        from geti_bulk.labels import (
            LabelPlan,
            parse_label_map,
            plan_annotation_labels,
            plan_labels,
            unused_label_map,
        )
        from geti_bulk.media import media_kind
        from geti_bulk.outage import OutageGate
        from geti_bulk.report import ReportWriter
        from geti_bulk.shard import SPLIT_RULE, journal_shard_problem
        from geti_bulk.sources.model import SourceAnnotation, SourceObject
        _late_done = True


SCAN_BATCH = 256
QUEUE_SIZE = 512
PREFETCH_BATCH = 32            # small files read ahead in one thread hop (`Run._prefetch`) …
PREFETCH_BYTES = 4 << 20       # … and at most this many bytes of them
Ready = tuple["FileJob", "Head | None"]   # a job, and the file read whole if it is small


@dataclass(slots=True)
class RunResult:
    uploaded: int = 0
    skipped: int = 0
    failed: int = 0
    not_started: int = 0
    bytes_sent: int = 0
    elapsed: float = 0.0
    retries: dict[str, int] = field(default_factory=dict)
    fatal: str | None = None
    interrupted: bool = False
    report_path: Path | None = None
    journal_path: Path | None = None
    peak_concurrency: int = 0
    fatal_code: int = 3   # 2: refused as a usage error (the journal is in use)
    signal: int | None = None     # the signal that stopped the run (SIGINT, SIGTERM, SIGHUP)
    ignored: int = 0              # files beside the media that are not media (.xml, .txt …)
    symlinks_skipped: int = 0     # not followed (no --follow-symlinks)
    filtered: int = 0             # left out by --include/--exclude
    unlabelled: int = 0           # uploaded into a classification project with no label
    shapes_clipped: int = 0
    shapes_dropped: int = 0
    warnings: list[str] = field(default_factory=list)   # told on stderr by the CLI
    display_error: str | None = None   # the display raised and was switched off
    internal: BaseException | None = None   # an unexpected exception (GETI_BULK_DEBUG)

    @property
    def exit_code(self) -> int:
        """0 all uploaded or skipped (or nothing to upload), 1 some file failed, 2 usage,
        3 fatal, 128 + the signal's number when a signal stopped it (130 for Ctrl-C)."""
        if self.fatal:
            return self.fatal_code
        if self.interrupted:
            return 128 + (self.signal or signal.SIGINT)
        return 1 if self.failed else 0


class Run:
    def __init__(self, cfg: UploadConfig, reporter: Reporter, *,
                 session: aiohttp.ClientSession | None = None, rng: random.Random | None = None,
                 sleep: Callable[[float], Awaitable[None]] | None = None,
                 policy: RetryPolicy | None = None, verify_report: Path | None = None) -> None:
        self.cfg = cfg
        self.verify_report = verify_report   # set: compare the source with Geti, send nothing
        self.verify_result: Any = None
        self.display = GuardedReporter(reporter)   # a display that raises stops only itself
        self.reporter: Reporter = self.display
        self._session = session
        self.rng = rng or random.Random()
        self.sleep = sleep
        self.policy = policy or RetryPolicy(max_attempts=cfg.max_attempts)
        self.stopping: str | None = None
        self._scope: anyio.CancelScope | None = None
        self._workers_started = False
        self.queued = 0
        self.result = RunResult()
        self.target: Target | None = None
        self.sources: Sources | None = None
        self.subset_map: dict[str, Target] = {}
        self.targets: dict[str, Target] = {}
        self.notices: list[str] = []    # told after the start line
        self.labels_as_annotations = False   # Geti 3: folder labels are a second step
        self.scan_counts = ScanCounts()
        self._scan_fatal: GetiBulkError | None = None   # FatalError, or ConfigError (exit 2)
        self._report: ReportWriter | None = None
        self._video_labels_told = False

    # --- control --------------------------------------------------------------------

    def request_stop(self, reason: str) -> None:
        if self.stopping is None:
            self.stopping = reason
            self.reporter.emit(RunStopping(reason))

    def cancel(self) -> None:
        self.result.interrupted = True
        if self._scope is not None:
            self._scope.cancel()

    def on_sigint(self) -> None:
        self.on_signal(signal.SIGINT)

    def on_signal(self, signum: int) -> None:
        """First Ctrl-C (or SIGTERM, SIGHUP): finish in-flight uploads; second: cancel
        them. Before any upload has started (still resolving the target, planning labels)
        there is nothing to finish, so the first one cancels."""
        self.result.interrupted = True
        if self.result.signal is None:
            self.result.signal = signum
        name = signal.Signals(signum).name
        reason = "interrupted (Ctrl-C)" if signum == signal.SIGINT else f"interrupted ({name})"
        if self.stopping is None and self._workers_started:
            self.request_stop(reason)
        else:
            self.request_stop(reason)
            self.cancel()

    # --- the run ----------------------------------------------------------------------

    async def execute(self, *, handle_signals: bool = False) -> RunResult:
        start = time.monotonic()
        with self._signals(handle_signals):
            try:
                with anyio.CancelScope() as self._scope:
                    await self._execute()
            except GetiBulkError as e:
                self.result.fatal = str(e)
                if isinstance(e, ConfigError):   # the journal in use, a bad --label-map …
                    self.result.fatal_code = 2
            except OSError as e:
                where = f" ({e.filename})" if e.filename else ""
                self.result.fatal = f"{type(e).__name__}: {e.strerror or e}{where}"
            except sqlite3.Error as e:
                _import_late()
                self.result.fatal = str(journal_error(self.cfg.journal or Path("?"), e, "used"))
            except Exception as e:  # noqa: BLE001 — a bug still ends as one line
                leaf = _first_leaf(e)
                if isinstance(leaf, GetiBulkError):
                    self.result.fatal = str(leaf)
                    if isinstance(leaf, ConfigError):
                        self.result.fatal_code = 2
                else:
                    self.result.internal = leaf
                    self.result.fatal = (f"internal error: {type(leaf).__name__}: {leaf} "
                                         "(set GETI_BULK_DEBUG=1 for a traceback)")
        self.result.elapsed = time.monotonic() - start
        r = self.result
        c = self.scan_counts
        r.ignored, r.symlinks_skipped, r.filtered = c.ignored, c.symlinks, c.filtered
        self._warn_nothing_found()
        self.reporter.emit(RunFinished(
            uploaded=r.uploaded, skipped=r.skipped, failed=r.failed, bytes_sent=r.bytes_sent,
            elapsed=r.elapsed, retries=dict(r.retries), fatal=r.fatal, interrupted=r.interrupted,
            not_started=r.not_started, report_path=str(r.report_path) if r.report_path else None,
            signal=signal.Signals(r.signal).name if r.signal else None, ignored=r.ignored,
            symlinks_skipped=r.symlinks_skipped, unlabelled=r.unlabelled,
            shapes_clipped=r.shapes_clipped, shapes_dropped=r.shapes_dropped))
        if self.display.error is not None:
            shown = self.display.error
            r.display_error = f"{type(shown).__name__}: {shown}"
        return r

    def _warn_nothing_found(self) -> None:
        """An empty source (no files, or every one filtered out) is not an error (exit 0:
        a shard or a nightly run may find nothing), but it is never silent."""
        r = self.result
        if r.fatal or r.interrupted or self.queued or self.sources is None:
            return
        if self.verify_report is not None:
            return
        why = []
        if r.filtered:
            why.append(f"{r.filtered} left out by --include/--exclude")
        if r.symlinks_skipped:
            why.append(f"{r.symlinks_skipped} symlink(s) not followed: pass --follow-symlinks")
        if r.ignored:
            why.append(f"{r.ignored} not media")
        where = ", ".join(str(p) for p in (*self.cfg.sources, *self.cfg.manifests)) or "(none)"
        r.warnings.append(f"nothing to upload: no image or video found in {where}"
                          + (f" ({'; '.join(why)})" if why else ""))

    def _signals(self, enabled: bool) -> contextlib.AbstractContextManager[None]:
        return signal_handlers(self.on_signal, enabled)

    async def _execute(self) -> None:
        cfg = self.cfg
        session = self._session
        own = session is None
        if session is None:   # (plain HTTP needs no TLS context: loading CAs takes ~20 ms)
            connector = aiohttp.TCPConnector(limit=cfg.concurrency + 4,
                                             ssl=make_ssl(cfg.ca_bundle, cfg.insecure)
                                             if cfg.host.startswith("https:") else False)
            session = aiohttp.ClientSession(
                connector=connector, trust_env=False,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, connect=60))
        # the sources (format detection, their readers' imports, an index) open in a
        # thread while the target is resolved: the round trips wait, the thread works
        opening = asyncio.get_running_loop().run_in_executor(None, self._open_sources)
        try:
            try:
                client = await self._client(session)
                self.target = target = await client.resolve(cfg.project, cfg.dataset,
                                                            cfg.workspace)
                if target.dialect == "geti3" and cfg.subset_dataset:
                    raise ConfigError("subset_dataset: Geti 3 has one dataset per project; "
                                      "each file's subset goes into its annotation instead")
                self.subset_map = _subset_targets(target, cfg.subset_dataset)
                self.targets = {t.dataset.id: t for t in self.subset_map.values()}
            except BaseException:   # told at once, as before; the sources close when ready
                opening.add_done_callback(_close_opened)
                raise
            with anyio.CancelScope(shield=True):   # a cancel waits for the thread, as before
                self.sources = sources = await opening   # (an error opening them is raised)
            self.notices = [f"format: {line}" for line in sources.described]
            folders = sources.folders
            for inner, outer in covered_sources(folders, self._scan_options()).items():
                self.notices.append(f"sources: {folders[inner]} is {folders[outer]} or inside "
                                    "it: its files are walked once, as part of the latter")
            plan, ann_labels = await anyio.to_thread.run_sync(
                self._plan_labels, target, abandon_on_cancel=True)
            self.notices += [f"labels: {note}" for note in (ann_labels.notes if ann_labels else ())]
            if self.verify_report is not None:
                await self._verify(client, target, plan, ann_labels, self.verify_report)
                return
            existing = await self._existing(client, target) if cfg.skip_existing else None
            await self._run_workers(client, target, plan, existing, ann_labels)
        finally:
            if self.sources is not None:
                self.sources.close()
            if own:
                await session.close()

    async def _verify(self, client: GetiClient, target: Target, plan: LabelPlan,
                      ann_labels: AnnotationLabels | None, report_path: Path) -> None:
        from geti_bulk.verify import Verifier, index_dataset, verify_jobs

        _import_late()
        sources = self.sources
        assert sources is not None
        while not sources.annotations_ready():  # noqa: ASYNC110 (a thread's state, no event)
            await anyio.sleep(0.05)
        limiter = AdaptiveLimiter(self._verify_concurrency(), adaptive=False)
        annotator = Annotator(client, ann_labels, limiter, self.policy, RetryBudget(self.policy),
                              self.reporter, rng=self.rng, sleep=self.sleep or anyio.sleep)
        index = await index_dataset(client, target)
        for routed in self.targets.values():
            if routed.dataset.id != target.dataset.id:
                await index_dataset(client, routed, index)
        # verify always compares the whole source: a shard is an upload's split only
        opts = dataclasses.replace(self._scan_options(), shard=None)
        subsets = {k: t.dataset.id for k, t in self.subset_map.items()}
        report_path.parent.mkdir(parents=True, exist_ok=True)
        with report_path.open("w", encoding="utf-8") as report:
            verifier = Verifier(client, target, plan, annotator, index, report,
                                sources.annotation_for)
            verifier.targets = self.targets
            jobs = (self._routed(job, subsets) for job in itertools.chain(
                iter_jobs(sources.folders, self.cfg.manifests, opts),
                dataset_jobs(sources, subsets)))
            await verify_jobs(verifier, jobs, self._verify_concurrency())
        verifier.result.report_path = report_path
        self.verify_result = verifier.result

    def _routed(self, job: FileJob, subsets: dict[str, str]) -> FileJob:
        """A folder job's dataset (by its subset folder), and on Geti 3 its folder labels
        as an annotation (Geti 3 takes no labels at upload)."""
        routed = subsets.get(job.subset or "") if subsets and not job.dataset_id else None
        if routed:
            job = dataclasses.replace(job, dataset_id=routed)
        if self.labels_as_annotations and job.labels and job.kind == "video":
            # Geti 3 labels a video's frames (`?frame_index=`), not the video: stored
            # unlabelled, said once
            if not self._video_labels_told:
                self._video_labels_told = True
                self.reporter.emit(Notice("labels: Geti 3 labels video frames, not whole "
                                          "videos: videos are uploaded without their folder "
                                          "labels"))
            job = dataclasses.replace(job, labels=())
        if self.labels_as_annotations and job.labels and job.annotation is None:
            ann = SourceAnnotation(objects=(SourceObject(labels=job.labels),))
            job = dataclasses.replace(job, annotation=ann, labels=())
        return job

    async def _client(self, session: aiohttp.ClientSession) -> GetiClient:
        """The client of the dialect the host speaks (asked, unless --dialect says)."""
        cfg = self.cfg
        proxy = env_proxy(cfg.host)
        geti2 = GetiClient(session, cfg.host, cfg.token, proxy=proxy) if cfg.token else None
        if geti2 is not None and cfg.dialect == "auto":
            geti2.prefetch_organization()   # Geti 2's first request, while the dialect is asked
        try:
            dialect, version = await detect_dialect(session, cfg.host, cfg.dialect, proxy=proxy)
        except BaseException:
            if geti2 is not None:
                geti2.drop_prefetch()
            raise
        if dialect == "geti3":
            if geti2 is not None:
                geti2.drop_prefetch()
            from geti_bulk.geti.v3 import Geti3Client  # TUS and all: only for Geti 3

            return Geti3Client(session, cfg.host, version=version, proxy=proxy)
        if geti2 is None:
            raise ConfigError(NO_TOKEN)
        return geti2

    def _open_sources(self) -> Sources:
        _import_late()   # (in the opening thread: while the target is resolved)
        cfg = self.cfg
        index_dir = (cfg.journal.parent if cfg.journal else
                     Path(tempfile.gettempdir())) / "geti-bulk-index"
        return open_sources(cfg.sources, cfg.format, index_dir)

    def _plan_labels(self, target: Target) -> tuple[LabelPlan, AnnotationLabels | None]:
        _import_late()
        opts = self._scan_options()
        assert self.sources is not None
        names = folder_label_names(self.sources.folders, opts)
        if self.cfg.labels != "none":
            for m in self.cfg.manifests:
                names |= manifest_label_names(m)
        label_map = parse_label_map(self.cfg.label_map)
        source_names = self.sources.label_names()
        unused = unused_label_map(label_map, names | source_names)
        if unused and unused not in self.result.warnings:
            self.result.warnings.append(unused)
        if target.dialect == "geti3":
            # no labels at upload in Geti 3 (§5): folder labels are annotations too
            self.labels_as_annotations = True
            plan = LabelPlan(target.project.name, target.project.task_type, {})
            names |= source_names
            if not names:
                return plan, None
            return plan, plan_annotation_labels(target.project, names, label_map,
                                                self.cfg.skip_unknown_labels)
        plan = plan_labels(target.project, names, label_map, self.cfg.skip_unknown_labels)
        if not self.sources.readers:
            return plan, None
        ann = plan_annotation_labels(target.project, source_names, label_map,
                                     self.cfg.skip_unknown_labels)
        return plan, ann

    def _verify_concurrency(self) -> int:
        return FIXED_DEFAULT if self.cfg.concurrency_auto else self.cfg.concurrency

    def _ceiling(self, client: GetiClient) -> int:
        """Most uploads in flight: the setting, or by default 64 (10 for Geti 3, whose
        writes go to one SQLite file; GETI3_API.md §5)."""
        if self.cfg.concurrency_auto and client.dialect == "geti3":
            shards = self.cfg.shard.count if self.cfg.shard is not None else 1
            return min(self.cfg.concurrency, shard_concurrency(GETI3_CEILING, shards))
        return self.cfg.concurrency

    def _scan_options(self) -> ScanOptions:
        c = self.cfg
        return ScanOptions(labels=c.labels, include=c.include, exclude=c.exclude,
                           follow_symlinks=c.follow_symlinks, include_hidden=c.include_hidden,
                           shard=c.shard)

    async def _existing(self, client: GetiClient, target: Target) -> ExistingIndex:
        index: ExistingIndex = {}
        async for page in client.query_media(target):
            for item in page:
                index.setdefault((item.type, item.name, item.extension), []).append(item)
        return index

    async def _run_workers(self, client: GetiClient, target: Target, plan: LabelPlan,
                           existing: ExistingIndex | None,
                           ann_labels: AnnotationLabels | None = None) -> None:
        _import_late()
        cfg = self.cfg
        journal: Journal | None = None
        resumes: JournalResumeStore | None = None
        lock: JournalLock | None = None
        dry_reader: JournalReader | None = None
        path = None
        shard = str(cfg.shard) if cfg.shard is not None else None
        if cfg.use_journal:
            path = cfg.journal or default_journal_path(target.host, target.project.id,
                                                       target.dataset.id, shard)
        if path is not None and path.is_file() and path.stat().st_size:
            check_journal_file(path)   # never write a journal's tables into another file
        if path is not None and not cfg.dry_run:
            lock = JournalLock.acquire(path)   # one run per journal, else JournalBusyError
            try:
                _check_journal_shard(path, cfg)
                journal = Journal(path, target=target.describe())
            except BaseException:
                lock.release()
                raise
            journal.start()
            journal.set_meta("shard", shard or "0/1")   # committed with the first mark
            if shard is not None:
                journal.set_meta("shard_rule", SPLIT_RULE)
            self.result.journal_path = path
            # where a resumable upload's URL outlives the process (used by Geti 3's TUS)
            resumes = client.resume_store = JournalResumeStore(journal)
        elif path is not None and path.is_file():
            _check_journal_shard(path, cfg)
            dry_reader = JournalReader(path)   # a dry run reads the journal, writes nothing
        try:
            report = ReportWriter(cfg.report or _default_report_path(journal, path), path)
        except BaseException:
            if journal is not None:
                await journal.close()
            if lock is not None:
                lock.release()
            raise
        self.result.report_path = report.path
        self._report = report
        reporter = MultiReporter(self.reporter, report)
        ceiling = self._ceiling(client)
        limiter = AdaptiveLimiter(ceiling, adaptive=cfg.adaptive,
                                  max_bytes=cfg.max_inflight_bytes,
                                  trials=cfg.shard is None or cfg.shard.count == 1,
                                  sharers=cfg.shard.count if cfg.shard is not None else 1,
                                  on_change=lambda n: reporter.emit(ConcurrencyChanged(n)))
        budget = RetryBudget(self.policy)
        gate = OutageGate(lambda: client.probe(target), reporter, max_outage=cfg.max_outage,
                          rng=self.rng)
        annotator = Annotator(client, ann_labels, limiter, self.policy, budget, reporter,
                              rng=self.rng, sleep=self.sleep or anyio.sleep, gate=gate)
        up = FileUploader(client, target, plan, limiter, self.policy, budget, reporter, journal,
                          chunk_size=cfg.chunk_size, existing=existing,
                          reupload_changed=cfg.reupload_changed, dry_run=cfg.dry_run,
                          hash_content=cfg.hash_content,
                          rng=self.rng, sleep=self.sleep, annotator=annotator,
                          source=self.sources, targets=self.targets, gate=gate)
        reporter.emit(RunStarted(target.describe(), limiter.limit, cfg.dry_run,
                                 ceiling if cfg.adaptive else None))
        if cfg.shard is not None:
            self.notices.append(
                f"shard {cfg.shard}: only the files whose path (relative to its source "
                f"argument) hashes to {cfg.shard.index} of {cfg.shard.count}"
                + (f"; journal {path}" if path is not None else ""))
        for text in self.notices:
            reporter.emit(Notice(text))
        send, receive = anyio.create_memory_object_stream[FileJob](QUEUE_SIZE)
        ready_send, ready = anyio.create_memory_object_stream[Ready](PREFETCH_BATCH)
        fatal: GetiBulkError | None = None
        training: AutoTraining | None = None
        if not cfg.dry_run and not cfg.keep_auto_training:
            training = AutoTraining(client, target, journal, reporter, cfg.shard)
            up.before_annotating = annotator.before_posting = training.ensure_off
        try:
            if training is not None:
                training.take_over()
            async with anyio.create_task_group() as tg:
                self._workers_started = True
                tg.start_soon(self._produce, send,
                              journal.reader(writable=True) if journal else dry_reader,
                              reporter, up, journal.run_id if journal else "")
                tg.start_soon(self._prefetch, receive, ready_send, up)
                for _ in range(ceiling):
                    tg.start_soon(self._work, ready.clone(), up)
                ready.close()
            if journal is not None and up.tally.deferred and not self.stopping:
                await self._deferred_annotations(journal, up)
            if up.tally.deferred:
                reporter.emit(Notice(f"{up.tally.deferred} file(s) stored, their annotations "
                                     "not posted yet: rerun the same command to post them"))
            if cfg.dry_run:
                for text in up.dry.lines():
                    reporter.emit(Notice(text))
        except FatalError as e:
            fatal = e
        except BaseExceptionGroup as eg:
            fatals = [e for e in _leaves(eg) if isinstance(e, FatalError)]
            if not fatals:
                raise
            fatal = fatals[0]
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    if training is not None:
                        await training.restore()
                finally:
                    if journal is not None:
                        await journal.close()
                    if resumes is not None:
                        resumes.close()
                        client.resume_store = None
                    if lock is not None:
                        lock.release()
                    report.close()
            t = up.tally
            r = self.result
            r.unlabelled, r.shapes_clipped, r.shapes_dropped = (
                t.unlabelled, t.shapes_clipped, t.shapes_dropped)
            r.uploaded, r.skipped, r.failed = t.uploaded, t.skipped, t.failed
            # everything the scan handed over that did not end as a row
            r.not_started = max(t.not_started, self.queued - (t.uploaded + t.skipped + t.failed
                                                              + t.deferred))
            r.bytes_sent = t.bytes_sent
            r.retries = dict(budget.by_cause)
            r.peak_concurrency = limiter.peak
        if fatal is None and self._scan_fatal is not None:
            fatal = self._scan_fatal
        if fatal is None and journal is not None and journal.error is not None:
            fatal = journal.error
        if fatal is None and report.error is not None:
            fatal = FatalError(f"the report {report.path} could not be written ({report.error}); "
                               "stopped (the journal has every file)")
        if fatal is not None:
            raise fatal

    async def _deferred_annotations(self, journal: Journal, up: FileUploader) -> None:
        """Phase two: annotations a reader knew only once its index was complete (a COCO
        file whose annotations come after its images), for media this run stored."""
        assert self.sources is not None
        sources = self.sources
        while not sources.annotations_ready():  # noqa: ASYNC110 (a thread's state, no event)
            await anyio.sleep(0.05)
        await journal.flush()
        up.tally.deferred = 0
        send, receive = anyio.create_memory_object_stream[Ready](QUEUE_SIZE)
        reader = journal.reader()

        async def produce() -> None:
            async with send:
                after = 0
                while not self.stopping:
                    try:
                        rows = await anyio.to_thread.run_sync(
                            reader.pending_annotations, journal.run_id, after)
                    except sqlite3.Error as e:
                        raise journal_error(journal.path, e, "read") from None
                    if not rows:
                        return
                    for row in rows:
                        after = row[0]
                        await send.send((_pending_job(row), None))

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(produce)
                for _ in range(up.limiter.ceiling):
                    tg.start_soon(self._work, receive.clone(), up)
                receive.close()
        finally:
            reader.close()

    async def _prefetch(self, receive: MemoryObjectReceiveStream[FileJob],
                        out: MemoryObjectSendStream[Ready], up: FileUploader) -> None:
        """Between the producer and the workers: the small files among the jobs waiting
        are read whole, up to `PREFETCH_BATCH` of them (and `PREFETCH_BYTES`) in one
        thread hop, instead of one hop per file in its worker (~0.1-0.2 ms of CPU each).
        At most two batches are held: the one being read and the one handed over."""
        async with receive, out:
            async for job in receive:
                batch = [job]
                nbytes = job.size
                while len(batch) < PREFETCH_BATCH and nbytes < PREFETCH_BYTES:
                    try:
                        job = receive.receive_nowait()
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                    batch.append(job)
                    nbytes += max(job.size, 0)
                wanted = [j for j in batch if up.prefetchable(j)] if not self.stopping else []
                heads: list[Head | None] = [None] * len(batch)
                if wanted:
                    heads = await anyio.to_thread.run_sync(read_heads, batch, up.prefetchable)
                    await self._premark(batch, heads, up)
                for item in zip(batch, heads, strict=True):
                    await _send(out, item)

    async def _premark(self, batch: list[FileJob], heads: list[Head | None],
                       up: FileUploader) -> None:
        """The batch's fresh sends marked `sending` in one commit (instead of one commit
        per file, each a thread hop both ways): durable before their worker sends a byte.
        A file the run then stops before sending gets its mark taken back (`_work`); a
        killed or cancelled run leaves it `sending`, asked for by the next run, as it
        does the uploads in flight."""
        journal = up.journal
        if journal is None or self.stopping:
            return
        fresh = [(job, head) for job, head in zip(batch, heads, strict=True)
                 if head is not None and up.premarkable(job, head)]
        if not fresh:
            return
        try:   # one group commit
            await asyncio.gather(*(journal.mark_sending_soon(job) for job, _ in fresh))
        except FatalError as e:      # the journal failed the write: the run stops
            self.request_stop(str(e))
            raise
        for _, head in fresh:
            head.marked = True

    async def _work(self, receive: MemoryObjectReceiveStream[Ready], up: FileUploader) -> None:
        async with receive:
            while True:
                try:
                    job, ahead = await _receive(receive)
                except anyio.EndOfStream:
                    return
                if self.stopping:
                    up.tally.not_started += 1
                    up.unmark(job, ahead)
                    continue
                try:
                    self._check_outputs(up)
                    await up.process(job, ahead)
                except FatalError as e:
                    self.request_stop(str(e))
                    raise
                except sqlite3.Error as e:   # a journal read outside the writer thread
                    path = up.journal.path if up.journal is not None else Path("?")
                    err = journal_error(path, e)
                    self.request_stop(str(err))
                    raise err from None
                except Exception as e:  # noqa: BLE001 — one file's surprise is its row
                    try:
                        up.fail_unexpected(job, e)
                    except FatalError as stop:
                        self.request_stop(str(stop))
                        raise

    def _check_outputs(self, up: FileUploader) -> None:
        """The journal or the report failed a write (a full disk): stop before the next file."""
        if up.journal is not None:
            up.journal.check()
        report = self._report
        if report is not None and report.error is not None:
            raise FatalError(f"the report {report.path} could not be written "
                             f"({report.error}); stopped (the journal has every file)")

    async def _produce(self, send: MemoryObjectSendStream[FileJob], reader: JournalReader | None,
                       reporter: Reporter, up: FileUploader, run_id: str = "") -> None:
        batches_send, batches = anyio.create_memory_object_stream[ScanBatch](4)
        files = total = 0
        async with send, anyio.create_task_group() as tg:
            tg.start_soon(self._scan_guarded, batches_send, reader, run_id)
            async with batches:
                async for batch in batches:
                    if batch.settled:
                        # settled by the journal in the scan thread: counted, not sent
                        files += batch.settled
                        total += batch.settled_bytes
                        self.queued = files
                        up.tally.skipped += batch.settled
                        reporter.emit(JournalSkipped(batch.settled, batch.settled_bytes))
                    for job in batch.jobs:
                        if self.stopping:
                            break
                        files += 1
                        self.queued = files
                        total += job.size
                        reporter.emit(FileQueued(job.key, job.size))
                        if job.prior_state is not None and up.settle_from_journal(job):
                            continue
                        await _send(send, job)
            if not self.stopping and self._scan_fatal is None:
                reporter.emit(ScanDone(files, total))

    async def _scan_guarded(self, out: MemoryObjectSendStream[ScanBatch],
                            reader: JournalReader | None, run_id: str = "") -> None:
        """A scan that fails midway (an I/O error on the source, an unreadable journal)
        stops the run gracefully: the files already handed over finish, then one line."""
        try:
            await self._scan_thread(out, reader, run_id)
        except (anyio.get_cancelled_exc_class(), FatalError):
            raise
        except sqlite3.Error as e:
            path = reader.path if reader is not None else Path("?")
            self._scan_failed(journal_error(path, e, "read"))
        except Exception as e:  # noqa: BLE001 — the source, not a file: one line
            if isinstance(e, ConfigError):    # a dataset file found wrong midway: exit 2
                self._scan_failed(e)
                return
            what = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            where = f" ({e.filename})" if isinstance(e, OSError) and e.filename else ""
            self._scan_failed(FatalError(
                f"reading the source failed: {type(e).__name__}: {what}{where}; stopped "
                "after the files already found. Rerun the same command to resume"))

    def _scan_failed(self, error: GetiBulkError) -> None:
        """The files already found still go (the queue drains), then the run stops."""
        self._scan_fatal = error

    async def _scan_thread(self, out: MemoryObjectSendStream[ScanBatch],
                           reader: JournalReader | None, run_id: str = "") -> None:
        opts = self._scan_options()
        cfg = self.cfg

        sources = self.sources
        assert sources is not None
        subsets = {k: t.dataset.id for k, t in self.subset_map.items()}
        prior = PriorLookup(reader, run_id, per_file=cfg.verbose, hash_content=cfg.hash_content)

        def counted(n: int, nbytes: int) -> None:
            """Files settled before any job was made: told now and then, not one by one."""
            if self.stopping:
                raise _ScanStopped
            if n >= SETTLED_REPORT:
                anyio.from_thread.run(out.send, ScanBatch(settled=n, settled_bytes=nbytes))
                prior.pending = (0, 0)

        prior.on_settled = counted
        settle = prior.settle if reader is not None and not cfg.verbose else None

        def jobs() -> Iterator[FileJob]:
            for job in iter_jobs(sources.folders, cfg.manifests, opts, self.scan_counts, settle):
                yield self._routed(job, subsets)
            yield from dataset_jobs(sources, subsets, opts.shard)

        def scan() -> None:
            try:
                batch: list[FileJob] = []
                found = jobs()
                failure: Exception | None = None
                while True:
                    try:
                        job = next(found)
                    except StopIteration:
                        break
                    except _ScanStopped:
                        return
                    except Exception as e:  # noqa: BLE001 — the files found so far still go
                        failure = e
                        break
                    if self.stopping:
                        return
                    batch.append(job)
                    if len(batch) >= SCAN_BATCH:
                        anyio.from_thread.run(out.send, prior.batch(batch))
                        batch = []
                if batch or prior.pending[0]:
                    anyio.from_thread.run(out.send, prior.batch(batch))
                if failure is not None:
                    raise failure
            except _ScanStopped:
                return
            finally:
                if reader is not None:
                    reader.close()
                anyio.from_thread.run_sync(out.close)

        async with out:
            await anyio.to_thread.run_sync(scan, abandon_on_cancel=True)


async def _receive(stream: MemoryObjectReceiveStream[Any]) -> Any:
    """The next item, taken at once when one is waiting: anyio's `receive()` first yields
    to the loop (a checkpoint), a loop round trip per file on the way to the workers."""
    try:
        return stream.receive_nowait()
    except anyio.WouldBlock:
        return await stream.receive()


async def _send(stream: MemoryObjectSendStream[Any], item: Any) -> None:
    """`send()`, without its checkpoint when the buffer has room (see `_receive`)."""
    try:
        stream.send_nowait(item)
    except anyio.WouldBlock:
        await stream.send(item)


def _check_journal_shard(path: Path, cfg: UploadConfig) -> None:
    """A journal kept by another shard (or by an unsharded run) stops this run (exit 2)."""
    if not path.is_file():
        return
    reader = JournalReader(path)
    try:
        meta = reader.meta()
        recorded, rule = meta.get("shard"), meta.get("shard_rule")
        has_rows = recorded is None and reader.has_rows()
    except sqlite3.DatabaseError:
        return   # not a journal, or an empty file: opening it says so
    finally:
        reader.close()
    problem = journal_shard_problem(recorded, has_rows, cfg.shard, path, rule)
    if problem:
        raise ConfigError(problem)


SETTLED_REPORT = 20_000    # settled files told to the loop at least this many at a time


class _ScanStopped(Exception):
    """The run is stopping: the scan thread leaves the walk."""


@dataclass(slots=True)
class ScanBatch:
    """What the scan thread hands the loop: the jobs to send, and a count of the files
    the journal settled (uploaded before, unchanged), which need no job at all."""

    jobs: list[FileJob] = field(default_factory=list)
    settled: int = 0
    settled_bytes: int = 0


class PriorLookup:
    """The journal's word on each scanned file, in the scan thread, one batch at a time.

    A file found under its identity takes that row's state. A file not found may be a
    moved or remounted one (`JournalReader.find_moved`): its row is re-keyed to the new
    identity (a dry run only reads it). Files uploaded before and unchanged are counted,
    not handed on (`per_file`: handed on, for one report row each). A file this run has
    already handed on (a followed symlink, two overlapping sources) is skipped."""

    RECENT = 8192     # identities handed on lately, whose rows may not be written yet

    def __init__(self, reader: JournalReader | None, run_id: str, *, per_file: bool = False,
                 hash_content: bool = False) -> None:
        self.reader = reader
        self.run_id = run_id
        self.per_file = per_file
        self.hash_content = hash_content
        self._recent: set[str] = set()
        self._order: collections.deque[str] = collections.deque()
        self.moved = 0
        self.pending = (0, 0)     # files (and bytes) settled by `settle`, not yet told
        self.on_settled: Callable[[int, int], None] | None = None

    def settle(self, entries: list[tuple[str, int, int]]) -> set[int]:
        """`scan.Settle`: which of a folder's files the journal already holds as uploaded
        and unchanged; they get no job at all and are only counted."""
        assert self.reader is not None
        drop = self.reader.settled(entries, self.run_id)
        if drop:
            n, nbytes = self.pending
            self.pending = (n + len(drop), nbytes + sum(entries[i][1] for i in drop))
            if self.on_settled is not None:
                self.on_settled(*self.pending)
        return drop

    def _remember(self, key: str) -> None:
        self._recent.add(key)
        self._order.append(key)
        if len(self._order) > self.RECENT:
            self._recent.discard(self._order.popleft())

    def batch(self, jobs: list[FileJob]) -> ScanBatch:
        out = ScanBatch()
        out.settled, out.settled_bytes = self.pending
        self.pending = (0, 0)
        reader = self.reader
        if reader is None:
            out.jobs = jobs
            return out
        prior = reader.lookup(j.key for j in jobs)
        moves: list[tuple[str, str, str]] = []
        taken: set[str] = set()
        for job in jobs:
            key = job.key
            if key in self._recent:
                out.jobs.append(dataclasses.replace(job, prior_state=AGAIN))
                continue
            p = prior.get(key)
            if p is not None and self.run_id and p.run_id == self.run_id:
                out.jobs.append(dataclasses.replace(job, prior_state=AGAIN))
                continue
            if p is None and job.problem is None and job.kind is not None:
                p = self._moved(job, moves, taken)
            if (p is not None and p.state in ("uploaded", "skipped") and p.media_id
                    and p.size == job.size and p.mtime_ns == job.mtime_ns and not self.per_file):
                out.settled += 1
                out.settled_bytes += job.size
                continue
            self._remember(key)
            if p is None:
                out.jobs.append(job)
                continue
            out.jobs.append(dataclasses.replace(
                job, prior_state=p.state, prior_media_id=p.media_id, prior_size=p.size,
                prior_mtime_ns=p.mtime_ns, prior_uncertain=p.uncertain, prior_sha256=p.sha256,
                prior_width=p.width, prior_height=p.height, prior_updated=p.updated))
        if moves:
            self.moved += len(reader.rekey(moves))
        return out

    def _moved(self, job: FileJob, moves: list[tuple[str, str, str]],
               taken: set[str]) -> PriorState | None:
        assert self.reader is not None
        check = (lambda digest: _sha256(job.path) == digest) if self.hash_content else None
        found = self.reader.find_moved(job.key, job.path, job.size, job.mtime_ns, check)
        if found is None:
            return None
        old_key, p, rekey = found
        if rekey:
            if old_key in taken:
                return None        # another file of this batch is that row's file
            taken.add(old_key)
            if self.reader.writable:
                moves.append((old_key, job.key, job.path))
        return p


def _sha256(path: str) -> str | None:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    except OSError:
        return None
    return h.hexdigest()


def _pending_job(row: tuple[int, str, str, int, int, str, int, int, str | None, str | None,
                             int | None]) -> FileJob:
    """A journal row of a file whose media is stored and whose annotation is deferred."""
    _, key, path, size, mtime_ns, media_id, width, height, dataset_id, rel, reader = row
    kind = media_kind(path)
    return FileJob(path=path, key=key, size=size, mtime_ns=mtime_ns,
                   kind=kind.kind if kind else "image", deferred=True, rel=rel or "",
                   reader=-1 if reader is None else reader,
                   dataset_id=dataset_id, prior_state="media", prior_media_id=media_id,
                   prior_size=size, prior_mtime_ns=mtime_ns, prior_width=width,
                   prior_height=height)


def _close_opened(opening: asyncio.Future[Sources]) -> None:
    """Close sources opened for a run that stopped before it took them."""
    if not opening.cancelled() and opening.exception() is None:
        opening.result().close()


def _subset_targets(target: Target, pairs: tuple[tuple[str, str], ...]) -> dict[str, Target]:
    """subset name → the target of the dataset it goes to (`--subset-dataset`)."""
    out: dict[str, Target] = {}
    for subset, wanted in pairs:
        out[subset] = dataclasses.replace(target, dataset=pick_dataset(target.project, wanted))
    return out


def _first_leaf(e: BaseException) -> BaseException:
    """The exception itself, or the first real one an exception group holds."""
    if isinstance(e, BaseExceptionGroup):
        leaves = list(_leaves(e))
        real = [x for x in leaves if not isinstance(x, anyio.get_cancelled_exc_class())]
        return (real or leaves or [e])[0]
    return e


def _leaves(eg: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for e in eg.exceptions:
        if isinstance(e, BaseExceptionGroup):
            yield from _leaves(e)
        else:
            yield e


def _default_report_path(journal: Journal | None, path: Path | None = None) -> Path:
    """Next to the journal (or in the current folder without one), unique per run."""
    now = time.time()
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now)) + f"-{int(now * 1000) % 1000:03d}"
    name = f"-report-{stamp}-{os.getpid()}.jsonl"
    where = journal.path if journal is not None else path
    if where is not None:
        return where.with_name(where.stem + name)
    return Path("geti-bulk" + name)


@contextlib.contextmanager
def signal_handlers(on_signal: Callable[[int], None], enabled: bool = True) -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP call `on_signal(signum)` while the run lasts (upload's
    and migrate's); after it they are ignored: a late signal has nothing left to cancel."""
    if not enabled:
        yield
        return
    loop = asyncio.get_running_loop()
    signals = [s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None))
               if s is not None]
    try:
        for s in signals:
            loop.add_signal_handler(s, on_signal, s)
    except (NotImplementedError, ValueError, RuntimeError):
        # Windows' event loops (Ctrl-C stays KeyboardInterrupt), or a run in a thread
        yield
        return
    try:
        yield
    finally:
        for s in signals:
            loop.remove_signal_handler(s)
            # the run is over: a late signal has nothing left to cancel and must not
            # turn the tidy exit (journal closed, summary printed) into a traceback
            signal.signal(s, signal.SIG_IGN)


async def run_upload(cfg: UploadConfig, reporter: Reporter, *, handle_signals: bool = False,
                     **kwargs: object) -> RunResult:
    """Library entry point: upload what `cfg` describes, reporting events to `reporter`."""
    run = Run(cfg, reporter, **kwargs)  # type: ignore[arg-type]
    return await run.execute(handle_signals=handle_signals)


__all__ = ["Run", "RunResult", "run_upload"]
