"""Annotation scenes: stored form (normalised shapes) and Geti's REST views of them.

Shapes are kept as Geti keeps them (GETI_ANNOTATIONS.md §2.3): coordinates divided by the
media's width/height, a rotated rectangle as its 4-corner polygon. Views round back to
integers (RECTANGLE, ELLIPSE, POLYGON points, KEYPOINT) or 4 decimals (ROTATED_RECTANGLE,
only in single-task rotated detection projects). Response bodies follow §3.
"""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from . import geometry
from .replies import PlainError

_HEX24 = re.compile(r"[0-9a-fA-F]{24}")


@dataclass(frozen=True, slots=True)
class Label:
    """A scored label on an annotation (id normalised, probability as posted)."""

    id: str
    probability: Any = 1.0
    user_id: str | None = None
    model_id: str | None = None
    model_storage_id: str | None = None

    def to_rest(self) -> dict[str, Any]:
        source = {"user_id": self.user_id or None, "model_id": self.model_id,
                  "model_storage_id": self.model_storage_id}
        return {"id": self.id, "probability": self.probability, "source": source}


@dataclass(frozen=True, slots=True)
class Annotation:
    id: str  # as posted (or generated); a GET shows ``stored_annotation_id(id)``
    modified: str
    labels: tuple[Label, ...]
    shape: dict[str, Any]  # normalised, see ``shape_from_rest``
    labels_to_revisit: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Scene:
    """One annotation scene version of an image or a video frame."""

    id: str
    project_id: str
    dataset_id: str
    media_id: str
    frame_index: int | None  # None: an image
    width: int
    height: int
    created: str
    created_ms: int
    user_id: str
    annotations: tuple[Annotation, ...] = ()
    states: tuple[tuple[str, str], ...] = ()  # (task id, state) per trainable task
    revisit_full_scene: tuple[str, ...] = field(default=())

    @property
    def label_ids(self) -> list[str]:
        """Every label id in the scene, once each, in order of appearance."""
        return list(dict.fromkeys(lb.id for a in self.annotations for lb in a.labels))


def geti_id(value: Any) -> str:
    """Geti's ``ID(value)``: ``str(value).strip().lower()``."""
    return str(value).strip().lower()


def stored_annotation_id(raw: str) -> str:
    """The id a GET returns for a posted annotation id; a 500 if MongoDB cannot store it
    (12 or 24 characters must be an ObjectId, 32 or 36 a UUID; §2.2, §13)."""
    if len(raw) in (12, 24):
        if not _HEX24.fullmatch(raw):
            raise PlainError()  # bson InvalidId
        return raw.lower()
    if len(raw) in (32, 36):
        try:
            return str(uuid.UUID(raw))
        except ValueError:
            raise PlainError() from None
    if raw.isdigit():
        try:
            text = f"{int(raw):024d}"
        except ValueError:  # e.g. superscript digits
            raise PlainError() from None
        if not _HEX24.fullmatch(text):
            raise PlainError()
        return text
    return geti_id(raw.replace("\n", "\\n").replace("\r", "\\r"))


def shape_from_rest(shape: dict[str, Any], width: int, height: int) -> dict[str, Any]:
    """A REST shape (pixels) as stored: normalised by the media's width and height."""
    kind = shape["type"]
    if kind in ("RECTANGLE", "ELLIPSE"):
        x1, y1 = float(shape["x"]) / width, float(shape["y"]) / height
        return {"type": kind, "x1": x1, "y1": y1,
                "x2": x1 + float(shape["width"]) / width,
                "y2": y1 + float(shape["height"]) / height}
    if kind == "POLYGON":
        if not shape["points"]:
            raise PlainError()  # the Polygon entity refuses an empty point list
        return {"type": kind, "points": [[float(p["x"]) / width, float(p["y"]) / height]
                                         for p in shape["points"]]}
    if kind == "ROTATED_RECTANGLE":
        corners = geometry.rotated_corners(float(shape["x"]), float(shape["y"]),
                                           float(shape["width"]), float(shape["height"]),
                                           float(shape["angle"]))
        return {"type": "POLYGON", "points": [[x / width, y / height] for x, y in corners]}
    return {"type": "KEYPOINT", "x": shape["x"] / width, "y": shape["y"] / height,
            "is_visible": shape["is_visible"]}


def outline(shape: dict[str, Any]) -> list[geometry.Point]:
    """The stored shape's outline in normalised coordinates."""
    kind = shape["type"]
    if kind == "RECTANGLE":
        return geometry.rectangle(shape["x1"], shape["y1"], shape["x2"], shape["y2"])
    if kind == "ELLIPSE":
        return geometry.ellipse(shape["x1"], shape["y1"], shape["x2"], shape["y2"])
    if kind == "POLYGON":
        return [(x, y) for x, y in shape["points"]]
    return [(shape["x"], shape["y"])]


def shape_to_rest(shape: dict[str, Any], width: int, height: int,
                  rotated: bool) -> dict[str, Any]:
    kind = shape["type"]
    if kind in ("RECTANGLE", "ELLIPSE"):
        return {"type": kind, "x": round(shape["x1"] * width), "y": round(shape["y1"] * height),
                "width": round((shape["x2"] - shape["x1"]) * width),
                "height": round((shape["y2"] - shape["y1"]) * height)}
    if kind == "POLYGON":
        pixels = [(x * width, y * height) for x, y in shape["points"]]
        if rotated:
            return _rotated_to_rest(pixels)
        return {"type": kind, "points": [{"x": round(x), "y": round(y)} for x, y in pixels]}
    return {"type": kind, "x": round(shape["x"] * width), "y": round(shape["y"] * height),
            "is_visible": shape["is_visible"]}


def _rotated_to_rest(points: list[geometry.Point]) -> dict[str, Any]:
    """A 4-corner polygon back as centre, size and clockwise angle, the way Geti's view
    derives them (extreme corners, the angle of edge 1→2, exact right angles special)."""
    if len(points) != 4:
        raise PlainError()  # ValueError("A rotated rectangle must have exactly 4 points.")
    right = max(points, key=lambda p: p[0])
    left = min(points, key=lambda p: p[0])
    bottom = max(points, key=lambda p: p[1])
    top = min(points, key=lambda p: p[1])
    cx, cy = (right[0] + left[0]) / 2, (bottom[1] + top[1]) / 2
    h = math.hypot(bottom[1] - right[1], right[0] - bottom[0])
    w = math.hypot(right[1] - top[1], top[0] - right[0])
    p0, p1, p2, p3 = points
    angle = math.atan2(p2[1] - p1[1], p2[0] - p1[0])
    while angle < 0.0:
        angle += 2 * math.pi
    angle = math.degrees(angle) + 90
    if angle >= 360:
        angle -= 360
    if 270 < angle < 360 or 90 < angle < 180:
        w, h = h, w
    exact = round(angle, 3)
    if exact in (0, 360):
        w, h = p0[0] - p1[0], p1[1] - p2[1]
    elif exact == 90:
        w, h = p0[1] - p1[1], p2[0] - p1[0]
    elif exact == 180:
        w, h = p1[0] - p0[0], p2[1] - p1[1]
    elif exact == 270:
        w, h = p2[1] - p3[1], p1[0] - p2[0]
    return {"type": "ROTATED_RECTANGLE", "x": round(cx, 4), "y": round(cy, 4),
            "width": round(w, 4), "height": round(h, 4), "angle": round(angle, 4)}


def media_identifier(scene: Scene) -> dict[str, Any]:
    if scene.frame_index is None:
        return {"type": "image", "image_id": scene.media_id}
    return {"type": "video_frame", "video_id": scene.media_id, "frame_index": scene.frame_index}


def annotation_to_rest(annotation: Annotation, scene: Scene, *, label_only: bool,
                       rotated: bool, posted: bool) -> dict[str, Any]:
    result: dict[str, Any] = {
        "id": annotation.id if posted else stored_annotation_id(annotation.id),
        "modified": annotation.modified,
        "labels": [label.to_rest() for label in annotation.labels],
        "labels_to_revisit": list(annotation.labels_to_revisit),
    }
    if not label_only:
        result["shape"] = shape_to_rest(annotation.shape, scene.width, scene.height, rotated)
    return result


def scene_to_rest(scene: Scene, *, label_only: bool = False, rotated: bool = False,
                  posted: bool = False) -> dict[str, Any]:
    """§3. ``posted``: the POST answer, which shows annotation ids as they were sent."""
    return {
        "kind": "annotation",
        "modified": scene.created,
        "media_identifier": media_identifier(scene),
        "id": scene.id,
        "labels_to_revisit_full_scene": list(scene.revisit_full_scene),
        "annotation_state_per_task": [{"task_id": t, "state": s} for t, s in scene.states],
        "annotations": [annotation_to_rest(a, scene, label_only=label_only, rotated=rotated,
                                           posted=posted) for a in scene.annotations],
    }


def annotations_to_json(scene: Scene) -> list[dict[str, Any]]:
    """The stored form of the scene's annotations (one JSON column)."""
    return [
        {"id": a.id, "modified": a.modified, "shape": a.shape,
         "labels_to_revisit": list(a.labels_to_revisit),
         "labels": [[lb.id, lb.probability, lb.user_id, lb.model_id, lb.model_storage_id]
                    for lb in a.labels]}
        for a in scene.annotations
    ]


def annotations_from_json(data: list[dict[str, Any]]) -> tuple[Annotation, ...]:
    return tuple(
        Annotation(id=a["id"], modified=a["modified"], shape=a["shape"],
                   labels_to_revisit=tuple(a["labels_to_revisit"]),
                   labels=tuple(Label(*lb) for lb in a["labels"]))
        for a in data
    )
