"""One file's way to Geti: local checks, the attempt loop, reconciliation.

Retries live next to the thing they replay (s3transfer): every attempt builds a fresh
body, rewinds the progress it reported, and waits a jittered backoff outside the
concurrency slot. POST is not idempotent, so after any failure that may have stored the
media (the body was fully sent and the answer was lost or was a 5xx), the server is
asked by name before the file is sent again (GETI_API.md §3.4, §3.6).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from geti_bulk import media
from geti_bulk.annotate import Annotated, Annotator
from geti_bulk.concurrency import AdaptiveLimiter
from geti_bulk.errors import (
    AmbiguousError,
    FatalError,
    FileChangedError,
    FileError,
    GetiBulkError,
    TransientError,
)
from geti_bulk.events import (
    AGAIN,
    JOURNAL_SKIP,
    REACHED_TWICE,
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
from geti_bulk.jobs import FileJob
from geti_bulk.journal import Journal
from geti_bulk.labels import AnnotationLabels, LabelPlan
from geti_bulk.outage import OutageGate
from geti_bulk.retry import RetryBudget, RetryPolicy
from geti_bulk.sources.model import SourceAnnotation
from geti_bulk.tries import Tries


@dataclass(slots=True)
class DryCounts:
    """What a dry run would send, per subset and per label."""

    subsets: dict[str, int] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)
    empty: int = 0
    unannotated: int = 0
    dropped: int = 0          # objects whose category maps to no label (skipped or dropped)
    dataset: bool = False     # a dataset source: a file with no entry is "without annotation"

    def add(self, job: FileJob, ann: SourceAnnotation | None,
            labels: AnnotationLabels | None = None) -> None:
        key = job.subset or "(none)"
        self.subsets[key] = self.subsets.get(key, 0) + 1
        names = [n for o in ann.objects for n in o.labels] if ann else list(job.labels)
        if labels is not None and ann is not None:   # as the run would send them
            mapped = [lab.name for n in names for lab in labels.by_name.get(n, ())]
            self.dropped += sum(1 for n in names if n not in labels.by_name)
            names = mapped
        for n in names:
            self.labels[n] = self.labels.get(n, 0) + 1
        if ann is not None and not ann.objects:
            self.empty += ann.empty
            self.unannotated += not ann.empty
        elif ann is None and (job.annotated or self.dataset):
            self.unannotated += 1

    def lines(self) -> list[str]:
        subsets = ", ".join(f"{k} {v}" for k, v in sorted(self.subsets.items()))
        labels = ", ".join(f"{k} {v}" for k, v in sorted(self.labels.items())) or "none"
        return [f"dry run: files per subset: {subsets or 'none'}",
                f"dry run: objects (or files) per label: {labels}; {self.empty} image(s) "
                f"with no objects (the empty label), {self.unannotated} without annotation, "
                f"{self.dropped} object(s) dropped by the label map"]


RECONCILE_GRACE = 10.0   # seconds after a killed run's `sending` mark before asking for it


class DeferredSource(Protocol):
    """The reader, for annotations it knows only once its index is complete."""

    def annotations_ready(self) -> bool: ...

    def annotation_for(self, job: FileJob) -> SourceAnnotation | None: ...


ExistingIndex = dict[tuple[str, str, str], list[MediaItem]]   # (kind, name, stored ext) → media


@dataclass(slots=True)
class Tally:
    uploaded: int = 0
    skipped: int = 0
    failed: int = 0
    not_started: int = 0
    bytes_sent: int = 0
    deferred: int = 0      # media stored, annotation waits for the reader's index
    unlabelled: int = 0    # uploaded into a classification/anomaly project with no label
    shapes_clipped: int = 0
    shapes_dropped: int = 0   # by the geometry, or for a label the map drops
    internal_in_row: int = 0  # files failed by an unexpected error since the last success
    # media ids owned by files of this run, kept only where the journal cannot answer
    # (`FileUploader._claim`): never one entry per file of a journaled run
    claimed: set[str] = field(default_factory=set)


INTERNAL_ERRORS_IN_ROW = 20   # then the run stops: the same bug would fail every file


class FileUploader:
    def __init__(self, client: GetiClient, target: Target, labels: LabelPlan,
                 limiter: AdaptiveLimiter, policy: RetryPolicy, budget: RetryBudget,
                 reporter: Reporter, journal: Journal | None, *, chunk_size: int = 1 << 20,
                 existing: ExistingIndex | None = None, reupload_changed: bool = False,
                 dry_run: bool = False, hash_content: bool = False,
                 rng: random.Random | None = None,
                 sleep: Callable[[float], Awaitable[None]] | None = None,
                 annotator: Annotator | None = None,
                 source: DeferredSource | None = None,
                 targets: dict[str, Target] | None = None,
                 gate: OutageGate | None = None) -> None:
        import anyio

        self.gate = gate
        self.before_annotating: Callable[[], Awaitable[None]] | None = None
        self.client = client
        self.target = target
        self.targets = targets or {}
        self.annotator = annotator
        self.source = source
        self.labels = labels
        self.limiter = limiter
        self.policy = policy
        self.budget = budget
        self.reporter = reporter
        self.journal = journal
        self.chunk_size = chunk_size
        self.existing = existing
        self.reupload_changed = reupload_changed
        self.dry_run = dry_run
        self.hash_content = hash_content
        self.rng = rng or random.Random()
        self.sleep = sleep or anyio.sleep
        self.tally = Tally()
        self._takes_labels = target.project.takes_labels_at_upload   # asked once per file
        self.dry = DryCounts(dataset=bool(getattr(source, "readers", None)))

    # --- outcomes -----------------------------------------------------------------

    def _fail(self, job: FileJob, reason: str, *, status: int | None = None,
              attempts: int = 0, uncertain: bool = False, item: MediaItem | None = None) -> None:
        self.tally.failed += 1
        if self.journal is not None and job.size >= 0:
            self.journal.record_failed(job, reason, attempts, uncertain,
                                       item.id if item else None, _dims(item))
        self.reporter.emit(FileFailed(job.key, reason, job.size, status,
                                      item.id if item else None))

    def _skip(self, job: FileJob, reason: str, media_id: str | None = None,
              record: bool = True) -> None:
        self.tally.skipped += 1
        if record and self.journal is not None:
            self.journal.record_skipped(job, reason, media_id)
        if media_id:
            self._claim(media_id)
        self.reporter.emit(FileSkipped(job.key, reason, job.size, media_id))

    def _claim(self, media_id: str) -> None:
        """Remember that a file of this run owns `media_id`, so no other file adopts it.
        With a journal, `Journal.is_claimed` answers that for reconciliation, so the set
        holds only what `--skip-existing` matched against the dataset's listing (already
        held in memory, `existing`) or, without a journal, every file's media."""
        if self.journal is None or self.existing is not None:
            self.tally.claimed.add(media_id)

    def _done(self, job: FileJob, item: MediaItem, attempts: int, adopted: bool = False,
              sha256: str | None = None, annotated: Annotated | None = None) -> None:
        self.tally.uploaded += 1
        self.tally.internal_in_row = 0
        self._claim(item.id)
        if adopted and attempts:
            self.tally.bytes_sent += job.size   # sent by this run; only the answer was lost
        if self.journal is not None:
            self.journal.record_uploaded(job, item.id, attempts, sha256, _dims(item))
        a = annotated or Annotated()
        self.tally.shapes_clipped += a.clipped
        self.tally.shapes_dropped += a.dropped
        self.reporter.emit(FileDone(job.key, job.size, item.id, attempts, adopted,
                                    shapes=a.shapes, notes=a.summary()))

    def fail_unexpected(self, job: FileJob, error: Exception) -> None:
        """An exception no step expected (a bug, an unmapped library error): this file
        fails with its name and message, and the run goes on. It stays `uncertain`, so
        the next run asks the server before sending it again. Many in a row stop the run."""
        self.tally.internal_in_row += 1
        text = str(error) if isinstance(error, GetiBulkError) else \
            f"internal error: {type(error).__name__}: {error}".rstrip(": ")
        self._fail(job, text, uncertain=True)
        if self.tally.internal_in_row >= INTERNAL_ERRORS_IN_ROW:
            raise FatalError(f"{self.tally.internal_in_row} files in a row failed with an "
                             f"internal error (last: {text}); stopped")

    def _unlabelled(self, job: FileJob, label_ids: tuple[str, ...]) -> None:
        """A file a project that takes labels at upload (classification, anomaly) gets
        with no label at all: counted, so the summary says so."""
        if not label_ids and not job.annotated and self._takes_labels:
            self.tally.unlabelled += 1

    def _target(self, job: FileJob) -> Target:
        if job.dataset_id and job.dataset_id != self.target.dataset.id:
            return self.targets[job.dataset_id]
        return self.target

    # --- the second step: the annotation ------------------------------------------------

    async def _finish(self, job: FileJob, item: MediaItem, attempts: int, *, adopted: bool,
                      label_ids: tuple[str, ...] = (), sha256: str | None = None) -> None:
        """The media is stored: done, or on to its annotation (journaled in between)."""
        if (label_ids and adopted) or job.annotated:
            await self._second_step(job, item, attempts, check_first=adopted,
                                    label_ids=label_ids, sha256=sha256, adopted=adopted)
        else:
            self._unlabelled(job, label_ids)
            self._done(job, item, attempts, adopted, sha256)

    async def _second_step(self, job: FileJob, item: MediaItem, attempts: int, *,
                           check_first: bool, label_ids: tuple[str, ...] = (),
                           sha256: str | None = None, adopted: bool = False) -> None:
        if self.journal is not None:
            await self.journal.record_media(job, item.id, _dims(item), attempts, sha256)
        ann = job.annotation
        if ann is None and job.deferred and self.source is not None:
            if not self.source.annotations_ready():
                if self.journal is not None:
                    self.tally.deferred += 1    # posted after the reader's index is complete
                    return
                import anyio

                while not self.source.annotations_ready():  # noqa: ASYNC110 (no journal)
                    await anyio.sleep(0.05)
            ann = self.source.annotation_for(job)
        if self.annotator is None:
            raise FatalError("internal: an annotation step without an annotator")
        target = self._target(job)
        try:
            if label_ids:
                result = await self.annotator.ensure_labels(job, item, target, label_ids)
            elif ann is not None:
                result = await self.annotator.annotate(job, ann, item, target,
                                                       check_first=check_first)
            else:
                result = Annotated(0, False, ("no annotation entry in the dataset",))
        except FileError as e:
            self._fail(job, f"media stored as {item.id}, but not its annotation: {e}",
                       attempts=attempts, status=_status_of(e), item=item)
            return
        self._done(job, item, attempts, adopted, sha256, result)

    async def resume_second_step(self, job: FileJob) -> bool:
        """A file whose media an earlier run stored: only its annotation is left."""
        if not job.prior_media_id or job.prior_state not in ("media", "failed"):
            return False
        assert job.kind is not None
        item = MediaItem(job.prior_media_id, media.media_name(job.filename), job.kind, "",
                         job.size, job.prior_width or 0, job.prior_height or 0)
        label_ids = () if job.annotated else self.labels.ids_for(job.labels)
        if not label_ids and not job.annotated:
            self._unlabelled(job, label_ids)
            self._done(job, item, 0, True)
            return True
        self._claim(item.id)
        await self._second_step(job, item, 0, check_first=True, label_ids=label_ids)
        return True

    # --- checks before any byte is sent ------------------------------------------------

    def settle_from_journal(self, job: FileJob) -> bool:
        """The journal says this file is uploaded and it has not changed: skip it here,
        without a worker, a thread hop or a request (the common case of a resume)."""
        if (job.prior_state in ("uploaded", "skipped") and job.prior_media_id
                and job.prior_size == job.size and job.prior_mtime_ns == job.mtime_ns):
            self._skip(job, JOURNAL_SKIP, job.prior_media_id, record=False)
            return True
        return False

    async def _settled(self, job: FileJob) -> bool:
        """Journal says this file is already done: skip it without asking the server."""
        if job.prior_state == AGAIN:
            self._skip(job, REACHED_TWICE, record=False)
            return True
        if job.prior_state not in ("uploaded", "skipped") or not job.prior_media_id:
            return False
        if self.settle_from_journal(job):
            return True
        if (self.hash_content and job.prior_sha256 and job.prior_size == job.size
                and await _hash_file(job.path) == job.prior_sha256):
            # same bytes under a new mtime (a restore, a copy): remember the new stat
            if self.journal is not None:
                self.journal.record_uploaded(job, job.prior_media_id, 0, job.prior_sha256)
            self._skip(job, "already uploaded (journal; same content, new mtime)",
                       job.prior_media_id, record=False)
            return True
        if self.reupload_changed:
            return False
        self._skip(job, f"changed since it was uploaded as {job.prior_media_id} (size or mtime "
                        "differ); pass --reupload-changed to upload the new version",
                   job.prior_media_id, record=False)
        return True

    async def _dry_run(self, job: FileJob, label_ids: tuple[str, ...]) -> None:
        ann = job.annotation
        if ann is None and job.deferred and self.source is not None:
            import anyio

            while not self.source.annotations_ready():  # noqa: ASYNC110 (a reader thread)
                await anyio.sleep(0.05)
            ann = self.source.annotation_for(job)
        self.dry.add(job, ann, self.annotator.labels if self.annotator else None)
        if ann is not None:
            n = len(ann.objects)
            shown = f" with {n} object(s)" if n else (" with the empty label" if ann.empty
                                                      else ", no annotation")
        else:
            shown = f" with labels {', '.join(job.labels)}" if label_ids else ""
        self._skip(job, f"dry run: would upload as {job.kind}{shown}", record=False)

    async def _resumed(self, job: FileJob) -> bool:
        try:
            return await self.resume_second_step(job)
        except FileError as e:
            self._fail(job, str(e))
            return True

    async def _read_head(self, job: FileJob, ahead: Head | None = None) -> bytes:
        """The first chunk (all of a small file), checked against what the scan saw: one
        thread hop that opens, reads, stats and closes (a thread wake-up costs ~0.1 ms here),
        or the read `read_heads` made ahead, a batch of small files in one hop."""
        import anyio

        n = min(job.size, max(self.chunk_size, media.HEAD_BYTES))
        try:
            if ahead is not None:
                head, size, mtime_ns = ahead.result()
                if (size, mtime_ns) == (job.size, job.mtime_ns):
                    # read a batch ago: still there and unchanged at its turn (a stat of a
                    # file just read is answered from the kernel's caches)
                    st = os.stat(job.path)
                    size, mtime_ns = st.st_size, st.st_mtime_ns
            else:
                head, size, mtime_ns = await anyio.to_thread.run_sync(_read_head_sync, job.path,
                                                                      n)
        except OSError as e:
            raise FileError(f"cannot read file: {e.strerror or e}") from None
        if size != job.size or mtime_ns != job.mtime_ns:
            raise FileChangedError("file changed since it was scanned (size or modification "
                                   "time differ); not uploaded")
        return head

    async def _check(self, job: FileJob,
                     ahead: Head | None = None) -> tuple[tuple[str, ...], bytes, int]:
        """(label ids, the head read, the upload's weight in server memory) or FileError."""
        if job.problem:
            raise FileError(job.problem)
        filename = job.filename
        kind = media.media_kind(filename)
        assert kind is not None and job.kind is not None
        for reason in (media.check_name(filename), media.check_size(job.size)):
            if reason:
                raise FileError(reason)
        label_ids = self.labels.ids_for(job.labels) if job.labels else ()
        head = await self._read_head(job, ahead)
        reason, dims = media.inspect_head(head, filename, kind)
        if reason and kind.kind == "image" and len(head) < job.size:
            # a header larger than the head read
            reason, dims = await _probe_whole_image(job.path, kind)
        if reason:
            raise FileError(reason)
        return label_ids, head, media.server_memory(job.size, dims)

    def _already_there(self, job: FileJob) -> MediaItem | None:
        if self.existing is None or job.kind is None:
            return None
        key = (job.kind, media.media_name(job.filename),
               media.stored_extension(os.path.splitext(job.filename)[1]))
        for item in self.existing.get(key, []):
            if item.id not in self.tally.claimed and _same_size(job, item):
                return item
        return None

    # --- the attempt loop ---------------------------------------------------------------

    def prefetchable(self, job: FileJob) -> bool:
        """Whether `process` will read this file whole (small, to be sent, no problem):
        then `read_heads` may read it ahead, with others, in one thread hop."""
        return (job.problem is None and job.kind is not None and 0 < job.size <= PREFETCH_MAX
                and (job.prior_state is None or job.prior_state == "sending"
                     or (job.prior_state == "failed" and not job.prior_media_id)))

    def premarkable(self, job: FileJob, ahead: Head | None) -> bool:
        """Whether a file read ahead may be marked `sending` with its batch, before its
        worker takes it (`Run._prefetch`): a fresh send (no row, or a killed run's
        `sending` one), so that a worker that never sends it can take the mark back
        (`unmark`) and leave the journal as it was."""
        return (self.journal is not None and not self.dry_run and ahead is not None
                and ahead.error is None and job.prior_state in (None, "sending"))

    def unmark(self, job: FileJob, ahead: Head | None) -> None:
        """A file marked `sending` with its batch that the run stops before sending: the
        journal is left as it was before the mark (no row, or the killed run's row)."""
        if ahead is not None and ahead.marked and self.journal is not None:
            self.journal.forget_sending(job)

    async def process(self, job: FileJob, ahead: Head | None = None) -> None:
        """Upload one file. `ahead`: the file read whole by `read_heads` (small files)."""
        if await self._settled(job):
            return
        if not self.dry_run and job.kind is not None and await self._resumed(job):
            return
        # the durable `sending` mark (a group commit) overlaps the local checks; it is
        # awaited before the first byte goes out. A file that then fails or is skipped
        # gets its final row after it, in order.
        mark: asyncio.Future[None] | None = None
        if (self.journal is not None and not self.dry_run and not job.problem
                and not (ahead is not None and ahead.marked)):
            mark = self.journal.mark_sending_soon(job)
            mark.add_done_callback(_retrieve)
        try:
            await self._process(job, mark, ahead)
        finally:
            if mark is not None and not mark.done():
                mark.cancel()

    async def _process(self, job: FileJob, mark: asyncio.Future[None] | None,
                       ahead: Head | None = None) -> None:
        try:
            label_ids, head, weight = await self._check(job, ahead)
        except FileError as e:
            self._fail(job, str(e))
            return
        found = self._already_there(job)
        if found is not None:
            self._forget_upload(job)
            self._skip(job, "already in the dataset (same name, extension and size)", found.id)
            return
        if self.dry_run:
            await self._dry_run(job, label_ids)
            return
        await self._attempts(job, label_ids, head, weight, mark)

    async def _grace(self, job: FileJob) -> None:
        """A killed run's upload may still be stored after it died: the server goes on
        with a body it received whole (a slow decode, a SQLite lock wait). Ask for it only
        `RECONCILE_GRACE` seconds after it was marked, not at once."""
        wait = job.prior_updated + RECONCILE_GRACE - time.time()
        if wait > 0:
            import anyio

            await anyio.sleep(min(wait, RECONCILE_GRACE))

    def _tries(self, job: FileJob) -> Tries:
        return Tries(job.key, policy=self.policy, budget=self.budget, limiter=self.limiter,
                     gate=self.gate, reporter=self.reporter, rng=self.rng, sleep=self.sleep)

    async def _attempts(self, job: FileJob, label_ids: tuple[str, ...], head: bytes, weight: int,
                        mark: asyncio.Future[None] | None) -> None:
        assert job.kind is not None
        uncertain = job.prior_state == "sending" or job.prior_uncertain
        if job.prior_state == "sending":
            await self._grace(job)
        attempt = 0      # uploads sent
        tries = self._tries(job)
        self.budget.file_started()
        while True:
            error: TransientError | None = None
            sending = False
            await tries.before()
            try:
                if uncertain:
                    item = await self._reconcile(job)
                    if item is not None:
                        self._forget_upload(job)
                        await self._finish(job, item, attempt, adopted=True, label_ids=label_ids)
                        return
                    uncertain = False
                attempt += 1
                if mark is not None:
                    await mark          # durable before the first byte is sent
                # a small file read whole at check time is sent from memory on every
                # attempt (bounded: one chunk per worker); a large one is re-read
                reuse = attempt == 1 or len(head) == job.size
                sending = True
                item, digest, rtt, wait = await self._send_once(
                    job, label_ids, head if reuse else None, weight, attempt)
            except FileError as e:
                self._fail(job, str(e), attempts=attempt, status=_status_of(e))
                return
            except TransientError as e:
                error = e
            if error is None:
                assert item is not None
                self.limiter.on_success(rtt, wait, weight)
                tries.succeeded()
                await self._finish(job, item, attempt, adopted=False, label_ids=label_ids,
                                   sha256=digest)
                return
            uncertain = uncertain or isinstance(error, AmbiguousError)
            if error.cause == "connect" and sending:
                attempt -= 1            # refused before a byte went out: nothing was sent
            why = await tries.failed(error)
            if why is None:
                continue
            if why.startswith("gave up"):
                why += f" ({attempt} sent)"
            if uncertain:
                item_or_none = await self._final_reconcile(job)
                if item_or_none is not None:
                    self._forget_upload(job)
                    await self._finish(job, item_or_none, attempt, adopted=True,
                                       label_ids=label_ids)
                    return
            self._fail(job, f"{why}: {error}", attempts=attempt, status=error.status,
                       uncertain=uncertain)
            return

    async def _send_once(self, job: FileJob, label_ids: tuple[str, ...], head: bytes | None,
                         weight: int,
                         attempt: int) -> tuple[MediaItem, str | None, float, float | None]:
        """One upload: (item, sha256 if hashed, seconds in flight, the server's share)."""
        assert job.kind is not None
        if label_ids and self.before_annotating is not None:
            await self.before_annotating()    # labels at upload are annotations too
        await self.limiter.acquire(weight)
        t_sent = time.monotonic()
        emit = self.reporter.emit
        key = job.key

        def progress(n: int) -> None:
            emit(BytesSent(key, n))

        body = MultipartFileBody(job.path, job.filename, job.size, job.mtime_ns, label_ids,
                                 head=head, on_progress=progress, chunk=self.chunk_size,
                                 hasher=hashlib.sha256() if self.hash_content else None)
        emit(FileStarted(key, job.size, attempt))
        try:
            item = await self.client.upload(self._target(job), job.kind, body)
        except BaseException:
            if body.sent:
                emit(BytesSent(key, -body.sent))     # the bar rewinds for the next attempt
            raise
        finally:
            await self.limiter.release(weight)
        self.tally.bytes_sent += body.sent
        digest = body.hasher.hexdigest() if body.hasher is not None else None
        return item, digest, time.monotonic() - t_sent, body.server_wait

    async def _reconcile(self, job: FileJob) -> MediaItem | None:
        """Is this file already stored (by an attempt whose answer was lost)?"""
        assert job.kind is not None
        name = media.media_name(job.filename)
        ext = media.stored_extension(os.path.splitext(job.filename)[1])
        # the query goes to the same service as the uploads: it takes a slot too
        await self.limiter.acquire(0)
        try:
            # only this run's uploads can be behind a failure of this run (Geti 3 lists
            # them by upload time, having no name filter)
            recent = job.prior_state != "sending" and not job.prior_uncertain
            found = await self.client.find_by_name(self._target(job), name, job.kind, recent)
        finally:
            await self.limiter.release(0)
        for item in found:
            if item.extension != ext or not _same_size(job, item):
                continue
            if item.id in self.tally.claimed:
                continue
            if self.journal is not None and await self.journal.is_claimed(item.id, job.key):
                continue
            return item
        return None

    def _forget_upload(self, job: FileJob) -> None:
        """Adopted: what the client kept to resume sending this file (a TUS upload URL in
        the journal) is of no use any more."""
        self.client.forget_upload(job.path, job.size, job.mtime_ns)

    async def _final_reconcile(self, job: FileJob) -> MediaItem | None:
        try:
            return await self._reconcile(job)
        except TransientError:
            return None   # stays `uncertain` in the journal; the next run asks again


def _dims(item: MediaItem | None) -> tuple[int, int] | None:
    return (item.width, item.height) if item is not None and item.width else None


def _read_head_sync(path: str, n: int) -> tuple[bytes, int, int]:
    with open(path, "rb") as f:
        head = f.read(n)
        st = os.fstat(f.fileno())
    return head, st.st_size, st.st_mtime_ns


PREFETCH_MAX = media.HEAD_BYTES   # files up to this size may be read whole ahead (`read_heads`)


@dataclass(slots=True)
class Head:
    """A small file read whole ahead of its worker: (bytes, size, mtime_ns) as
    `_read_head_sync` returned them, or the exception it raised, raised again where the
    worker reads it (an OSError fails that file, anything else is a bug in that file)."""

    data: tuple[bytes, int, int] | None = None
    error: Exception | None = None
    marked: bool = False     # marked `sending` (durably) with its batch, before its worker

    def result(self) -> tuple[bytes, int, int]:
        if self.error is not None:
            raise self.error
        assert self.data is not None
        return self.data


def read_heads(jobs: list[FileJob], wanted: Callable[[FileJob], bool]) -> list[Head | None]:
    """In a worker thread: the files `wanted` says to read, read whole, one after the
    other; None for the others. One thread hop for a batch instead of one per file."""
    out: list[Head | None] = []
    for job in jobs:
        if not wanted(job):
            out.append(None)
            continue
        try:
            out.append(Head(_read_head_sync(job.path, job.size)))
        except Exception as e:  # noqa: BLE001 — that file's failure, told by its worker
            out.append(Head(error=e))
    return out


def _retrieve(fut: asyncio.Future[None]) -> None:
    if not fut.cancelled():
        fut.exception()   # an error is re-raised where the mark is awaited


def _same_size(job: FileJob, item: MediaItem) -> bool:
    ext = os.path.splitext(job.filename)[1].lower()
    if media.stored_extension(ext) != ext:
        return True   # re-encoded on the server: sizes cannot be compared
    return item.size is None or item.size == job.size


def _status_of(e: FileError) -> int | None:
    text = str(e)
    for code in ("400", "404", "409", "413", "415"):
        if f": {code} " in text or text.startswith(code):
            return int(code)
    return None


async def _hash_file(path: str) -> str | None:
    import anyio

    def digest() -> str | None:
        h = hashlib.sha256()
        try:
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
        except OSError:
            return None
        return h.hexdigest()

    return await anyio.to_thread.run_sync(digest)


async def _probe_whole_image(path: str, kind: media.MediaKind
                             ) -> tuple[str | None, tuple[int, int] | None]:
    import anyio

    return await anyio.to_thread.run_sync(media.inspect_head, path, path, kind)
