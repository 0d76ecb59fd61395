"""The checks ``DatasetService`` makes before storing annotations (GETI3_API.md §7;
``app/services/dataset_service.py``): labels of the project, shapes per task, absolute
pixel bounds with inclusive edges. Every failure is a 400 ``{"detail": <message>}``."""

from __future__ import annotations

from typing import Any

from .errors import ApiError
from .store import Media, Project


def _fail(message: str) -> ApiError:
    return ApiError(400, message)


def check_annotations(annotations: list[dict[str, Any]], project: Project, media: Media) -> None:
    known = {label.id for label in project.labels}
    for annotation in annotations:
        for label in annotation["labels"]:
            if label["id"] not in known:
                raise _fail(f"Label {label['id']} is not found in the project.")
    _check_shapes(annotations, project)
    _check_bounds(annotations, media)


def _check_shapes(annotations: list[dict[str, Any]], project: Project) -> None:
    if project.task_type == "classification":
        _check_classification(annotations, project.exclusive_labels)
        return
    wanted, noun, short = {
        "detection": ("rectangle", "Detection project supports only rectangle shapes.",
                      "Detection"),
        "instance_segmentation": ("polygon", "Instance Segmentation project supports only "
                                  "polygon shapes.", "Segmentation"),
    }[project.task_type]
    for annotation in annotations:
        if annotation["shape"]["type"] != wanted:
            raise _fail(noun)
        if len(annotation["labels"]) > 1:
            raise _fail(f"{short} project doesn't allow more than one label per annotation.")


def _check_classification(annotations: list[dict[str, Any]], exclusive: bool) -> None:
    if not annotations:
        if exclusive:  # multi-class: an empty list is refused; multi-label allows it
            raise _fail("Multiclass classification project requires one annotation.")
        return
    if len(annotations) > 1:
        raise _fail("Classification project doesn't allow more than one annotation.")
    annotation = annotations[0]
    if annotation["shape"]["type"] != "full_image":
        raise _fail("Classification project supports only full_image shapes.")
    if exclusive and len(annotation["labels"]) > 1:
        raise _fail("Multiclass classification project doesn't allow more than one label per "
                    "annotation.")


def _check_bounds(annotations: list[dict[str, Any]], media: Media) -> None:
    for annotation in annotations:
        shape = annotation["shape"]
        if shape["type"] == "rectangle":
            x1, x2 = shape["x"], shape["x"] + shape["width"]
            if x1 > media.width or x2 > media.width:
                raise _fail(f"Rectangle coordinates (x1={x1}, x2={x2}) are out of bounds for "
                            f"media width {media.width}")
            y1, y2 = shape["y"], shape["y"] + shape["height"]
            if y1 > media.height or y2 > media.height:
                raise _fail(f"Rectangle coordinates (y1={y1}, y2={y2}) are out of bounds for "
                            f"media height {media.height}")
        elif shape["type"] == "polygon":
            for point in shape["points"]:
                if point["x"] > media.width or point["y"] > media.height:
                    raise _fail(f"Polygon points (x={point['x']}, y={point['y']}) are out of "
                                f"bounds for media ({media.width}, {media.height})")
