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
import os
import random
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from geti_bulk.attempts import ExistingIndex, FileUploader
from geti_bulk.concurrency import AdaptiveLimiter
from geti_bulk.config import UploadConfig
from geti_bulk.errors import FatalError, GetiBulkError
from geti_bulk.events import (
    ConcurrencyChanged,
    FileQueued,
    MultiReporter,
    Reporter,
    RunFinished,
    RunStarted,
    RunStopping,
    ScanDone,
)
from geti_bulk.geti.client import GetiClient, Target, env_proxy, make_ssl
from geti_bulk.jobs import FileJob
from geti_bulk.journal import Journal, JournalReader, default_journal_path
from geti_bulk.labels import LabelPlan, plan_labels
from geti_bulk.report import ReportWriter
from geti_bulk.retry import RetryBudget, RetryPolicy
from geti_bulk.scan import ScanOptions, folder_label_names, iter_jobs, manifest_label_names

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

    @property
    def exit_code(self) -> int:
        if self.fatal:
            return 3
        if self.interrupted:
            return 130
        return 1 if self.failed else 0


class Run:
    def __init__(self, cfg: UploadConfig, reporter: Reporter, *,
                 session: aiohttp.ClientSession | None = None, rng: random.Random | None = None,
                 sleep: Callable[[float], Awaitable[None]] | None = None,
                 policy: RetryPolicy | None = None) -> None:
        self.cfg = cfg
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
        if session is None:
            connector = aiohttp.TCPConnector(limit=cfg.concurrency + 4,
                                             ssl=make_ssl(cfg.ca_bundle, cfg.insecure))
            session = aiohttp.ClientSession(
                connector=connector, trust_env=False,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, connect=60))
        try:
            client = GetiClient(session, cfg.host, cfg.token, proxy=env_proxy(cfg.host))
            self.target = target = await client.resolve(cfg.project, cfg.dataset, cfg.workspace)
            plan = await anyio.to_thread.run_sync(self._plan_labels, target)
            existing = await self._existing(client, target) if cfg.skip_existing else None
            await self._run_workers(client, target, plan, existing)
        finally:
            if own:
                await session.close()

    def _plan_labels(self, target: Target) -> LabelPlan:
        opts = self._scan_options()
        names = folder_label_names(self.cfg.sources, opts)
        if self.cfg.labels != "none":
            for m in self.cfg.manifests:
                names |= manifest_label_names(m)
        return plan_labels(target.project, names)

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
                           existing: ExistingIndex | None) -> None:
        cfg = self.cfg
        journal: Journal | None = None
        if cfg.use_journal and not cfg.dry_run:
            path = cfg.journal or default_journal_path(target.host, target.project.id,
                                                       target.dataset.id)
            journal = Journal(path, target=target.describe())
            journal.start()
            self.result.journal_path = path
        report: ReportWriter | None = None
        if not cfg.dry_run:
            report = ReportWriter(cfg.report or _default_report_path(journal))
            self.result.report_path = report.path
        reporter = MultiReporter(self.reporter, report) if report else self.reporter
        limiter = AdaptiveLimiter(cfg.concurrency, adaptive=cfg.adaptive,
                                  max_bytes=cfg.max_inflight_bytes,
                                  on_change=lambda n: reporter.emit(ConcurrencyChanged(n)))
        budget = RetryBudget(self.policy)
        up = FileUploader(client, target, plan, limiter, self.policy, budget, reporter, journal,
                          chunk_size=cfg.chunk_size, existing=existing,
                          reupload_changed=cfg.reupload_changed, dry_run=cfg.dry_run,
                          hash_content=cfg.hash_content,
                          rng=self.rng, sleep=self.sleep)
        reporter.emit(RunStarted(target.describe(), limiter.limit, cfg.dry_run))
        send, receive = anyio.create_memory_object_stream[FileJob](QUEUE_SIZE)
        fatal: FatalError | None = None
        try:
            async with anyio.create_task_group() as tg:
                self._workers_started = True
                tg.start_soon(self._produce, send, journal.reader() if journal else None,
                              reporter, up)
                for _ in range(cfg.concurrency):
                    tg.start_soon(self._work, receive.clone(), up)
                receive.close()
        except FatalError as e:
            fatal = e
        except BaseExceptionGroup as eg:
            fatals = [e for e in _leaves(eg) if isinstance(e, FatalError)]
            if not fatals:
                raise
            fatal = fatals[0]
        finally:
            with anyio.CancelScope(shield=True):
                if journal is not None:
                    await journal.close()
                if report is not None:
                    report.close()
            t = up.tally
            r = self.result
            r.uploaded, r.skipped, r.failed = t.uploaded, t.skipped, t.failed
            # everything the scan handed over that did not end as a row
            r.not_started = max(t.not_started, self.queued - (t.uploaded + t.skipped + t.failed))
            r.bytes_sent = t.bytes_sent
            r.retries = dict(budget.by_cause)
            r.peak_concurrency = limiter.peak
        if fatal is not None:
            raise fatal
        if journal is not None and journal.error is not None:
            raise FatalError(f"the journal could not be written: {journal.error}")

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

        def scan() -> None:
            try:
                batch: list[FileJob] = []
                for job in iter_jobs(cfg.sources, cfg.manifests, opts):
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
        out.append(FileJob(path=job.path, key=job.key, size=job.size, mtime_ns=job.mtime_ns,
                           kind=job.kind, labels=job.labels, problem=job.problem,
                           prior_state=p.state, prior_media_id=p.media_id, prior_size=p.size,
                           prior_mtime_ns=p.mtime_ns, prior_uncertain=p.uncertain,
                           prior_sha256=p.sha256))
    return out


def _leaves(eg: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for e in eg.exceptions:
        if isinstance(e, BaseExceptionGroup):
            yield from _leaves(e)
        else:
            yield e


def _default_report_path(journal: Journal | None) -> Path:
    """Next to the journal (or in the current folder without one), unique per run."""
    now = time.time()
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now)) + f"-{int(now * 1000) % 1000:03d}"
    name = f"-report-{stamp}-{os.getpid()}.jsonl"
    if journal is not None:
        return journal.path.with_name(journal.path.stem + name)
    return Path("geti-bulk" + name)


async def run_upload(cfg: UploadConfig, reporter: Reporter, *, handle_signals: bool = False,
                     **kwargs: object) -> RunResult:
    """Library entry point: upload what `cfg` describes, reporting events to `reporter`."""
    run = Run(cfg, reporter, **kwargs)  # type: ignore[arg-type]
    return await run.execute(handle_signals=handle_signals)


__all__ = ["Run", "RunResult", "run_upload"]
