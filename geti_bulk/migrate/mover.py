"""One source item's move: its original streamed from the source's download into the
target's upload (reconciled after an ambiguous failure, never sent twice), then its latest
annotation, or a video's annotated frames; every step journaled."""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

import anyio

from geti_bulk import media as media_names
from geti_bulk.annotate import Annotated, Annotator
from geti_bulk.concurrency import AdaptiveLimiter
from geti_bulk.errors import AmbiguousError, FatalError, FileError, TransientError
from geti_bulk.events import (
    JOURNAL_SKIP,
    BytesSent,
    FileDone,
    FileFailed,
    FileSkipped,
    FileStarted,
    Reporter,
)
from geti_bulk.geti.body import MultipartFileBody
from geti_bulk.geti.client import GetiClient, Target
from geti_bulk.geti.models import MediaItem
from geti_bulk.geti.v3 import Geti3Client
from geti_bulk.jobs import FileJob
from geti_bulk.journal import Journal, PriorState
from geti_bulk.migrate.body import StreamedBody
from geti_bulk.migrate.plan import Plan
from geti_bulk.migrate.scenes import source_annotation
from geti_bulk.migrate.sides import Work, job_for, side_message, source_error
from geti_bulk.outage import OutageGate
from geti_bulk.retry import RetryBudget
from geti_bulk.tries import Tries

if TYPE_CHECKING:
    from geti_bulk.migrate.run import Migration

T = TypeVar("T")
RECONCILE_GRACE = 10.0     # a killed run's upload may still land: wait this long after its mark


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
        self.shapes_clipped = self.shapes_dropped = 0    # as upload's summary counts them
        self._listing: dict[tuple[str, str], list[MediaItem]] | None = None
        self._listing_lock = anyio.Lock()
        self._listed_at = 0.0
        self._sizes: dict[str, int] = {}      # key → the size its download announced
        self.bytes_sent = 0

    # --- outcomes ------------------------------------------------------------------------

    def _tries(self, key: str) -> Tries:
        return Tries(key, policy=self.run.policy, budget=self.budget, limiter=self.limiter,
                     gate=self.gate, reporter=self.reporter, rng=self.run.rng,
                     sleep=self.run.sleep)

    def _fail(self, job: FileJob, reason: str, *, attempts: int = 0, uncertain: bool = False,
              media_id: str | None = None, status: int | None = None) -> None:
        self.failed += 1
        self._sizes.pop(job.key, None)
        if self.journal is not None:
            self.journal.record_failed(job, reason, attempts, uncertain, media_id)
        self.reporter.emit(FileFailed(job.key, reason, job.size, status, media_id))

    def _done(self, job: FileJob, item: MediaItem, attempts: int, adopted: bool,
              sha256: str | None, a: Annotated) -> None:
        self.uploaded += 1
        self.shapes_clipped += a.clipped
        self.shapes_dropped += a.dropped
        self._sizes.pop(job.key, None)
        self.run.claimed.add(item.id)
        if self.journal is not None:
            self.journal.record_uploaded(job, item.id, attempts, sha256,
                                         (item.width, item.height) if item.width else None)
        self.reporter.emit(FileDone(job.key, job.size, item.id, attempts, adopted,
                                    shapes=a.shapes, notes=a.summary()))

    def _found_there(self, job: FileJob, item: MediaItem, note: str, a: Annotated) -> None:
        """An item `--skip-existing` found on the target: counted as skipped (nothing was
        sent), its annotation checked (and posted if it differed) all the same."""
        self.skipped += 1
        self.shapes_clipped += a.clipped
        self.shapes_dropped += a.dropped
        self._sizes.pop(job.key, None)
        self.run.claimed.add(item.id)
        what = "annotation posted" if a.posted else "annotation already there"
        if not a.shapes and not a.posted:
            what = a.summary() or "no annotation to post"
        reason = f"{note}; {what}"
        if self.journal is not None:
            self.journal.record_skipped(job, reason, item.id)
        self.reporter.emit(FileSkipped(job.key, reason, job.size, item.id))

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
        job = job_for(item, self.run.cfg.subset)
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
        if self.run.cfg.skip_existing and (prior is None or prior.state == "failed"):
            there = await self._already_there(job, item)
            if there is not None:
                await self._second_step(job, item, there, 0, adopted=True, sha256=None,
                                        note="already on the target (same name, extension "
                                             "and size): not sent again")
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
                    found = await self._reconcile(job, item, recent=prior is None,
                                                  since=prior.updated if prior else 0.0,
                                                  sent=attempt > 0)
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
                    found = await self._reconcile(job, item, recent=prior is None,
                                                  since=prior.updated if prior else 0.0,
                                                  sent=attempt > 0)
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
                    raise type(e)(side_message(str(e), "from")) from None
                size = resp.content_length if resp.content_length is not None else item.size
                if size:    # what the target will hold (the listing's size may differ)
                    self._sizes[job.key] = size
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

    async def _listed(self, since: float) -> dict[tuple[str, str], list[MediaItem]]:
        """Geti 3 has no name filter (§8): the items an earlier run may have stored are
        found in one listing of the target, read once per run (not once per item), again
        only if it is older than a killed item's mark plus the grace."""
        async with self._listing_lock:
            if self._listing is None or self._listed_at < since + RECONCILE_GRACE:
                self._listed_at = time.time()
                index: dict[tuple[str, str], list[MediaItem]] = {}
                async for page in self.target.query_media(self.dst):
                    for m in page:
                        index.setdefault((m.type, m.name), []).append(m)
                self._listing = index
            return self._listing

    async def _reconcile(self, job: FileJob, item: MediaItem, *, recent: bool,
                         since: float = 0.0, sent: bool = False) -> MediaItem | None:
        """Is this item already on the target (an attempt whose answer was lost)?"""
        name = media_names.media_name(job.path)
        await self.limiter.acquire(0)
        try:
            if not recent and isinstance(self.target, Geti3Client):
                found = list((await self._listed(since)).get((item.type, name), []))
                if sent:     # this run's own attempt may be behind it: list those too
                    seen = {m.id for m in found}
                    found += [m for m in await self.target.find_by_name(
                        self.dst, name, item.type, True) if m.id not in seen]
            else:
                found = await self.target.find_by_name(self.dst, name, item.type, recent)
        finally:
            await self.limiter.release(0)
        for cand in found:
            if cand.extension != item.extension.lower():
                continue
            size = self._sizes.get(job.key, item.size)
            if size is not None and cand.size is not None and cand.size != size:
                continue
            if cand.id in self.run.claimed:
                continue
            if self.journal is not None and await self.journal.is_claimed(cand.id, job.key):
                continue
            return cand
        return None

    # --- the second step: annotations ------------------------------------------------------

    async def _already_there(self, job: FileJob, item: MediaItem) -> MediaItem | None:
        """`--skip-existing`: an item of the target with the source item's name, extension
        and size that no other item has claimed (a migration whose journal was lost)."""
        await self.limiter.acquire(0)
        try:
            listed = await self._listed(0.0)
        finally:
            await self.limiter.release(0)
        for cand in listed.get((item.type, item.name), []):
            if (cand.extension != item.extension.lower() or cand.id in self.run.claimed
                    or (item.size is not None and cand.size is not None
                        and cand.size != item.size)):
                continue
            self.run.claimed.add(cand.id)          # before any await: no other worker takes it
            if self.journal is not None and await self.journal.is_claimed(cand.id, job.key):
                continue
            return cand
        return None

    async def _second_step(self, job: FileJob, item: MediaItem, stored: MediaItem,
                           attempts: int, *, adopted: bool, sha256: str | None,
                           note: str | None = None) -> None:
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
        if note:     # found on the target (--skip-existing): no byte sent, a skip
            self._found_there(job, stored, note, result)
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
                raise type(e)(side_message(str(e), "from")) if source else e from None
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
        return Annotated(a.shapes, a.posted, tuple(notes) + a.notes, a.clipped, a.dropped)

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
        shapes = clipped = dropped = 0
        notes: list[str] = []
        for frame, anns in frames:
            ann, more = source_annotation(anns, self.src.project, self.plan, item.width,
                                          item.height)
            notes.extend(more)
            if ann is None:
                continue
            scene, skipped = self.annotator.scene(job, ann, stored, self.dst)
            clipped += scene.clipped
            dropped += scene.dropped + skipped
            if skipped:
                notes.append(f"frame {frame}: {skipped} object(s) with skipped labels dropped")
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
                         tuple(sorted(set(notes))), clipped, dropped)

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
