"""What a dataset reader hands the pipeline: one item per media file, with its
annotation in *source terms* (category names, pixels of the file as the annotation
file describes it). Mapping names to Geti labels, scaling to the size Geti reports,
clipping and validating happen later (`geti_bulk.shapes`), never in a reader.

Nothing here imports aiohttp, the journal or another module of ours.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Box:
    """Axis-aligned box: top-left corner and size, in source pixels."""

    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True, slots=True)
class Polygon:
    """A closed polygon (do not repeat the first point), in source pixels."""

    points: tuple[tuple[float, float], ...]


@dataclass(frozen=True, slots=True)
class RotatedBox:
    """Centre, size and clockwise angle in degrees, in source pixels."""

    cx: float
    cy: float
    width: float
    height: float
    angle: float


@dataclass(frozen=True, slots=True)
class Ellipse:
    """The ellipse's bounding box, in source pixels."""

    x: float
    y: float
    width: float
    height: float


Shape = Box | Polygon | RotatedBox | Ellipse


@dataclass(frozen=True, slots=True)
class SourceObject:
    """One labelled thing: `shape` None means the whole image (classification)."""

    labels: tuple[str, ...]
    shape: Shape | None = None


@dataclass(frozen=True, slots=True)
class SourceAnnotation:
    """A file's annotation as the dataset states it.

    `objects` empty and `empty` True: the dataset says the image has no objects (a YOLO
    label file with no lines, a VOC XML without <object>, a COCO image with no
    annotation entries); it gets the project's empty label. `problems` are the
    annotations the reader dropped as malformed, one reason each ("category id 99 is not
    defined", "box with no area"); they are counted in the file's report row.
    """

    objects: tuple[SourceObject, ...] = ()
    width: int | None = None    # the image size the annotation file records, if any
    height: int | None = None
    empty: bool = False
    problems: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SourceItem:
    """One media file a dataset names.

    `rel` is the path relative to the dataset root, with `/` separators: the join key
    between images and annotations. `annotation` None means the dataset holds no entry
    for this file at all (counted as unannotated); `deferred` True means the reader will
    know it only later (a COCO file still being indexed): ask `annotation_for(rel)` once
    `annotations_ready()` is true.
    """

    path: Path
    rel: str
    subset: str | None = None
    annotation: SourceAnnotation | None = None
    deferred: bool = False


@dataclass(slots=True)
class ReaderStats:
    """Counted, never silently dropped (reported in the summary and the report)."""

    images: int = 0
    unannotated: int = 0                 # files with no annotation entry at all
    missing_files: list[str] = field(default_factory=list)   # entries naming no file (first 100)
    missing_count: int = 0
    dropped: int = 0                     # malformed annotations dropped
    subsets: dict[str, int] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)     # objects per category name
    problems: list[str] = field(default_factory=list)        # dataset-level, not one file's (first 100)


class DatasetReader(Protocol):
    """One per format (folders, manifest, coco, yolo, voc, datumaro)."""

    format: str
    # set by the run (`--shard`): items whose `rel` it refuses are not listed, and their
    # annotation is never read or parsed (None: every item)
    wanted: Callable[[str], bool] | None

    def describe(self) -> str:
        """One line: what was read, and for `auto`, why this format."""
        ...

    def label_names(self) -> set[str]:
        """Every category/label name the dataset defines or uses (for the check before
        anything is sent). May read the annotation files, never the images."""
        ...

    def items(self) -> Iterator[SourceItem]:
        """Every media file, streamed (a million-image dataset is never a list)."""
        ...

    def annotation_for(self, rel: str) -> SourceAnnotation | None:
        """The annotation of `rel` (for deferred items and resumes)."""
        ...

    def annotations_ready(self) -> bool:
        """Whether `annotation_for` gives final answers yet."""
        ...

    @property
    def stats(self) -> ReaderStats:
        ...

    def close(self) -> None:
        ...
