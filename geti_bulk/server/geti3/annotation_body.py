"""The body of ``POST …/media/{id}/annotations`` (GETI3_API.md §7; ``SetMediaAnnotations``,
``DatasetItemAnnotation`` and the shapes of ``app/models/shape.py``), checked like pydantic
would: every error collected, locations through the discriminated ``shape`` union."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import ErrorList, Loc, error, invalid
from .validate import (
    BAD,
    field,
    v_bool,
    v_enum,
    v_float,
    v_int,
    v_list,
    v_object,
    v_uuid,
)

SUBSETS = ("unassigned", "training", "validation", "testing")
SHAPE_TAGS = ("rectangle", "polygon", "full_image")


@dataclass(frozen=True)
class AnnotationsBody:
    annotations: list[dict[str, Any]]  # as ``model_dump(mode="json")`` stores them
    subset: str | None


def parse_annotations_body(body: Any) -> AnnotationsBody:
    errs: ErrorList = []
    loc: Loc = ("body",)
    obj = v_object(body, loc, errs, None)
    if obj is BAD:
        raise invalid(errs)
    annotations = field(obj, "annotations", loc, errs,
                        lambda v, lc, e: v_list(v, lc, e, _annotation))
    subset = field(obj, "subset", loc, errs, lambda v, lc, e: v_enum(v, lc, e, SUBSETS), None)
    field(obj, "user_reviewed", loc, errs, v_bool, True)  # accepted, then ignored (§7)
    if errs:
        raise invalid(errs)
    return AnnotationsBody(annotations, subset)


def _annotation(value: Any, loc: Loc, errs: ErrorList) -> Any:
    obj = v_object(value, loc, errs, "DatasetItemAnnotation")
    if obj is BAD:
        return BAD
    shape = field(obj, "shape", loc, errs, _shape)
    labels = field(obj, "labels", loc, errs, lambda v, lc, e: v_list(v, lc, e, _label_ref))
    field(obj, "confidences", loc, errs,
          lambda v, lc, e: v_list(v, lc, e, lambda x, lx, ex: v_float(x, lx, ex)), None)
    if BAD in (shape, labels):
        return BAD
    # user-reviewed data: confidences are dropped (§7, dataset_service.py)
    return {"shape": shape, "labels": labels, "confidences": None}


def _label_ref(value: Any, loc: Loc, errs: ErrorList) -> Any:
    obj = v_object(value, loc, errs, "LabelReference")
    if obj is BAD:
        return BAD
    label_id = field(obj, "id", loc, errs, v_uuid)
    return BAD if label_id is BAD else {"id": label_id}


def _shape(value: Any, loc: Loc, errs: ErrorList) -> Any:
    if not isinstance(value, dict):
        errs.append(error("model_attributes_type", loc, "Input should be a valid dictionary or "
                          "object to extract fields from", value))
        return BAD
    if "type" not in value:
        errs.append(error("union_tag_not_found", loc, "Unable to extract tag using "
                          "discriminator 'type'", value, {"discriminator": "'type'"}))
        return BAD
    tag = value["type"]
    if tag not in SHAPE_TAGS:
        expected = ", ".join(f"'{t}'" for t in SHAPE_TAGS)
        errs.append(error("union_tag_invalid", loc, f"Input tag '{tag}' found using 'type' does "
                          f"not match any of the expected tags: {expected}", value,
                          {"discriminator": "'type'", "tag": str(tag), "expected_tags": expected}))
        return BAD
    inner: Loc = (*loc, tag)
    if tag == "full_image":
        return {"type": "full_image"}
    if tag == "rectangle":
        return _rectangle(value, inner, errs)
    points = field(value, "points", inner, errs, lambda v, lc, e: v_list(v, lc, e, _point))
    return BAD if points is BAD else {"type": "polygon", "points": points}


def _rectangle(value: dict[str, Any], loc: Loc, errs: ErrorList) -> Any:
    out: dict[str, Any] = {"type": "rectangle"}
    for key in ("x", "y", "width", "height"):
        out[key] = field(value, key, loc, errs, lambda v, lc, e: v_int(v, lc, e, ge=0))
    return BAD if BAD in out.values() else out


def _point(value: Any, loc: Loc, errs: ErrorList) -> Any:
    obj = v_object(value, loc, errs, "Point")
    if obj is BAD:
        return BAD
    x = field(obj, "x", loc, errs, lambda v, lc, e: v_float(v, lc, e, ge=0))
    y = field(obj, "y", loc, errs, lambda v, lc, e: v_float(v, lc, e, ge=0))
    return BAD if BAD in (x, y) else {"x": x, "y": y}
