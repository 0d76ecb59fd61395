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

import contextlib
import hashlib
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import aiohttp
import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from geti_bulk import media as media_names
from geti_bulk.annotate import Annotated, Annotator
from geti_bulk.autotrain import AutoTraining
from geti_bulk.concurrency import AdaptiveLimiter
from geti_bulk.errors import (
    AmbiguousError,
    ConfigError,
    FatalError,
    FileError,
    GetiBulkError,
    TargetNotFoundError,
    TransientError,
)
from geti_bulk.events import (
    JOURNAL_SKIP,
    BytesSent,
    FileDone,
    FileFailed,
    FileQueued,
    FileSkipped,
    FileStarted,
    MultiReporter,
    Notice,
    Reporter,
    RunFinished,
    RunStarted,
    RunStopping,
    ScanDone,
)
from geti_bulk.geti.body import MultipartFileBody
from geti_bulk.geti.client import GetiClient, Target, env_proxy, make_ssl
from geti_bulk.geti.dialect import detect as detect_dialect
from geti_bulk.geti.models import MediaItem
from geti_bulk.geti.v3 import Geti3Client, project_from_v3
from geti_bulk.jobs import FileJob
from geti_bulk.journal import Journal, PriorState, default_journal_path
from geti_bulk.journal_lock import JournalLock
from geti_bulk.labels import AnnotationLabels, parse_label_map, plan_annotation_labels
from geti_bulk.migrate.body import StreamedBody
from geti_bulk.migrate.config import MigrateConfig, Side
from geti_bulk.migrate.plan import Plan, create_body, plan_migration, project_id_for
from geti_bulk.migrate.scenes import label_names, source_annotation
from geti_bulk.outage import OutageGate
from geti_bulk.pipeline import RunResult, _default_report_path
from geti_bulk.report import ReportWriter
from geti_bulk.retry import RetryBudget, RetryPolicy
from geti_bulk.tries import Tries

T = TypeVar("T")
QUEUE = 256
RECONCILE_GRACE = 10.0     # a killed run's upload may still land: wait this long after its mark
NO_TUS = 1 << 62           # a streamed body cannot be re-read from an offset: multipart only


@dataclass(frozen=True, slots=True)
class Work:
    item: MediaItem            # the source's item (stored name, extension, size, dims)
    prior: PriorState | None


def job_for(item: MediaItem) -> FileJob:
    """The journal's row of a source item: keyed by its type and source id (stable), then
    its stored name, so a report row says which file it is."""
    filename = f"{item.name}{item.extension}"
    return FileJob(path=filename, key=f"{item.type}/{item.id}/{filename}",
                   size=item.size or 0, kind=item.type)


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

    # --- control -----------------------------------------------------------------------

    def request_stop(self, reason: str) -> None:
        if self.stopping is None:
            self.stopping = reason
            self.reporter.emit(RunStopping(reason))

    def on_signal(self) -> None:
        """First Ctrl-C: let items in flight finish; second: cancel them."""
        self.result.interrupted = True
        if self.stopping is None:
            self.request_stop("interrupted (Ctrl-C)")
        elif self._scope is not None:
            self._scope.cancel()

    async def execute(self) -> RunResult:
        start = time.monotonic()
        try:
            with anyio.CancelScope() as self._scope:
                await self._execute()
        except GetiBulkError as e:
            self.result.fatal = str(e)
            if isinstance(e, ConfigError):
                self.result.fatal_code = 2
        except OSError as e:
            self.result.fatal = f"{type(e).__name__}: {e.strerror or e}"
        r = self.result
        r.elapsed = time.monotonic() - start
        self.reporter.emit(RunFinished(
            uploaded=r.uploaded, skipped=r.skipped, failed=r.failed, bytes_sent=r.bytes_sent,
            elapsed=r.elapsed, retries=dict(r.retries), fatal=r.fatal, interrupted=r.interrupted,
            not_started=r.not_started, report_path=str(r.report_path) if r.report_path else None))
        return r

    # --- the two sides -------------------------------------------------------------------

    async def _execute(self) -> None:
        cfg = self.cfg
        async with _session(cfg.source, cfg.concurrency) as s_session, \
                _session(cfg.target, cfg.concurrency) as t_session:
            source = await open_client(s_session, cfg.source, "from")
            target = await open_client(t_session, cfg.target, "to")
            if isinstance(target, Geti3Client):
                target.tus_threshold = NO_TUS
            self.src = src = await _resolve(source, cfg.source, "from")
            self.plan = plan = plan_migration(src.project, _dialect(target), cfg.conversions)
            self.dst = dst = await self._target(target, src, plan)
            labels = plan_annotation_labels(dst.project, label_names(src.project, plan),
                                            parse_label_map(cfg.label_map),
                                            cfg.skip_unknown_labels)
            self._check_task(dst, plan)
            await self._run(source, target, src, dst, plan, labels)

    async def _target(self, client: GetiClient, src: Target, plan: Plan) -> Target:
        cfg = self.cfg
        if not cfg.create_project:
            return await _resolve(client, cfg.target, "to")
        if not isinstance(client, Geti3Client):
            raise ConfigError("create_project: creating a project is supported on Geti 3 "
                              "targets; on Geti 2 create it in the web UI and pass "
                              "--to-project")
        pid = project_id_for(src.host, src.project.id, cfg.create_project)
        try:
            return await client.resolve(pid)
        except TargetNotFoundError:
            pass
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


class Mover:
    """Moves one source item: media, then annotation; journals every step."""

    def __init__(self, run: Migration, source: GetiClient, target: GetiClient, src: Target,
                 dst: Target, plan: Plan, annotator: Annotator, limiter: AdaptiveLimiter,
                 budget: RetryBudget, gate: OutageGate, reporter: Reporter,
                 journal: Journal | None) -> None:
        self.run = run
        self.source, self.target, self.src, self.dst = source, target, src, dst
        self.plan = plan
        self.annotator = annotator
        self.limiter = limiter
        self.budget = budget
        self.gate = gate
        self.reporter = reporter
        self.journal = journal
        self.uploaded = self.skipped = self.failed = self.not_started = 0
        self.bytes_sent = 0

    # --- outcomes ------------------------------------------------------------------------

    def _tries(self, key: str) -> Tries:
        return Tries(key, policy=self.run.policy, budget=self.budget, limiter=self.limiter,
                     gate=self.gate, reporter=self.reporter, rng=self.run.rng,
                     sleep=self.run.sleep)

    def _fail(self, job: FileJob, reason: str, *, attempts: int = 0, uncertain: bool = False,
              media_id: str | None = None, status: int | None = None) -> None:
        self.failed += 1
        if self.journal is not None:
            self.journal.record_failed(job, reason, attempts, uncertain, media_id)
        self.reporter.emit(FileFailed(job.key, reason, job.size, status, media_id))

    def _done(self, job: FileJob, item: MediaItem, attempts: int, adopted: bool,
              sha256: str | None, a: Annotated) -> None:
        self.uploaded += 1
        self.run.claimed.add(item.id)
        if self.journal is not None:
            self.journal.record_uploaded(job, item.id, attempts, sha256,
                                         (item.width, item.height) if item.width else None)
        self.reporter.emit(FileDone(job.key, job.size, item.id, attempts, adopted,
                                    shapes=a.shapes, notes=a.summary()))

    def settle_from_journal(self, work: Work) -> bool:
        p = work.prior
        if p is not None and p.state in ("uploaded", "skipped") and p.media_id:
            self.skipped += 1
            self.run.claimed.add(p.media_id)
            self.reporter.emit(FileSkipped(job_for(work.item).key, JOURNAL_SKIP,
                                           work.item.size or 0, p.media_id))
            return True
        return False

    # --- one item ------------------------------------------------------------------------

    async def move(self, work: Work) -> None:
        item, prior = work.item, work.prior
        job = job_for(item)
        if self.run.cfg.dry_run:
            self.skipped += 1
            self.reporter.emit(FileSkipped(job.key, f"dry run: would move this {item.type}",
                                           job.size))
            return
        if prior is not None and prior.media_id and prior.state in ("media", "failed"):
            stored = MediaItem(prior.media_id, item.name, item.type, item.extension,
                               item.size, prior.width or 0, prior.height or 0)
            self.run.claimed.add(stored.id)
            await self._second_step(job, item, stored, 0, adopted=True, sha256=prior.sha256)
            return
        got = await self._media(job, item, prior)
        if got is not None:
            stored, attempts, adopted, digest = got
            await self._second_step(job, item, stored, attempts, adopted=adopted,
                                    sha256=digest)

    async def _media(self, job: FileJob, item: MediaItem, prior: PriorState | None
                     ) -> tuple[MediaItem, int, bool, str | None] | None:
        """(the target's item, uploads sent, adopted, sha256) or None when it failed."""
        uncertain = prior is not None and (prior.state == "sending" or prior.uncertain)
        if prior is not None and prior.state == "sending":
            wait = prior.updated + RECONCILE_GRACE - time.time()
            if wait > 0:
                await anyio.sleep(min(wait, RECONCILE_GRACE))
        marked = False
        attempt = 0
        tries = self._tries(job.key)
        self.budget.file_started()
        while True:
            error: TransientError | None = None
            await tries.before()
            try:
                if uncertain:
                    found = await self._reconcile(job, item, recent=prior is None)
                    if found is not None:
                        tries.succeeded()
                        return found, attempt, True, None
                    uncertain = False
                if self.journal is not None and not marked:
                    await self.journal.mark_sending(job)
                    marked = True
                attempt += 1
                stored, digest = await self._send_once(job, item, attempt)
            except FileError as e:
                self._fail(job, str(e), attempts=attempt)
                return None
            except TransientError as e:
                error = e
            if error is None:
                tries.succeeded()
                return stored, attempt, False, digest
            uncertain = uncertain or isinstance(error, AmbiguousError)
            why = await tries.failed(error)
            if why is None:
                continue
            if uncertain:
                try:
                    found = await self._reconcile(job, item, recent=prior is None)
                except TransientError:
                    found = None
                if found is not None:
                    return found, attempt, True, None
            self._fail(job, f"{why} ({attempt} sent): {error}", attempts=attempt,
                       uncertain=uncertain, status=error.status)
            return None

    async def _send_once(self, job: FileJob, item: MediaItem,
                         attempt: int) -> tuple[MediaItem, str | None]:
        """One attempt: a fresh download of the original, streamed into one upload."""
        weight = max(item.size or 0, item.width * item.height * 3 if item.type == "image" else 0)
        await self.limiter.acquire(weight)
        key, emit = job.key, self.reporter.emit
        t0 = time.monotonic()
        try:
            async with contextlib.AsyncExitStack() as stack:
                try:
                    resp = await stack.enter_async_context(
                        self.source.open_download(self.src, item))
                except TransientError as e:
                    raise source_error(e) from None
                except FatalError as e:
                    raise type(e)(f"from: {e}") from None
                size = resp.content_length if resp.content_length is not None else item.size
                if not size:
                    raise FileError("the source's download names no size (no Content-Length, "
                                    "no size in its listing); not moved")
                body = StreamedBody(resp.content, job.path, size,
                                    on_progress=lambda n: emit(BytesSent(key, n)),
                                    hasher=hashlib.sha256() if self.run.cfg.hash_content
                                    else None)
                emit(FileStarted(key, size, attempt))
                try:
                    # the same interface as a file's MultipartFileBody (body.py)
                    stored = await self.target.upload(self.dst, item.type,
                                                      cast(MultipartFileBody, body))
                except BaseException:
                    if body.sent:
                        emit(BytesSent(key, -body.sent))
                    raise
        finally:
            await self.limiter.release(weight)
        self.limiter.on_success(time.monotonic() - t0, body.server_wait)
        self.bytes_sent += body.sent
        return stored, body.hasher.hexdigest() if body.hasher is not None else None

    async def _reconcile(self, job: FileJob, item: MediaItem, *, recent: bool
                         ) -> MediaItem | None:
        """Is this item already on the target (an attempt whose answer was lost)?"""
        name = media_names.media_name(job.path)
        await self.limiter.acquire(0)
        try:
            found = await self.target.find_by_name(self.dst, name, item.type, recent)
        finally:
            await self.limiter.release(0)
        for cand in found:
            if cand.extension != item.extension.lower():
                continue
            if item.size is not None and cand.size is not None and cand.size != item.size:
                continue
            if cand.id in self.run.claimed:
                continue
            if self.journal is not None and await self.journal.is_claimed(cand.id, job.key):
                continue
            return cand
        return None

    # --- the second step: annotations ------------------------------------------------------

    async def _second_step(self, job: FileJob, item: MediaItem, stored: MediaItem,
                           attempts: int, *, adopted: bool, sha256: str | None) -> None:
        self.run.claimed.add(stored.id)
        if self.journal is not None:
            await self.journal.record_media(job, stored.id, (stored.width, stored.height)
                                            if stored.width else None, attempts, sha256)
        try:
            if item.type == "image":
                result = await self._image_annotation(job, item, stored, adopted)
            else:
                result = await self._frame_annotations(job, item, stored)
        except FileError as e:
            self._fail(job, f"media stored as {stored.id}, but not its annotation: {e}",
                       attempts=attempts, media_id=stored.id)
            return
        self._done(job, stored, attempts, adopted, sha256, result)

    async def _read(self, job: FileJob, call: Callable[[], Awaitable[T]], *,
                    source: bool = True) -> T:
        """A read with the item's retry rules; a source read's failures are the source's
        (no outage gate: the gate watches the target)."""
        tries = Tries(job.key, policy=self.run.policy, budget=self.budget,
                      limiter=self.limiter, gate=None if source else self.gate,
                      reporter=self.reporter, rng=self.run.rng, sleep=self.run.sleep)
        while True:
            try:
                result = await call()
            except FatalError as e:
                raise type(e)(f"from: {e}") if source else e from None
            except TransientError as e:
                why = await tries.failed(source_error(e) if source else e)
                if why is not None:
                    raise FileError(f"{'source: ' if source else ''}{why}: {e}") from None
                continue
            tries.succeeded()
            return result

    async def _image_annotation(self, job: FileJob, item: MediaItem, stored: MediaItem,
                                adopted: bool) -> Annotated:
        anns = await self._read(job, lambda: self.source.latest_annotation(
            self.src, item.id, (item.width, item.height)))
        ann, notes = source_annotation(anns, self.src.project, self.plan, item.width,
                                       item.height)
        self._count_refused(job, notes)
        if ann is None:
            return Annotated(0, False, tuple(notes) or ("no annotation in the source",))
        a = await self.annotator.annotate(job, ann, stored, self.dst, check_first=adopted)
        return Annotated(a.shapes, a.posted, tuple(notes) + a.notes)

    async def _frame_annotations(self, job: FileJob, item: MediaItem,
                                 stored: MediaItem) -> Annotated:
        frames = await self._read(job, lambda: self.source.frame_annotations(self.src, item.id))
        if not frames:
            return Annotated(0, False, ("no frame annotations in the source",))
        if self.run.frames_refused:
            self.run.refuse(f"video frame annotations ({self.run.frames_refused})", job.key,
                            self.journal)
            return Annotated(0, False, (f"{len(frames)} annotated frame(s) not moved: "
                                        f"{self.run.frames_refused}",))
        if not stored.width:
            stored = await self._read(job, lambda: self.target.media_detail(
                self.dst, "video", stored.id), source=False)
        shapes = 0
        notes: list[str] = []
        for frame, anns in frames:
            ann, more = source_annotation(anns, self.src.project, self.plan, item.width,
                                          item.height)
            notes.extend(more)
            if ann is None:
                continue
            scene, _ = self.annotator.scene(job, ann, stored, self.dst)
            if not scene.annotations:
                continue
            body = list(scene.annotations)
            posted = await self._post_frame(job, stored, frame, body)
            if not posted:
                self.run.refuse(f"video frame annotations ({self.run.frames_refused})",
                                job.key, self.journal)
                return Annotated(shapes, False, (f"{len(frames)} annotated frame(s) not "
                                                 f"moved: {self.run.frames_refused}",))
            shapes += len(body)
        self._count_refused(job, notes)
        return Annotated(shapes, True, (f"{len(frames)} annotated frame(s)",) +
                         tuple(sorted(set(notes))))

    async def _post_frame(self, job: FileJob, stored: MediaItem, frame: int,
                          body: list[dict[str, Any]]) -> bool:
        """One frame's annotation; False (and frames refused from then on) when the target
        answers 501 Not Implemented."""
        tries = self._tries(job.key)
        while True:
            await tries.before()
            if self.annotator.before_posting is not None:
                await self.annotator.before_posting()
            await self.limiter.acquire(0)
            try:
                await self.target.post_frame_annotation(self.dst, stored.id, frame, body)
            except TransientError as e:
                error = e
            else:
                tries.succeeded()
                return True
            finally:
                await self.limiter.release(0)
            if error.status == 501:
                self.run.frames_refused = "the target answers 501 Not Implemented"
                return False
            why = await tries.failed(error)
            if why is not None:
                raise FileError(f"frame {frame}: {why}: {error}")

    def _count_refused(self, job: FileJob, notes: list[str]) -> None:
        for n in notes:
            if n.endswith("cannot be moved"):
                self.run.refuse(n, job.key, self.journal)


# --- helpers ---------------------------------------------------------------------------------


class _session:  # noqa: N801 (used as a context manager, like aiohttp.ClientSession)
    """One aiohttp session per side: its own TLS options."""

    def __init__(self, side: Side, concurrency: int) -> None:
        self.side = side
        self.concurrency = concurrency
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=self.concurrency + 4,
                                         ssl=make_ssl(self.side.ca_bundle, self.side.insecure))
        self.session = aiohttp.ClientSession(
            connector=connector, trust_env=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, connect=60))
        return self.session

    async def __aexit__(self, *exc: object) -> None:
        if self.session is not None:
            await self.session.close()


async def open_client(session: aiohttp.ClientSession, side: Side, which: str) -> GetiClient:
    proxy = env_proxy(side.host)
    try:
        dialect, version = await detect_dialect(session, side.host, side.dialect, proxy=proxy)
    except FatalError as e:
        raise FatalError(f"{which}: {e}") from None
    if dialect == "geti3":
        return Geti3Client(session, side.host, version=version, proxy=proxy)
    if not side.token:
        env = "GETI_FROM_TOKEN" if which == "from" else "GETI_TO_TOKEN"
        raise ConfigError(f"{which}: {side.host} is a Geti 2 server and needs a token: set "
                          f"{env} (or {env}_FILE, or --{which}-token-file FILE)")
    return GetiClient(session, side.host, side.token, proxy=proxy)


async def _resolve(client: GetiClient, side: Side, which: str) -> Target:
    try:
        return await client.resolve(side.project or "", side.dataset, side.workspace)
    except FatalError as e:
        raise type(e)(f"{which}: {e}") from None


def source_error(e: TransientError) -> TransientError:
    """A source-side failure, told apart from the target's: it neither holds the run for a
    target outage nor slows the target's writers; it is retried with backoff and counted."""
    return TransientError(f"source: {e}", retry_after=e.retry_after, cause=f"source-{e.cause}")


def _dialect(client: GetiClient) -> str:
    return "geti3" if isinstance(client, Geti3Client) else "geti2"


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
