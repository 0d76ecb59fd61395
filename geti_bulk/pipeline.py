"""One run: resolve the target, plan labels, then one producer and N workers in one
anyio task group over one aiohttp session, with nothing unbounded between them.

Per-file errors become rows; a FatalError stops the run at once (in-flight uploads are
cancelled and stay `sending` in the journal, so the next run reconciles them). A first
`request_stop()` (Ctrl-C) stops feeding and lets in-flight uploads finish; `cancel()`
(a second Ctrl-C) cancels them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import os
import random
import signal
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from geti_bulk.annotate import Annotator
from geti_bulk.attempts import ExistingIndex, FileUploader
from geti_bulk.autotrain import AutoTraining
from geti_bulk.concurrency import AdaptiveLimiter
from geti_bulk.config import FIXED_DEFAULT, GETI3_CEILING, NO_TOKEN, UploadConfig
from geti_bulk.datasets import Sources, dataset_jobs, open_sources
from geti_bulk.errors import ConfigError, FatalError, GetiBulkError
from geti_bulk.events import (
    ConcurrencyChanged,
    FileQueued,
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
from geti_bulk.jobs import FileJob
from geti_bulk.journal import Journal, JournalReader, JournalResumeStore, default_journal_path
from geti_bulk.journal_lock import JournalLock
from geti_bulk.labels import (
    AnnotationLabels,
    LabelPlan,
    parse_label_map,
    plan_annotation_labels,
    plan_labels,
)
from geti_bulk.media import media_kind
from geti_bulk.outage import OutageGate
from geti_bulk.report import ReportWriter
from geti_bulk.retry import RetryBudget, RetryPolicy
from geti_bulk.scan import ScanOptions, folder_label_names, iter_jobs, manifest_label_names
from geti_bulk.sources.model import SourceAnnotation, SourceObject

SCAN_BATCH = 256
QUEUE_SIZE = 512


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

    @property
    def exit_code(self) -> int:
        if self.fatal:
            return self.fatal_code
        if self.interrupted:
            return 130
        return 1 if self.failed else 0


class Run:
    def __init__(self, cfg: UploadConfig, reporter: Reporter, *,
                 session: aiohttp.ClientSession | None = None, rng: random.Random | None = None,
                 sleep: Callable[[float], Awaitable[None]] | None = None,
                 policy: RetryPolicy | None = None, verify_report: Path | None = None) -> None:
        self.cfg = cfg
        self.verify_report = verify_report   # set: compare the source with Geti, send nothing
        self.verify_result: Any = None
        self.reporter = reporter
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
        """First Ctrl-C: finish in-flight uploads; second: cancel them. Before any upload
        has started (still resolving the target, planning labels) there is nothing to
        finish, so the first one cancels."""
        self.result.interrupted = True
        if self.stopping is None and self._workers_started:
            self.request_stop("interrupted (Ctrl-C)")
        else:
            self.request_stop("interrupted (Ctrl-C)")
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
                self.result.fatal = f"{type(e).__name__}: {e.strerror or e}"
        self.result.elapsed = time.monotonic() - start
        r = self.result
        self.reporter.emit(RunFinished(
            uploaded=r.uploaded, skipped=r.skipped, failed=r.failed, bytes_sent=r.bytes_sent,
            elapsed=r.elapsed, retries=dict(r.retries), fatal=r.fatal, interrupted=r.interrupted,
            not_started=r.not_started, report_path=str(r.report_path) if r.report_path else None))
        return r

    @contextlib.contextmanager
    def _signals(self, enabled: bool) -> Iterator[None]:
        if not enabled:
            yield
            return
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGINT, self.on_sigint)
            loop.add_signal_handler(signal.SIGTERM, self.on_sigint)
        except NotImplementedError:   # Windows' event loops: Ctrl-C stays KeyboardInterrupt
            yield
            return
        try:
            yield
        finally:
            loop.remove_signal_handler(signal.SIGINT)
            loop.remove_signal_handler(signal.SIGTERM)
            # the run is over: a late Ctrl-C has nothing left to cancel and must not turn
            # the tidy exit (journal closed, summary printed) into a traceback
            signal.signal(signal.SIGINT, signal.SIG_IGN)

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
        try:
            client = await self._client(session)
            self.target = target = await client.resolve(cfg.project, cfg.dataset, cfg.workspace)
            if target.dialect == "geti3" and cfg.subset_dataset:
                raise ConfigError("subset_dataset: Geti 3 has one dataset per project; each "
                                  "file's subset goes into its annotation instead")
            self.subset_map = _subset_targets(target, cfg.subset_dataset)
            self.targets = {t.dataset.id: t for t in self.subset_map.values()}
            self.sources = await anyio.to_thread.run_sync(self._open_sources)
            self.notices = [f"format: {line}" for line in self.sources.described]
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
        opts = self._scan_options()
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
        cfg = self.cfg
        index_dir = (cfg.journal.parent if cfg.journal else
                     Path(tempfile.gettempdir())) / "geti-bulk-index"
        return open_sources(cfg.sources, cfg.format, index_dir)

    def _plan_labels(self, target: Target) -> tuple[LabelPlan, AnnotationLabels | None]:
        opts = self._scan_options()
        assert self.sources is not None
        names = folder_label_names(self.sources.folders, opts)
        if self.cfg.labels != "none":
            for m in self.cfg.manifests:
                names |= manifest_label_names(m)
        label_map = parse_label_map(self.cfg.label_map)
        if target.dialect == "geti3":
            # no labels at upload in Geti 3 (§5): folder labels are annotations too
            self.labels_as_annotations = True
            plan = LabelPlan(target.project.name, target.project.task_type, {})
            names |= self.sources.label_names()
            if not names:
                return plan, None
            return plan, plan_annotation_labels(target.project, names, label_map,
                                                self.cfg.skip_unknown_labels)
        plan = plan_labels(target.project, names, label_map, self.cfg.skip_unknown_labels)
        if not self.sources.readers:
            return plan, None
        ann = plan_annotation_labels(target.project, self.sources.label_names(), label_map,
                                     self.cfg.skip_unknown_labels)
        return plan, ann

    def _verify_concurrency(self) -> int:
        return FIXED_DEFAULT if self.cfg.concurrency_auto else self.cfg.concurrency

    def _ceiling(self, client: GetiClient) -> int:
        """Most uploads in flight: the setting, or by default 64 (10 for Geti 3, whose
        writes go to one SQLite file; GETI3_API.md §5)."""
        if self.cfg.concurrency_auto and client.dialect == "geti3":
            return min(self.cfg.concurrency, GETI3_CEILING)
        return self.cfg.concurrency

    def _scan_options(self) -> ScanOptions:
        c = self.cfg
        return ScanOptions(labels=c.labels, include=c.include, exclude=c.exclude,
                           follow_symlinks=c.follow_symlinks, include_hidden=c.include_hidden)

    async def _existing(self, client: GetiClient, target: Target) -> ExistingIndex:
        index: ExistingIndex = {}
        async for page in client.query_media(target):
            for item in page:
                index.setdefault((item.type, item.name, item.extension), []).append(item)
        return index

    async def _run_workers(self, client: GetiClient, target: Target, plan: LabelPlan,
                           existing: ExistingIndex | None,
                           ann_labels: AnnotationLabels | None = None) -> None:
        cfg = self.cfg
        journal: Journal | None = None
        lock: JournalLock | None = None
        dry_reader: JournalReader | None = None
        path = None
        if cfg.use_journal:
            path = cfg.journal or default_journal_path(target.host, target.project.id,
                                                       target.dataset.id)
        if path is not None and not cfg.dry_run:
            lock = JournalLock.acquire(path)   # one run per journal, else JournalBusyError
            journal = Journal(path, target=target.describe())
            journal.start()
            self.result.journal_path = path
            if client.dialect == "geti3":    # a TUS upload resumes after a kill -9
                from geti_bulk.geti.v3 import Geti3Client

                assert isinstance(client, Geti3Client)
                client.resume_store = JournalResumeStore(journal)
        elif path is not None and path.is_file():
            dry_reader = JournalReader(path)   # a dry run reads the journal, writes nothing
        report = ReportWriter(cfg.report or _default_report_path(journal, path))
        self.result.report_path = report.path
        reporter = MultiReporter(self.reporter, report)
        ceiling = self._ceiling(client)
        limiter = AdaptiveLimiter(ceiling, adaptive=cfg.adaptive,
                                  max_bytes=cfg.max_inflight_bytes,
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
        reporter.emit(RunStarted(target.describe(), limiter.limit, cfg.dry_run))
        for text in self.notices:
            reporter.emit(Notice(text))
        send, receive = anyio.create_memory_object_stream[FileJob](QUEUE_SIZE)
        fatal: FatalError | None = None
        training: AutoTraining | None = None
        if not cfg.dry_run and not cfg.keep_auto_training:
            training = AutoTraining(client, target, journal, reporter)
            up.before_annotating = annotator.before_posting = training.ensure_off
        try:
            if training is not None:
                training.take_over()
            async with anyio.create_task_group() as tg:
                self._workers_started = True
                tg.start_soon(self._produce, send,
                              journal.reader() if journal else dry_reader, reporter, up)
                for _ in range(ceiling):
                    tg.start_soon(self._work, receive.clone(), up)
                receive.close()
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
                if training is not None:
                    await training.restore()
                if journal is not None:
                    await journal.close()
                if lock is not None:
                    lock.release()
                report.close()
            t = up.tally
            r = self.result
            r.uploaded, r.skipped, r.failed = t.uploaded, t.skipped, t.failed
            # everything the scan handed over that did not end as a row
            r.not_started = max(t.not_started, self.queued - (t.uploaded + t.skipped + t.failed
                                                              + t.deferred))
            r.bytes_sent = t.bytes_sent
            r.retries = dict(budget.by_cause)
            r.peak_concurrency = limiter.peak
        if fatal is not None:
            raise fatal
        if journal is not None and journal.error is not None:
            raise FatalError(f"the journal could not be written: {journal.error}")

    async def _deferred_annotations(self, journal: Journal, up: FileUploader) -> None:
        """Phase two: annotations a reader knew only once its index was complete (a COCO
        file whose annotations come after its images), for media this run stored."""
        assert self.sources is not None
        sources = self.sources
        while not sources.annotations_ready():  # noqa: ASYNC110 (a thread's state, no event)
            await anyio.sleep(0.05)
        await journal.flush()
        up.tally.deferred = 0
        send, receive = anyio.create_memory_object_stream[FileJob](QUEUE_SIZE)
        reader = journal.reader()

        async def produce() -> None:
            async with send:
                after = 0
                while not self.stopping:
                    rows = await anyio.to_thread.run_sync(
                        reader.pending_annotations, journal.run_id, after)
                    if not rows:
                        return
                    for row in rows:
                        after = row[0]
                        await send.send(_pending_job(row))

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(produce)
                for _ in range(up.limiter.ceiling):
                    tg.start_soon(self._work, receive.clone(), up)
                receive.close()
        finally:
            reader.close()

    async def _work(self, receive: MemoryObjectReceiveStream[FileJob], up: FileUploader) -> None:
        async with receive:
            async for job in receive:
                if self.stopping:
                    up.tally.not_started += 1
                    continue
                try:
                    await up.process(job)
                except FatalError as e:
                    self.request_stop(str(e))
                    raise

    async def _produce(self, send: MemoryObjectSendStream[FileJob], reader: JournalReader | None,
                       reporter: Reporter, up: FileUploader) -> None:
        batches_send, batches = anyio.create_memory_object_stream[list[FileJob]](4)
        files = total = 0
        async with send, anyio.create_task_group() as tg:
            tg.start_soon(self._scan_thread, batches_send, reader)
            async with batches:
                async for batch in batches:
                    for job in batch:
                        if self.stopping:
                            break
                        files += 1
                        self.queued = files
                        total += job.size
                        reporter.emit(FileQueued(job.key, job.size))
                        if job.prior_state is not None and up.settle_from_journal(job):
                            continue
                        await send.send(job)
            if not self.stopping:
                reporter.emit(ScanDone(files, total))

    async def _scan_thread(self, out: MemoryObjectSendStream[list[FileJob]],
                           reader: JournalReader | None) -> None:
        opts = self._scan_options()
        cfg = self.cfg

        sources = self.sources
        assert sources is not None
        subsets = {k: t.dataset.id for k, t in self.subset_map.items()}

        def jobs() -> Iterator[FileJob]:
            for job in iter_jobs(sources.folders, cfg.manifests, opts):
                yield self._routed(job, subsets)
            yield from dataset_jobs(sources, subsets)

        def scan() -> None:
            try:
                batch: list[FileJob] = []
                for job in jobs():
                    if self.stopping:
                        return
                    batch.append(job)
                    if len(batch) >= SCAN_BATCH:
                        anyio.from_thread.run(out.send, _with_journal(batch, reader))
                        batch = []
                if batch:
                    anyio.from_thread.run(out.send, _with_journal(batch, reader))
            finally:
                if reader is not None:
                    reader.close()
                anyio.from_thread.run_sync(out.close)

        async with out:
            await anyio.to_thread.run_sync(scan, abandon_on_cancel=True)


def _with_journal(batch: list[FileJob], reader: JournalReader | None) -> list[FileJob]:
    if reader is None:
        return batch
    prior = reader.lookup(j.key for j in batch)
    out = []
    for job in batch:
        p = prior.get(job.key)
        if p is None:
            out.append(job)
            continue
        out.append(dataclasses.replace(
            job, prior_state=p.state, prior_media_id=p.media_id, prior_size=p.size,
            prior_mtime_ns=p.mtime_ns, prior_uncertain=p.uncertain, prior_sha256=p.sha256,
            prior_width=p.width, prior_height=p.height, prior_updated=p.updated))
    return out


def _pending_job(row: tuple[int, str, str, int, int, str, int, int, str | None]) -> FileJob:
    """A journal row of a file whose media is stored and whose annotation is deferred."""
    _, key, path, size, mtime_ns, media_id, width, height, dataset_id = row
    kind = media_kind(path)
    return FileJob(path=path, key=key, size=size, mtime_ns=mtime_ns,
                   kind=kind.kind if kind else "image", deferred=True, rel=key,
                   dataset_id=dataset_id, prior_state="media", prior_media_id=media_id,
                   prior_size=size, prior_mtime_ns=mtime_ns, prior_width=width,
                   prior_height=height)


def _subset_targets(target: Target, pairs: tuple[tuple[str, str], ...]) -> dict[str, Target]:
    """subset name → the target of the dataset it goes to (`--subset-dataset`)."""
    out: dict[str, Target] = {}
    for subset, wanted in pairs:
        out[subset] = dataclasses.replace(target, dataset=pick_dataset(target.project, wanted))
    return out


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


async def run_upload(cfg: UploadConfig, reporter: Reporter, *, handle_signals: bool = False,
                     **kwargs: object) -> RunResult:
    """Library entry point: upload what `cfg` describes, reporting events to `reporter`."""
    run = Run(cfg, reporter, **kwargs)  # type: ignore[arg-type]
    return await run.execute(handle_signals=handle_signals)


__all__ = ["Run", "RunResult", "run_upload"]
