"""`geti-bulk verify`: does the Geti dataset hold the source, exactly once and right?

Each source file must be stored exactly once (name, extension and size, as
reconciliation matches them), and its latest annotation must equal what the upload
would post for it (the same scaling and clipping) within ±1 px, since Geti rounds to
integers on GET (GETI_ANNOTATIONS.md §2.3, §12.10). Read-only: nothing is sent but
GETs and `media:query`. One JSON line per file in the report; exit 0 only when every
file matches.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import anyio

from geti_bulk import media
from geti_bulk.annotate import Annotator
from geti_bulk.errors import FileError, TransientError
from geti_bulk.geti.client import GetiClient, Target
from geti_bulk.geti.models import MediaItem
from geti_bulk.jobs import FileJob
from geti_bulk.labels import AnnotationLabels, LabelPlan
from geti_bulk.shapes import scene_matches
from geti_bulk.sources.model import SourceAnnotation

MediaIndex = dict[tuple[str, str, str, str], list[MediaItem]]   # (dataset, kind, name, ext)


@dataclass(slots=True)
class VerifyResult:
    ok: int = 0
    missing: int = 0
    duplicated: int = 0
    annotation_differs: int = 0
    not_checked: int = 0          # files the upload would fail locally (unsupported, …)
    extra_on_server: int = 0      # media in the dataset that no source file matches
    problems: list[str] = field(default_factory=list)   # the first few, for the summary
    report_path: Path | None = None

    @property
    def exit_code(self) -> int:
        bad = self.missing + self.duplicated + self.annotation_differs
        return 0 if bad == 0 else 1

    def summary(self) -> str:
        return (f"verify: {self.ok} match, {self.missing} missing, {self.duplicated} stored "
                f"more than once, {self.annotation_differs} with a different annotation, "
                f"{self.not_checked} not checked (not uploadable), {self.extra_on_server} "
                "media on the server match no source file")


class Verifier:
    def __init__(self, client: GetiClient, target: Target, plan: LabelPlan,
                 annotator: Annotator, index: MediaIndex, report: IO[str],
                 annotation_for: object = None) -> None:
        self.client = client
        self.target = target
        self.plan = plan
        self.annotator = annotator
        self.index = index
        self.report = report
        self.annotation_for = annotation_for
        self.targets: dict[str, Target] = {}      # dataset id → target, for routed subsets
        self.result = VerifyResult()
        self.claimed: set[str] = set()

    def _row(self, job: FileJob, status: str, reason: str = "",
             media_id: str | None = None) -> None:
        row: dict[str, object] = {"path": job.key, "status": status}
        if media_id:
            row["media_id"] = media_id
        if reason:
            row["reason"] = reason
            if len(self.result.problems) < 20:
                self.result.problems.append(f"{job.key}: {status}: {reason}")
        self.report.write(json.dumps(row, ensure_ascii=False) + "\n")

    async def check(self, job: FileJob) -> None:
        if job.problem or job.kind is None:
            self.result.not_checked += 1
            self._row(job, "not_checked", job.problem or "not a media file")
            return
        name = media.media_name(job.filename)
        ext = media.stored_extension(os.path.splitext(job.filename)[1])
        dataset = job.dataset_id or self.target.dataset.id
        found = [m for m in self.index.get((dataset, job.kind, name, ext), [])
                 if _same_size(job, m)]
        self.claimed.update(m.id for m in found)
        if not found:
            self.result.missing += 1
            self._row(job, "missing", "no media of that name, extension and size")
            return
        if len(found) > 1:
            self.result.duplicated += 1
            ids = ", ".join(m.id for m in found)
            self._row(job, "duplicated", f"{len(found)} copies: {ids}", found[0].id)
            return
        why = await self._annotation_differs(job, found[0])
        if why:
            self.result.annotation_differs += 1
            self._row(job, "annotation_differs", why, found[0].id)
            return
        self.result.ok += 1
        self._row(job, "ok", media_id=found[0].id)

    async def _annotation_differs(self, job: FileJob, item: MediaItem) -> str | None:
        ann = job.annotation
        if ann is None and job.deferred and callable(self.annotation_for):
            ann = self.annotation_for(job)
        label_ids = () if job.annotated else self.plan.ids_for(job.labels)
        if ann is None and not label_ids:
            return None
        target = self.targets.get(job.dataset_id or "", self.target)
        try:
            got = await self.annotator._retrying(
                job, lambda: self.client.latest_annotation(target, item.id,
                                                           (item.width, item.height)))
            if label_ids:
                box = {"type": "RECTANGLE", "x": 0, "y": 0, "width": item.width,
                       "height": item.height}
                expected: list[dict[str, object]] = [
                    {"labels": [{"id": i} for i in label_ids], "shape": box}]
            else:
                assert isinstance(ann, SourceAnnotation)
                scene, _ = self.annotator.scene(job, ann, item, target)
                expected = list(scene.annotations)
        except (FileError, TransientError) as e:
            return f"cannot check: {e}"
        if not expected:
            return None if not got else None
        if got is None:
            return "no annotation on the server"
        return scene_matches(self.client.as_stored(expected, target, (item.width, item.height)),
                             got, project=target.project)


async def index_dataset(client: GetiClient, target: Target,
                        index: MediaIndex | None = None) -> MediaIndex:
    index = {} if index is None else index
    async for page in client.query_media(target):
        for item in page:
            key = (target.dataset.id, item.type, item.name, item.extension)
            index.setdefault(key, []).append(item)
    return index


async def verify_jobs(verifier: Verifier, jobs: Iterator[FileJob], concurrency: int) -> None:
    send, receive = anyio.create_memory_object_stream[FileJob](256)

    async def produce() -> None:
        async with send:
            def next_batch() -> list[FileJob]:
                return [j for _, j in zip(range(256), jobs, strict=False)]
            while batch := await anyio.to_thread.run_sync(next_batch):
                for job in batch:
                    await send.send(job)

    async def work(rx: anyio.abc.ObjectReceiveStream[FileJob]) -> None:
        async with rx:
            async for job in rx:
                await verifier.check(job)

    async with anyio.create_task_group() as tg:
        tg.start_soon(produce)
        for _ in range(concurrency):
            tg.start_soon(work, receive.clone())
        receive.close()
    all_ids = {m.id for items in verifier.index.values() for m in items}
    verifier.result.extra_on_server = len(all_ids - verifier.claimed)


def _same_size(job: FileJob, item: MediaItem) -> bool:
    ext = os.path.splitext(job.filename)[1].lower()
    if media.stored_extension(ext) != ext:
        return True
    return item.size is None or item.size == job.size


__all__ = ["AnnotationLabels", "VerifyResult", "Verifier", "index_dataset", "verify_jobs"]
