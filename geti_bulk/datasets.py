"""Sources → jobs: which layout each source folder has, and the jobs of a dataset.

A classification folder tree or a manifest goes through `scan` as before (labels by
folder name, given at upload). A COCO, YOLO, Pascal VOC or Datumaro dataset goes
through its reader (`geti_bulk.sources`): each media file becomes a job carrying its
annotation in source terms, posted after the media as the file's second step.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from geti_bulk.errors import ConfigError
from geti_bulk.jobs import FileJob
from geti_bulk.media import media_kind
from geti_bulk.scan import identity
from geti_bulk.shard import Shard
from geti_bulk.sources.model import DatasetReader, SourceAnnotation, SourceItem

DATASET_FORMATS = frozenset({"coco", "yolo", "voc", "datumaro"})
FORMAT_NAMES = {"coco": "COCO", "yolo": "YOLO", "voc": "Pascal VOC", "datumaro": "Datumaro"}


@dataclass(slots=True)
class Sources:
    """The run's sources, split by how they are read."""

    folders: list[Path] = field(default_factory=list)
    readers: list[tuple[Path, DatasetReader]] = field(default_factory=list)
    described: list[str] = field(default_factory=list)

    def label_names(self) -> set[str]:
        names: set[str] = set()
        for _, reader in self.readers:
            names |= reader.label_names()
        return names

    def annotations_ready(self) -> bool:
        return all(r.annotations_ready() for _, r in self.readers)

    def annotation_for(self, job: FileJob) -> SourceAnnotation | None:
        """A dataset job's annotation: its reader (`job.reader`) asked for `job.rel`."""
        if not 0 <= job.reader < len(self.readers):
            return None
        return self.readers[job.reader][1].annotation_for(job.rel)

    def close(self) -> None:
        for _, reader in self.readers:
            reader.close()


def open_sources(roots: tuple[Path, ...], fmt: str, index_dir: Path) -> Sources:
    """Detect (or take) each root's format and open the dataset readers."""
    from geti_bulk.sources.detect import detect_format, open_reader

    out = Sources()
    for root in roots:
        if fmt in ("folders", "manifest"):
            out.folders.append(root)
            continue
        if not root.is_dir():
            if fmt in DATASET_FORMATS:
                raise ConfigError(f"sources: {root} is not a folder; a {fmt} dataset is a folder")
            out.folders.append(root)
            continue
        found, why = detect_format(root, fmt)
        if found not in DATASET_FORMATS:
            out.folders.append(root)
            if fmt == "auto":
                out.described.append(f"{root} is read as label folders (label/file.jpg): "
                                     f"{why.split(':')[0]}")
            continue
        reader = open_reader(root, found, index_dir)
        out.readers.append((root, reader))
        out.described.append(f"{root} is a {FORMAT_NAMES.get(found, found)} dataset: {why}")
    return out


def dataset_jobs(sources: Sources, subset_datasets: dict[str, str],
                 shard: Shard | None = None) -> Iterator[FileJob]:
    """Every media file the readers name, as a job (stat here, in the scan thread).
    With a shard, the readers drop the items of other shards by their path in the
    dataset, before their annotation is read or their file looked at."""
    for n, (_, reader) in enumerate(sources.readers):
        reader.wanted = shard.wants if shard is not None else None   # no label file read
        for item in reader.items():
            if shard is None or shard.wants(item.rel):
                yield _job(item, n, subset_datasets)


def _job(item: SourceItem, reader: int, subset_datasets: dict[str, str]) -> FileJob:
    key = identity(item.path)     # the same rule as a folder's files (`scan.identity`)
    dataset_id = subset_datasets.get((item.subset or "").lower())
    common = dict(annotation=item.annotation, deferred=item.deferred, rel=item.rel,
                  reader=reader, subset=item.subset, dataset_id=dataset_id)
    problem = getattr(item, "problem", None)
    if problem:
        return FileJob(path=str(item.path), key=key, problem=problem, **common)  # type: ignore[arg-type]
    try:
        st = os.stat(item.path)
    except OSError as e:
        why = "listed in the dataset, but the file is missing" if e.errno == 2 else \
            f"cannot read: {e.strerror}"
        return FileJob(path=str(item.path), key=key, problem=why, **common)  # type: ignore[arg-type]
    if not stat.S_ISREG(st.st_mode):
        return FileJob(path=str(item.path), key=key, problem="not a regular file",
                       **common)  # type: ignore[arg-type]
    kind = media_kind(str(item.path))
    return FileJob(path=str(item.path), key=key, size=st.st_size, mtime_ns=st.st_mtime_ns,
                   kind=kind.kind if kind else None,
                   problem=None if kind else f"unsupported file type {item.path.suffix or '(none)'}",
                   **common)  # type: ignore[arg-type]
