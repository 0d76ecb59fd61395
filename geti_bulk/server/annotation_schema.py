"""Schema check of an annotation scene, erring like Geti 2.x (GETI_ANNOTATIONS.md §2, §4.2, §13).

Geti validates the whole scene with ``jsonschema`` against schemas whose loader gives every
string 1-1000 characters and the top level ``additionalProperties: false``. On failure it
re-checks each shape against its own (top-level strict) schema for clearer messages, then
raises the error ``jsonschema.best_match`` picked, rendered by the service's handler. This
module carries those schemas as data and a small validator for the keywords they use.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .replies import PlainError, bad_request

MAX_POLYGON_POINTS = 5000
SHAPE_TYPES = ["ELLIPSE", "RECTANGLE", "POLYGON", "ROTATED_RECTANGLE", "KEYPOINT"]
_MONGO_DESCRIPTION = "Mongo ID of the object"
_MONGO_ID = {"type": "string", "maxLength": 24, "minLength": 24, "description": _MONGO_DESCRIPTION}
_UUID = {"type": "string", "maxLength": 1000, "minLength": 1,
         "description": "A UUID, used to identify an annotation."}
_NUMBER = {"type": "number"}
_MIN0 = {"type": "number", "minimum": 0}
_MIN1 = {"type": "number", "minimum": 1}


def _enum(value: str) -> dict[str, Any]:
    return {"type": "string", "maxLength": 1000, "minLength": 1, "enum": [value]}


def _shape(kind: str, fields: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "title": kind,
            "properties": {"type": _enum(kind), **fields}, "required": ["type", *required]}


_POINT = {"title": "Point", "type": "object", "properties": {"x": _MIN0, "y": _MIN0},
          "required": ["x", "y"]}
SHAPES: dict[str, dict[str, Any]] = {
    "ELLIPSE": _shape("ELLIPSE", {"x": _NUMBER, "y": _NUMBER, "width": _MIN1, "height": _MIN1},
                      ["x", "y", "width", "height"]),
    "RECTANGLE": _shape("RECTANGLE", {"x": _MIN0, "y": _MIN0, "width": _MIN1, "height": _MIN1},
                        ["x", "y", "width", "height"]),
    "POLYGON": _shape("POLYGON", {"points": {"type": "array", "maxItems": MAX_POLYGON_POINTS,
                                            "items": _POINT}}, ["points"]),
    "ROTATED_RECTANGLE": _shape(
        "ROTATED_RECTANGLE",
        {"x": _NUMBER, "y": _NUMBER, "width": _NUMBER, "height": _NUMBER, "angle": _NUMBER},
        ["x", "y", "width", "height", "angle"]),
    "KEYPOINT": _shape("KEYPOINT", {"x": _MIN0, "y": _MIN0, "is_visible": {"type": "boolean"}},
                       ["x", "y", "is_visible"]),
}
_ANNOTATION = {
    "type": "object",
    "required": ["shape", "labels"],
    "properties": {
        "id": _UUID,
        "shape": {"oneOf": [SHAPES[k] for k in
                            ("RECTANGLE", "POLYGON", "ELLIPSE", "ROTATED_RECTANGLE", "KEYPOINT")]},
        "labels": {"type": "array", "minItems": 1,
                   "items": {"type": "object", "required": ["id"], "properties": {"id": _MONGO_ID}}},
        "labels_to_revisit": {"type": "array", "items": _UUID},
    },
}


def _scene_schema(identifier: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["annotations"],
        "properties": {
            "annotations": {"type": "array", "items": _ANNOTATION},
            "media_identifier": {"type": "object", "properties": identifier},
            "modified": {"type": "string", "maxLength": 1000, "minLength": 1},
            "labels_to_revisit_full_scene": {"type": "array", "items": _UUID},
        },
        "additionalProperties": False,
    }


SCENE_SCHEMAS = {
    "image": _scene_schema({"image_id": _MONGO_ID, "type": _enum("image")}),
    "video_frame": _scene_schema({"frame_index": {"type": "number", "format": "int32"},
                                  "video_id": _MONGO_ID, "type": _enum("video_frame")}),
}
# the re-check loads each shape file as a top-level schema: strict there only
_STRICT_SHAPES = {k: {**v, "additionalProperties": False} for k, v in SHAPES.items()}


@dataclass
class SchemaError:
    """One ``jsonschema.ValidationError``: what failed, where, against what."""

    validator: str
    value: Any
    instance: Any
    schema: dict[str, Any]
    path: tuple[Any, ...]
    message: str = ""
    context: list[SchemaError] = field(default_factory=list)

    def matches_type(self) -> bool:
        expected = self.schema.get("type")
        return isinstance(expected, str) and is_type(self.instance, expected)


def is_type(instance: Any, kind: str) -> bool:
    if kind == "number":
        return isinstance(instance, int | float) and not isinstance(instance, bool)
    return isinstance(instance, {"object": dict, "array": list, "string": str,
                                 "boolean": bool}[kind])


def iter_errors(instance: Any, schema: dict[str, Any],
                path: tuple[Any, ...] = ()) -> Iterator[SchemaError]:
    """Errors in jsonschema's order: the schema's keywords as written, depth first."""
    for keyword, value in schema.items():
        yield from _KEYWORDS.get(keyword, _nothing)(instance, value, schema, path)


def _nothing(*_: Any) -> Iterator[SchemaError]:
    return iter(())


def _type(instance: Any, value: Any, schema: dict[str, Any],
          path: tuple[Any, ...]) -> Iterator[SchemaError]:
    if not is_type(instance, value):
        yield SchemaError("type", value, instance, schema, path)


def _properties(instance: Any, value: Any, schema: dict[str, Any],
                path: tuple[Any, ...]) -> Iterator[SchemaError]:
    if isinstance(instance, dict):
        for name, sub in value.items():
            if name in instance:
                yield from iter_errors(instance[name], sub, (*path, name))


def _required(instance: Any, value: Any, schema: dict[str, Any],
              path: tuple[Any, ...]) -> Iterator[SchemaError]:
    if isinstance(instance, dict):
        for name in value:
            if name not in instance:
                yield SchemaError("required", value, instance, schema, path)


def _additional(instance: Any, value: Any, schema: dict[str, Any],
                path: tuple[Any, ...]) -> Iterator[SchemaError]:
    if value is False and isinstance(instance, dict):
        extras = sorted((k for k in instance if k not in schema.get("properties", {})), key=str)
        if extras:
            verb = "was" if len(extras) == 1 else "were"
            names = ", ".join(repr(k) for k in extras)
            message = f"Additional properties are not allowed ({names} {verb} unexpected)"
            yield SchemaError("additionalProperties", value, instance, schema, path, message)


def _items(instance: Any, value: Any, schema: dict[str, Any],
           path: tuple[Any, ...]) -> Iterator[SchemaError]:
    if isinstance(instance, list):
        for index, item in enumerate(instance):
            yield from iter_errors(item, value, (*path, index))


def _bound(name: str, fails: Any, kind: type | tuple[type, ...]) -> Any:
    """A keyword comparing ``instance`` (of ``kind``, never a bool) with its value."""
    def check(instance: Any, value: Any, schema: dict[str, Any],
              path: tuple[Any, ...]) -> Iterator[SchemaError]:
        if isinstance(instance, kind) and not isinstance(instance, bool) and fails(instance, value):
            message = f"{instance!r} is less than the minimum of {value!r}"  # read for minimum
            yield SchemaError(name, value, instance, schema, path, message)
    return check


def _enum_check(instance: Any, value: Any, schema: dict[str, Any],
                path: tuple[Any, ...]) -> Iterator[SchemaError]:
    if not any(type(instance) is type(v) and instance == v for v in value):
        yield SchemaError("enum", value, instance, schema, path)


def _one_of(instance: Any, value: Any, schema: dict[str, Any],
            path: tuple[Any, ...]) -> Iterator[SchemaError]:
    found: list[SchemaError] = []
    valid = 0
    for sub in value:
        errors = list(iter_errors(instance, sub))
        valid += not errors
        found.extend(errors)
    if valid != 1:
        yield SchemaError("oneOf", value, instance, schema, path, context=found)


_KEYWORDS: dict[str, Any] = {
    "type": _type, "properties": _properties, "required": _required,
    "additionalProperties": _additional, "items": _items, "enum": _enum_check, "oneOf": _one_of,
    "minimum": _bound("minimum", lambda i, v: i < v, (int, float)),
    "minItems": _bound("minItems", lambda i, v: len(i) < v, list),
    "maxItems": _bound("maxItems", lambda i, v: len(i) > v, list),
    "minLength": _bound("minLength", lambda i, v: len(i) < v, str),
    "maxLength": _bound("maxLength", lambda i, v: len(i) > v, str),
}


def _relevance(error: SchemaError) -> tuple[Any, ...]:
    return (-len(error.path), error.path, error.validator not in ("anyOf", "oneOf"),
            not error.matches_type())


def best_match(errors: Iterator[SchemaError]) -> SchemaError | None:
    """jsonschema 4.26's pick: the shallowest error, then the greatest path among siblings,
    strong keywords over anyOf/oneOf, type mismatches first; into a oneOf's context while
    one of its errors stands out. Paths that do not compare are an unhandled 500."""
    try:
        best = max(errors, key=_relevance, default=None)
        while best is not None and best.context:
            smallest = heapq.nsmallest(2, best.context, key=_relevance)
            if len(smallest) == 2 and _relevance(smallest[0]) == _relevance(smallest[1]):
                return best
            best = smallest[0]
    except TypeError:
        raise PlainError() from None
    return best


def render(error: SchemaError) -> str:
    """The resource service's handler for ``jsonschema.ValidationError``."""
    if error.validator == "additionalProperties":
        return error.message
    if error.schema.get("description") == _MONGO_DESCRIPTION:
        return (f"Invalid value received for field '{error.path[-1]}': This field is expected "
                f"to be of format ID, but found '{error.instance}' instead.")
    if error.path:
        return (f"Invalid value received for field '{error.path[-1]}': This field is expected "
                f"to have {error.validator} {error.value}, but found '{error.instance}' instead.")
    return "Server received request with data that cannot be validated"


def check_scene(scene: Any, media_kind: str) -> None:
    """Raise Geti's 400 (or its unhandled 500) for a scene failing the schema (§2, §4.2)."""
    if not scene:
        raise bad_request("Server received empty annotation data. It cannot be empty.")
    error = best_match(iter_errors(scene, SCENE_SCHEMAS[media_kind]))
    if error is None:
        return
    try:
        annotations = scene["annotations"] if "annotations" in scene else None
    except TypeError:
        raise PlainError() from None  # ``"annotations" in 5``: unhandled
    if isinstance(annotations, list):
        for annotation in annotations:
            _check_shape(_key(_key(annotation, "shape"), "type"), annotation["shape"])
    raise bad_request(render(error))


def _key(value: Any, name: str) -> Any:
    """``value[name]`` as Geti indexes it: a KeyError or TypeError is an unhandled 500."""
    try:
        return value[name]
    except (KeyError, TypeError, IndexError):
        raise PlainError() from None


def _check_shape(shape_type: Any, shape: dict[str, Any]) -> None:
    try:
        known = shape_type in SHAPES
    except TypeError:
        raise PlainError() from None
    if not known:
        raise bad_request(f"Shape type {shape_type} is not valid. Valid shape types are: "
                          f"{SHAPE_TYPES}")
    error = best_match(iter_errors(shape, _STRICT_SHAPES[shape_type]))
    if error is None:
        return
    if error.validator == "minimum":
        raise bad_request(f"One or more {shape_type} shapes have invalid {error.path[0]}: "
                          f"{error.message}.")
    if error.validator == "maxItems":
        raise bad_request(f"Too many points in annotation - requested annotation had "
                          f"{len(error.instance)} points but the maximum is {MAX_POLYGON_POINTS}.")
    raise bad_request(render(error))
