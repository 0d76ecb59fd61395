"""Geti's checks of an annotation scene after its schema (GETI_ANNOTATIONS.md §4.1 steps 6-7,
§4.2, §4.3, §6): every label known, then per annotation, in order, shape bounds →
exclusive groups → task compatibility → unique annotation ids.

Task compatibility runs per trainable task over that task's labels on the annotation:
global tasks (classification, anomaly) want the full-image box on the first task and a
preceding-task label otherwise; local tasks check empty labels (full box, no overlap) and
(rotated) detection shape types. A RECTANGLE in a rotated detection task is converted to a
ROTATED_RECTANGLE in place, with Geti's centre ``(x + width) / 2`` (§4.3).
"""

from __future__ import annotations

from typing import Any

from . import geometry
from .annotation_views import geti_id, outline, shape_from_rest
from .replies import GetiError, bad_request
from .seed import GLOBAL_TASK_TYPES, Label, Project, Task

MINIMUM_PIXELS = 1


def check_annotations(scene: dict[str, Any], project: Project, width: int, height: int) -> None:
    """Raise the first failing check's Geti error; may rewrite rotated-detection shapes."""
    annotations: list[dict[str, Any]] = scene["annotations"]
    _check_labels_exist(annotations, project)
    by_id = {label.id: label for label in project.labels}
    for annotation in annotations:
        check_bounds(annotation["shape"], width, height)
        _check_exclusive(annotation, project, by_id)
        _check_tasks(annotation, annotations, project, width, height)
        _check_unique_ids(annotations)


def full_box(width: int, height: int) -> dict[str, Any]:
    return {"type": "RECTANGLE", "x": 0, "y": 0, "width": width, "height": height}


def _check_labels_exist(annotations: list[dict[str, Any]], project: Project) -> None:
    known = {label.id for label in project.labels}
    for annotation in annotations:
        for label in annotation["labels"]:
            label_id = geti_id(label["id"])
            if label_id not in known:
                raise GetiError(404, "label_not_found",
                                f"The requested label could not be found. Label ID: `{label_id}`. ")


def check_bounds(shape: dict[str, Any], width: int, height: int) -> None:
    """§4.2: rectangles and polygon points within W x H exactly; ellipses and rotated
    rectangles with at least one pixel inside the image."""
    kind = shape["type"]
    if kind == "RECTANGLE":
        if shape["x"] + shape["width"] > width or shape["y"] + shape["height"] > height:
            raise bad_request(f"Shape out of bounds for annotation with type {kind} and "
                              f"dimensions {_dimensions(shape)}")
    elif kind == "POLYGON":
        for point in shape["points"]:
            if point["x"] > width or point["y"] > height:
                raise bad_request(f"Polygon point out of bounds with coordinates "
                                  f"x={point['x']}, y={point['y']}")
    elif kind in ("ELLIPSE", "ROTATED_RECTANGLE"):
        inside = geometry.area(geometry.clip_to_unit_box(outline(shape_from_rest(
            shape, width, height))))
        if inside * width * height < MINIMUM_PIXELS:
            extra = f", angle={shape['angle']}" if kind == "ROTATED_RECTANGLE" else ""
            raise bad_request(
                f"Shape out of bounds for annotation with type {kind} and dimensions "
                f"{_dimensions(shape)}{extra}: this shape needs to have at least "
                f"{MINIMUM_PIXELS} pixels within the image.")


def _dimensions(shape: dict[str, Any]) -> str:
    return f"x={shape['x']}, y={shape['y']}, width={shape['width']}, height={shape['height']}"


def _check_exclusive(annotation: dict[str, Any], project: Project,
                     by_id: dict[str, Label]) -> None:
    """No two labels of one exclusive group, counting each label's ancestors (§4.2)."""
    present: set[str] = set()
    for label in annotation["labels"]:
        current: Label | None = by_id[geti_id(label["id"])]
        while current is not None:
            present.add(current.id)
            current = by_id.get(current.parent_id or "")
    conflicts: dict[str, list[str]] = {}
    for group, members in _exclusive_groups(project).items():
        names = sorted(m.name for m in members if m.id in present)
        if len(names) > 1:
            conflicts[group] = names
    if conflicts:
        shown = ", ".join(f"{g!r}: {{{', '.join(repr(n) for n in names)}}}"
                          for g, names in conflicts.items())
        raise GetiError(400, "conflicting_exclusive_labels",
                        "Cannot create annotation due to conflicting labels. These exclusive "
                        f"groups have two or more labels: {{{shown}}}")


def _exclusive_groups(project: Project) -> dict[str, list[Label]]:
    """Label groups by name; a group of empty labels is not exclusive."""
    groups: dict[str, list[Label]] = {}
    for label in project.labels:
        groups.setdefault(label.group, []).append(label)
    return {name: labels for name, labels in groups.items()
            if not all(label.is_empty for label in labels)}


def _check_tasks(annotation: dict[str, Any], annotations: list[dict[str, Any]],
                 project: Project, width: int, height: int) -> None:
    previous: Task | None = None
    for task in project.trainable_tasks:
        if task.task_type in GLOBAL_TASK_TYPES:
            _check_global(annotation, task, previous, width, height)
        else:
            _check_local(annotation, annotations, task, previous, width, height)
        previous = task


def _task_labels(annotation: dict[str, Any], task: Task) -> list[Label]:
    ids = {geti_id(label["id"]) for label in annotation["labels"]}
    return [label for label in task.labels if label.id in ids]


def _has_label_of(annotation: dict[str, Any], task: Task | None) -> bool:
    return task is not None and bool(_task_labels(annotation, task))


def _check_global(annotation: dict[str, Any], task: Task, previous: Task | None,
                  width: int, height: int) -> None:
    labels = _task_labels(annotation, task)
    if not labels:
        return
    empty = [label for label in labels if label.is_empty]
    filled = [label for label in labels if not label.is_empty]
    if empty and filled:
        raise bad_request(f"Cannot create annotation that has both empty label with ID "
                          f"{empty[0].id} and non-empty label with ID {filled[0].id} for task "
                          f"{task.id}")
    if previous is None and annotation["shape"] != full_box(width, height):
        raise bad_request("Only full box rectangle annotations are allowed for a "
                          "classification label on a full image.")
    if previous is not None and not _has_label_of(annotation, previous):
        raise bad_request("Annotation for a global task is missing a label for the "
                          "preceding task.")


def _check_local(annotation: dict[str, Any], annotations: list[dict[str, Any]], task: Task,
                 previous: Task | None, width: int, height: int) -> None:
    labels = _task_labels(annotation, task)
    if not labels:
        return
    if any(label.is_empty for label in labels):
        if previous is None and annotation["shape"] != full_box(width, height):
            raise bad_request("Empty label for the first task must be a full box rectangle.")
        if previous is not None and not _has_label_of(annotation, previous):
            raise bad_request("Empty annotation for a task is missing a label for the "
                              "preceding task.")
        _check_no_overlap(annotation, annotations, task, width, height)
    _check_shape_type(annotation, task)


def _check_no_overlap(empty: dict[str, Any], annotations: list[dict[str, Any]], task: Task,
                      width: int, height: int) -> None:
    """Nothing of the task may touch an empty-label box. Geti compares the posted label
    ids here as sent, not normalised (§13)."""
    box = outline(shape_from_rest(empty["shape"], width, height))
    filled = {label.id for label in task.labels if not label.is_empty}
    for other in annotations:
        if any(label["id"] in filled for label in other["labels"]):
            shape = outline(shape_from_rest(other["shape"], width, height))
            if geometry.intersects(shape, box):
                raise bad_request("Not allowed to create annotation that overlaps with an "
                                  "empty box annotation.")


def _check_shape_type(annotation: dict[str, Any], task: Task) -> None:
    kind = annotation["shape"]["type"]
    if task.task_type == "detection" and kind != "RECTANGLE":
        raise bad_request("Only rectangle annotations are allowed for a detection task.")
    if task.task_type != "rotated_detection":
        return
    if kind == "RECTANGLE":
        shape = annotation["shape"]
        annotation["shape"] = {
            "type": "ROTATED_RECTANGLE",
            "x": round((shape["x"] + shape["width"]) / 2, 4),
            "y": round((shape["y"] + shape["height"]) / 2, 4),
            "width": round(shape["width"], 4), "height": round(shape["height"], 4), "angle": 0,
        }
    elif kind != "ROTATED_RECTANGLE":
        raise bad_request("Only rectangle and rotated rectangle annotations are allowed for "
                          "a rotated detection task.")


def _check_unique_ids(annotations: list[dict[str, Any]]) -> None:
    ids = [annotation["id"] for annotation in annotations if "id" in annotation]
    repeated = list(dict.fromkeys(i for i in ids if ids.count(i) > 1))
    if repeated:
        raise GetiError(400, "duplicated_annotation_id",
                        "Using duplicate annotation IDs is not allowed - the following IDs "
                        f"were used multiple times: {repeated}")
