"""A file's second step: its annotation, after its media is stored.

Each POST is a new version that replaces the latest (GETI_ANNOTATIONS.md §5), so a
retry after a 5xx, a timeout or a lost connection simply posts the full scene again.
Media that were adopted after an ambiguous failure, or left half-done by a killed run,
are checked first (`annotations/latest`, ±1 px): an annotation already right is not
posted again, one missing or different is (the label loss of stored-then-500 media).
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from geti_bulk.concurrency import AdaptiveLimiter
from geti_bulk.errors import FileError, TransientError
from geti_bulk.events import Reporter
from geti_bulk.geti.client import GetiClient, Target
from geti_bulk.geti.models import Label, MediaItem
from geti_bulk.jobs import FileJob
from geti_bulk.labels import AnnotationLabels
from geti_bulk.outage import OutageGate
from geti_bulk.retry import RetryBudget, RetryPolicy
from geti_bulk.sources.model import SourceAnnotation, SourceObject
from geti_bulk.tries import Tries

if TYPE_CHECKING:   # shapes is imported when a run has annotations (start-up time)
    from geti_bulk.shapes import Scene

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Annotated:
    """What the annotation step did for one file (goes into its report row)."""

    shapes: int = 0
    posted: bool = False          # False: nothing to post, or the server already had it
    notes: tuple[str, ...] = ()
    clipped: int = 0              # shapes clipped to the image
    dropped: int = 0              # objects dropped (geometry, or a label the map drops)

    def summary(self) -> str:
        return "; ".join(self.notes)


class Annotator:
    def __init__(self, client: GetiClient, labels: AnnotationLabels | None,
                 limiter: AdaptiveLimiter, policy: RetryPolicy, budget: RetryBudget,
                 reporter: Reporter, *, rng: random.Random,
                 sleep: Callable[[float], Awaitable[None]],
                 gate: OutageGate | None = None) -> None:
        self.gate = gate
        self.before_posting: Callable[[], Awaitable[None]] | None = None
        self.client = client
        self.labels = labels
        self.limiter = limiter
        self.policy = policy
        self.budget = budget
        self.reporter = reporter
        self.rng = rng
        self.sleep = sleep
        self.posted = 0

    def scene(self, job: FileJob, ann: SourceAnnotation, item: MediaItem,
              target: Target) -> tuple[Scene, int]:
        """The scene to post, and how many objects were dropped for their labels."""
        from geti_bulk.shapes import ResolvedObject, build_scene
        objects: list[ResolvedObject] = []
        skipped = 0
        for obj in ann.objects:
            labels = self._labels(obj)
            if labels is None:
                skipped += 1
                continue
            objects.append(ResolvedObject(labels=labels, shape=obj.shape))
        size = (ann.width, ann.height) if ann.width and ann.height else None
        empty = ann.empty and not ann.objects
        scene = build_scene(objects, empty=empty, project=target.project,
                            width=item.width, height=item.height, source_size=size)
        return scene, skipped

    def _labels(self, obj: SourceObject) -> tuple[Label, ...] | None:
        if self.labels is None:
            raise FileError("no label plan for annotations")
        return self.labels.resolve(obj.labels)

    async def annotate(self, job: FileJob, ann: SourceAnnotation, item: MediaItem,
                       target: Target, *, check_first: bool) -> Annotated:
        """Post the file's scene (after checking what the server holds, if asked)."""
        if not item.width or not item.height:
            item = await self._retrying(job, lambda: self.client.media_detail(
                target, "image", item.id))
        scene, skipped = self.scene(job, ann, item, target)
        notes = list(scene.notes)
        if skipped:
            notes.append(f"{skipped} object(s) with skipped labels dropped")
        if scene.mismatch:
            notes.append(scene.mismatch)
        notes.extend(ann.problems)
        clipped, dropped = scene.clipped, scene.dropped + skipped
        if not scene.annotations:
            return Annotated(0, False, tuple(notes + ["nothing to annotate"]), clipped, dropped)
        body = list(scene.annotations)
        if check_first:
            from geti_bulk.shapes import scene_matches

            got = await self._retrying(job, lambda: self.client.latest_annotation(
                target, item.id, (item.width, item.height)))
            stored = self.client.as_stored(body, target, (item.width, item.height))
            if got is not None and scene_matches(stored, got, project=target.project) is None:
                return Annotated(len(body), False, tuple(notes), clipped, dropped)
        if self.before_posting is not None:
            await self.before_posting()
        await self._retrying(job, lambda: self.client.post_annotation(target, item.id, body,
                                                                      job.subset))
        self.posted += 1
        return Annotated(len(body), True, tuple(notes), clipped, dropped)

    async def ensure_labels(self, job: FileJob, item: MediaItem, target: Target,
                            label_ids: tuple[str, ...]) -> Annotated:
        """Labels given at upload (`upload_info`) are the upload's last step: media stored
        and then a 500 can leave them out (GETI_API.md §3.4). Check, and post if missing."""
        if not item.width or not item.height:
            item = await self._retrying(job, lambda: self.client.media_detail(
                target, item.type or "image", item.id))
        box = {"type": "RECTANGLE", "x": 0, "y": 0, "width": item.width, "height": item.height}
        body = [{"labels": [{"id": i} for i in label_ids], "shape": box}]
        from geti_bulk.shapes import scene_matches

        got = await self._retrying(job, lambda: self.client.latest_annotation(target, item.id))
        if got is not None and scene_matches(body, got, project=target.project) is None:
            return Annotated(1, False)
        if self.before_posting is not None:
            await self.before_posting()
        await self._retrying(job, lambda: self.client.post_annotation(target, item.id, body))
        self.posted += 1
        return Annotated(1, True, ("labels were missing after the upload; posted",))

    async def _retrying(self, job: FileJob, call: Callable[[], Awaitable[T]]) -> T:
        """One request with the media step's retry rules; a slot of the limiter each try.
        Each POST replaces the last version (§5), so nothing is reconciled first."""
        tries = Tries(job.key, policy=self.policy, budget=self.budget, limiter=self.limiter,
                      gate=self.gate, reporter=self.reporter, rng=self.rng, sleep=self.sleep)
        while True:
            await tries.before()
            await self.limiter.acquire(0)
            try:
                result = await call()
            except TransientError as e:
                error = e
            else:
                tries.succeeded()
                return result
            finally:
                await self.limiter.release(0)
            why = await tries.failed(error)
            if why is not None:
                raise FileError(f"annotation: {why}: {error}")
