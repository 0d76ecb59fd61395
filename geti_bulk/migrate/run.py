"""One migration: resolve both sides, plan what the target can hold (before anything is
sent), then one producer paging the source's media and N workers, each moving one item
at a time: its original streamed from the source's download into the target's upload,
then its latest annotation (or a video's frame annotations).

Exactly once, as the upload path does it: the journal marks an item `sending` (durable)
before its first byte goes out, `media` with the target's id once stored, `uploaded`
once its annotation is there. After an ambiguous failure (the body went out, the answer
did not come back) the target is asked for the item by name, extension and size before
anything is sent again; a resume after `kill -9` does the same for items left `sending`,
and posts only the annotations of items left `media`.
"""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from geti_bulk.annotate import Annotator
from geti_bulk.autotrain import AutoTraining
from geti_bulk.concurrency import AdaptiveLimiter
from geti_bulk.errors import (
    ConfigError,
    FatalError,
    GetiBulkError,
    TargetNotFoundError,
    TransientError,
)
from geti_bulk.events import (
    FileQueued,
    MultiReporter,
    Notice,
    Reporter,
    RunFinished,
    RunStarted,
    RunStopping,
    ScanDone,
)
from geti_bulk.geti.client import GetiClient, Target
from geti_bulk.geti.v3 import Geti3Client, project_from_v3
from geti_bulk.journal import Journal, default_journal_path
from geti_bulk.journal_lock import JournalLock
from geti_bulk.labels import (
    AnnotationLabels,
    parse_label_map,
    plan_annotation_labels,
    unused_label_map,
)
from geti_bulk.migrate.config import MigrateConfig
from geti_bulk.migrate.mover import Mover
from geti_bulk.migrate.plan import Plan, create_body, plan_migration, project_id_for
from geti_bulk.migrate.scenes import label_names
from geti_bulk.migrate.sides import (
    Work,
    dialect_of,
    job_for,
    open_client,
    resolve_side,
    side_message,
    side_session,
)
from geti_bulk.outage import OutageGate
from geti_bulk.pipeline import RunResult, _default_report_path, signal_handlers
from geti_bulk.report import ReportWriter
from geti_bulk.retry import RetryBudget, RetryPolicy
from geti_bulk.tries import Tries

T = TypeVar("T")
QUEUE = 256
NO_TUS = 1 << 62           # a streamed body cannot be re-read from an offset: multipart only


class Migration:
    def __init__(self, cfg: MigrateConfig, reporter: Reporter, *,
                 rng: random.Random | None = None,
                 sleep: Callable[[float], Awaitable[None]] | None = None,
                 policy: RetryPolicy | None = None) -> None:
        self.cfg = cfg
        self.reporter = reporter
        self.rng = rng or random.Random()
        self.sleep = sleep or anyio.sleep
        self.policy = policy or RetryPolicy(max_attempts=cfg.max_attempts)
        self.result = RunResult()
        self.stopping: str | None = None
        self.refused: dict[str, set[str]] = {}  # what the target could not take → item keys
        self.frames_refused: str | None = None  # why the target takes no frame annotations
        self.claimed: set[str] = set()
        self.queued = 0
        self.src: Target | None = None
        self.dst: Target | None = None
        self.plan: Plan | None = None
        self._scope: anyio.CancelScope | None = None
        self._workers_started = False

    # --- control -----------------------------------------------------------------------

    def request_stop(self, reason: str) -> None:
        if self.stopping is None:
            self.stopping = reason
            self.reporter.emit(RunStopping(reason))

    def on_signal(self, signum: int = signal.SIGINT) -> None:
        """First Ctrl-C (or SIGTERM, SIGHUP): let items in flight finish; second: cancel
        them. Before any item has started (still resolving the two sides, planning) there
        is nothing to finish, so the first one cancels (as upload's)."""
        self.result.interrupted = True
        if self.result.signal is None:
            self.result.signal = signum
        name = signal.Signals(signum).name
        reason = "interrupted (Ctrl-C)" if signum == signal.SIGINT else f"interrupted ({name})"
        first = self.stopping is None
        self.request_stop(reason)
        if (not first or not self._workers_started) and self._scope is not None:
            self._scope.cancel()

    async def execute(self, *, handle_signals: bool = False) -> RunResult:
        start = time.monotonic()
        with signal_handlers(self.on_signal, handle_signals):
            try:
                with anyio.CancelScope() as self._scope:
                    await self._execute()
            except GetiBulkError as e:
                self.result.fatal = str(e)
                if isinstance(e, ConfigError):
                    self.result.fatal_code = 2
            except OSError as e:
                self.result.fatal = f"{type(e).__name__}: {e.strerror or e}"
            except Exception as e:  # noqa: BLE001 — a bug still ends as one line
                leaf = _leaves(e)[0] if isinstance(e, BaseExceptionGroup) else e
                if isinstance(leaf, GetiBulkError):
                    self.result.fatal = str(leaf)
                else:
                    self.result.internal = leaf
                    self.result.fatal = (f"internal error: {type(leaf).__name__}: {leaf} "
                                         "(set GETI_BULK_DEBUG=1 for a traceback)")
        r = self.result
        r.elapsed = time.monotonic() - start
        self.reporter.emit(RunFinished(
            uploaded=r.uploaded, skipped=r.skipped, failed=r.failed, bytes_sent=r.bytes_sent,
            elapsed=r.elapsed, retries=dict(r.retries), fatal=r.fatal, interrupted=r.interrupted,
            not_started=r.not_started, report_path=str(r.report_path) if r.report_path else None,
            signal=signal.Signals(r.signal).name if r.signal else None,
            shapes_clipped=r.shapes_clipped, shapes_dropped=r.shapes_dropped))
        return r

    # --- the two sides -------------------------------------------------------------------

    async def _execute(self) -> None:
        cfg = self.cfg
        async with side_session(cfg.source, cfg.concurrency) as s_session, \
                side_session(cfg.target, cfg.concurrency) as t_session:
            source = await open_client(s_session, cfg.source, "from")
            target = await open_client(t_session, cfg.target, "to")
            if isinstance(target, Geti3Client):
                target.tus_threshold = NO_TUS
            self.src = src = await resolve_side(source, cfg.source, "from")
            self.plan = plan = plan_migration(src.project, dialect_of(target), cfg.conversions)
            unused = unused_label_map(parse_label_map(cfg.label_map),
                                      {lab.name for lab in src.project.labels})
            if unused:
                self.result.warnings.append(unused)
            if not await self._has_media(source, src):
                # nothing to move: not an error (exit 0), never silent, nothing created
                self.result.warnings.append(f"nothing to move: {src.describe()} holds no "
                                            "image or video")
                return
            self.dst = dst = await self._target(target, src, plan)
            labels = plan_annotation_labels(dst.project, label_names(src.project, plan),
                                            parse_label_map(cfg.label_map),
                                            cfg.skip_unknown_labels)
            self._check_task(dst, plan)
            await self._run(source, target, src, dst, plan, labels)

    async def _has_media(self, source: GetiClient, src: Target) -> bool:
        async def first_page() -> bool:
            pages = source.query_media(src)
            try:
                async for page in pages:
                    if page:
                        return True
                return False
            finally:
                close = getattr(pages, "aclose", None)
                if close is not None:
                    await close()
        try:
            return await self._retrying("(list the source)", first_page, None)
        except FatalError as e:
            raise type(e)(side_message(str(e), "from")) from None

    async def _target(self, client: GetiClient, src: Target, plan: Plan) -> Target:
        cfg = self.cfg
        if not cfg.create_project:
            return await resolve_side(client, cfg.target, "to")
        if not isinstance(client, Geti3Client):
            raise ConfigError("--create-project: creating a project is supported on Geti 3 "
                              "targets; on Geti 2 create it in the web UI and pass "
                              "--to-project")
        pid = project_id_for(src.host, src.project.id, cfg.create_project)
        try:
            return await client.resolve(pid)
        except TargetNotFoundError:
            pass
        # a name Geti 3 already holds is not taken twice (a second project of that name
        # makes every later `--project NAME` ambiguous): only this migration's own project,
        # the derived id found above, is reused
        named = [p for p in await self._retrying("(list projects)", client.list_projects,
                                                 None)
                 if str(p.get("name", "")).casefold() == cfg.create_project.casefold()]
        if named:
            ids = ", ".join(str(p.get("id")) for p in named)
            raise ConfigError(f"--create-project: {client.host} already has a project named "
                              f"{cfg.create_project!r} ({ids}), not made by this migration; "
                              f"pass --to-project {cfg.create_project!r} to move into it, or "
                              "--create-project with another name")
        body = create_body(plan, pid, cfg.create_project, parse_label_map(cfg.label_map))
        task = body["task"]
        assert isinstance(task, dict)
        what = (f"project {cfg.create_project!r} ({pid}) on {client.host}: "
                f"{plan.task.task_type}, labels {', '.join(x['name'] for x in task['labels'])}")
        if cfg.dry_run:    # nothing is created: the plan runs against the project it would be
            self.reporter.emit(Notice(f"dry run: would create {what}"))
            labels = [{**x, "id": f"00000000-0000-4000-8000-{i:012d}"}
                      for i, x in enumerate(task["labels"])]
            proj = project_from_v3({"id": pid, "name": cfg.create_project,
                                    "task": {**task, "labels": labels}})
            return Target(client.host, "", "", "", proj, proj.datasets[0], dialect="geti3")
        await self._retrying("(create project)", lambda: client.create_project(body), None)
        self.reporter.emit(Notice(f"created {what}"))
        return await client.resolve(pid)

    def _check_task(self, dst: Target, plan: Plan) -> None:
        have = dst.project.task_type
        if have != plan.task.task_type:
            raise ConfigError(f"to: project {dst.project.name!r} is {have}, the source "
                              f"moves as {plan.task.task_type}; pick a matching project or "
                              "pass --create-project")

    # --- the run -----------------------------------------------------------------------

    async def _run(self, source: GetiClient, target: GetiClient, src: Target, dst: Target,
                   plan: Plan, labels: AnnotationLabels) -> None:
        cfg = self.cfg
        journal: Journal | None = None
        lock: JournalLock | None = None
        path = cfg.journal or default_journal_path(
            dst.host, dst.project.id, f"from-{src.project.id}-{src.dataset.id}")
        if cfg.use_journal and not cfg.dry_run:
            lock = JournalLock.acquire(path)
            journal = Journal(path, target=f"{src.describe()} → {dst.describe()}")
            journal.start()
            self.result.journal_path = path
        report = ReportWriter(cfg.report or _default_report_path(journal, path))
        self.result.report_path = report.path
        reporter = MultiReporter(self.reporter, report)
        limiter = AdaptiveLimiter(cfg.concurrency)
        budget = RetryBudget(self.policy)
        gate = OutageGate(lambda: target.probe(dst), reporter, max_outage=cfg.max_outage,
                          rng=self.rng)
        annotator = Annotator(target, labels, limiter, self.policy, budget, reporter,
                              rng=self.rng, sleep=self.sleep, gate=gate)
        mover = Mover(self, source, target, src, dst, plan, annotator, limiter, budget, gate,
                      reporter, journal)
        reporter.emit(RunStarted(f"{src.describe()} → {dst.describe()}", cfg.concurrency,
                                 cfg.dry_run))
        for text in plan.notes + labels.notes:
            reporter.emit(Notice(text))
        training = None
        if not cfg.dry_run:
            training = AutoTraining(target, dst, journal, reporter)
            annotator.before_posting = training.ensure_off
        fatal: FatalError | None = None
        try:
            if training is not None:
                training.take_over()
            send, receive = anyio.create_memory_object_stream[Work](QUEUE)
            self._workers_started = True
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._produce, send, source, src, journal, reporter, mover)
                for _ in range(cfg.concurrency):
                    tg.start_soon(self._work, receive.clone(), mover)
                receive.close()
            await self._tell_refused(reporter, journal)
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
            r, t = self.result, mover
            r.uploaded, r.skipped, r.failed = t.uploaded, t.skipped, t.failed
            r.not_started = max(t.not_started, self.queued - (t.uploaded + t.skipped + t.failed))
            r.bytes_sent = t.bytes_sent
            r.shapes_clipped, r.shapes_dropped = t.shapes_clipped, t.shapes_dropped
            r.retries = dict(budget.by_cause)
            r.peak_concurrency = limiter.peak
        if fatal is not None:
            raise fatal

    def refuse(self, what: str, key: str, journal: Journal | None) -> None:
        """Note an item part the target cannot hold; kept in the journal, so every run
        (a resume too) lists all of them."""
        self.refused.setdefault(what, set()).add(key)
        if journal is not None:
            journal.set_meta(f"refused|{what}|{key}", "1")

    async def _tell_refused(self, reporter: Reporter, journal: Journal | None) -> None:
        if journal is not None:
            await journal.flush()
            reader = journal.reader()
            try:
                meta = await anyio.to_thread.run_sync(reader.meta)
            finally:
                reader.close()
            for k in meta:
                if k.startswith("refused|"):
                    _, what, key = k.split("|", 2)
                    self.refused.setdefault(what, set()).add(key)
        for what, keys in sorted(self.refused.items()):
            shown = ", ".join(sorted(keys)[:5]) + (" …" if len(keys) > 5 else "")
            reporter.emit(Notice(f"refused by the target: {what}: {len(keys)} item(s) "
                                 f"({shown})"))

    async def _produce(self, send: MemoryObjectSendStream[Work], source: GetiClient,
                       src: Target, journal: Journal | None, reporter: Reporter,
                       mover: Mover) -> None:
        reader = journal.reader() if journal is not None else None
        files = total = 0
        try:
            async with send:
                async for page in source.query_media(src):
                    if self.stopping:
                        return
                    keys = [job_for(m).key for m in page]
                    prior = (await anyio.to_thread.run_sync(reader.lookup, keys)
                             if reader is not None else {})
                    for item, key in zip(page, keys, strict=True):
                        if self.stopping:
                            return
                        files += 1
                        self.queued = files
                        total += item.size or 0
                        reporter.emit(FileQueued(key, item.size or 0))
                        work = Work(item, prior.get(key))
                        if mover.settle_from_journal(work):
                            continue
                        await send.send(work)
                if not self.stopping:
                    reporter.emit(ScanDone(files, total))
        finally:
            if reader is not None:
                reader.close()

    async def _work(self, receive: MemoryObjectReceiveStream[Work], mover: Mover) -> None:
        async with receive:
            async for work in receive:
                if self.stopping:
                    mover.not_started += 1
                    continue
                try:
                    await mover.move(work)
                except FatalError as e:
                    self.request_stop(str(e))
                    raise

    async def _retrying(self, key: str, call: Callable[[], Awaitable[T]],
                        limiter: AdaptiveLimiter | None) -> T:
        lim = limiter or AdaptiveLimiter(1, adaptive=False)
        tries = Tries(key, policy=self.policy, budget=RetryBudget(self.policy), limiter=lim,
                      gate=None, reporter=self.reporter, rng=self.rng, sleep=self.sleep)
        while True:
            try:
                return await call()
            except TransientError as e:
                why = await tries.failed(e)
                if why is not None:
                    raise FatalError(f"{key}: {why}: {e}") from None


def _leaves(eg: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for e in eg.exceptions:
        if isinstance(e, BaseExceptionGroup):
            out.extend(_leaves(e))
        else:
            out.append(e)
    return out


async def run_migrate(cfg: MigrateConfig, reporter: Reporter, **kw: Any) -> RunResult:
    return await Migration(cfg, reporter, **kw).execute()


__all__ = ["Migration", "Work", "job_for", "run_migrate"]
