"""The inputs and outputs of `geti_bulk.shapes`, and its one exception."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from geti_bulk.errors import FileError
from geti_bulk.geti.models import Label
from geti_bulk.sources.model import Shape


class AnnotationError(FileError):
    """The file's annotation as a whole cannot be posted (rival exclusive labels, an empty
    label beside others, a shape the task cannot take, no empty label for an empty image…).
    The media may still be uploaded; this file's annotation fails with the reason."""


@dataclass(frozen=True, slots=True)
class ResolvedObject:
    """One source object with its labels mapped to the project's labels (1+ labels; for a
    detection → classification chain the detection label AND the class label(s)).
    `shape` is in source pixels; None means the whole image."""

    labels: tuple[Label, ...]
    shape: Shape | None


@dataclass(frozen=True, slots=True)
class Scene:
    """The exact body of `POST …/annotations` is `{"annotations": list(annotations)}`.

    `notes` has one line per clipped, dropped or converted shape (with its reason), plus one
    for a rescale from the annotation file's size and one when objects overrode the file's
    "empty" flag. `mismatch` is set when the annotation file records the transposed size
    of what Geti stored (EXIF rotation, GETI_ANNOTATIONS.md §2.3).
    """

    annotations: tuple[dict[str, Any], ...]
    notes: tuple[str, ...] = ()
    clipped: int = 0
    dropped: int = 0
    converted: int = 0
    mismatch: str | None = None

    def body(self) -> dict[str, Any]:
        """The JSON body to POST (§2.1: only `annotations`, no scene-level extras)."""
        return {"annotations": list(self.annotations)}
