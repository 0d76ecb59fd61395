"""Every §4.2 / §13 validation answer of an annotation POST, with exact texts, and the order
of the checks (§4.1)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from .annotation_helpers import (
    ANOMALY,
    CHAIN,
    DET,
    DETSEG,
    MULTI,
    PETS,
    ROT,
    SEG,
    H,
    W,
    ann,
    annotated,
    error,
    full,
    post,
    rect,
    task_ids,
    upload_image,
)
from .conftest import Api

Build = Callable[[Api], list[dict[str, Any]]]
BAD = "Only full box rectangle annotations are allowed for a classification label on a full image."
OUT = "Shape out of bounds for annotation with type"


def polygon(*points: tuple[float, float]) -> dict[str, Any]:
    return {"type": "POLYGON", "points": [{"x": x, "y": y} for x, y in points]}


def rotated(x: float, y: float, w: float, h: float, angle: float) -> dict[str, Any]:
    return {"type": "ROTATED_RECTANGLE", "x": x, "y": y, "width": w, "height": h, "angle": angle}


TRIANGLE = polygon((1, 1), (20, 1), (10, 20))
CASES: list[tuple[str, str, Build, str, str]] = [
    ("labels: []", DET, lambda a: [{"labels": [], "shape": rect(0, 0, 5, 5)}], "bad_request",
     "Invalid value received for field 'labels': This field is expected to have minItems 1, "
     "but found '[]' instead."),
    ("short label id", DET, lambda a: [{"labels": [{"id": "abc"}], "shape": rect(0, 0, 5, 5)}],
     "bad_request", "Invalid value received for field 'id': This field is expected to be of "
     "format ID, but found 'abc' instead."),
    ("empty annotation id", DET, lambda a: [ann(a, DET, rect(0, 0, 5, 5), "car", id="")],
     "bad_request", "Invalid value received for field 'id': This field is expected to have "
     "minLength 1, but found '' instead."),
    ("1001-char id", DET, lambda a: [ann(a, DET, rect(0, 0, 5, 5), "car", id="x" * 1001)],
     "bad_request", "Invalid value received for field 'id': This field is expected to have "
     f"maxLength 1000, but found '{'x' * 1001}' instead."),
    ("shape type", DET, lambda a: [ann(a, DET, {"type": "CIRCLE"}, "car")], "bad_request",
     "Shape type CIRCLE is not valid. Valid shape types are: ['ELLIPSE', 'RECTANGLE', "
     "'POLYGON', 'ROTATED_RECTANGLE', 'KEYPOINT']"),
    ("width 0", DET, lambda a: [ann(a, DET, rect(0, 0, 0, 5), "car")], "bad_request",
     "One or more RECTANGLE shapes have invalid width: 0 is less than the minimum of 1."),
    ("x -1", DET, lambda a: [ann(a, DET, rect(-1, 0, 5, 5), "car")], "bad_request",
     "One or more RECTANGLE shapes have invalid x: -1 is less than the minimum of 0."),
    ("5001 points", SEG, lambda a: [ann(a, SEG, polygon(*[(1, 1)] * 5001), "road")],
     "bad_request", "Too many points in annotation - requested annotation had 5001 points but "
     "the maximum is 5000."),
    ("past the right edge", DET, lambda a: [ann(a, DET, rect(600, 0, 40.5, 5), "car")],
     "bad_request", f"{OUT} RECTANGLE and dimensions x=600, y=0, width=40.5, height=5"),
    ("polygon point", SEG, lambda a: [ann(a, SEG, polygon((1, 1), (641, 2), (3, 3)), "road")],
     "bad_request", "Polygon point out of bounds with coordinates x=641, y=2"),
    ("ellipse outside", SEG, lambda a: [ann(a, SEG, {"type": "ELLIPSE", "x": -50, "y": -50,
                                                     "width": 10, "height": 10}, "road")],
     "bad_request", f"{OUT} ELLIPSE and dimensions x=-50, y=-50, width=10, height=10: this "
     "shape needs to have at least 1 pixels within the image."),
    ("rotated outside", ROT, lambda a: [ann(a, ROT, rotated(700, 500, 10, 10, 45), "ship")],
     "bad_request", f"{OUT} ROTATED_RECTANGLE and dimensions x=700, y=500, width=10, "
     "height=10, angle=45: this shape needs to have at least 1 pixels within the image."),
    ("exclusive", PETS, lambda a: [ann(a, PETS, full(), "dog", "cat")],
     "conflicting_exclusive_labels", "Cannot create annotation due to conflicting labels. "
     "These exclusive groups have two or more labels: {'Pets': {'cat', 'dog'}}"),
    ("exclusive via ancestors", CHAIN, lambda a: [ann(a, CHAIN, rect(0, 0, 9, 9), "object",
                                                      "red", "blue")],
     "conflicting_exclusive_labels", "Cannot create annotation due to conflicting labels. "
     "These exclusive groups have two or more labels: {'Objects___Color': {'blue', 'red'}}"),
    ("duplicate ids", DET, lambda a: [ann(a, DET, rect(0, 0, 5, 5), "car", id="a1"),
                                      ann(a, DET, rect(9, 9, 5, 5), "car", id="a1")],
     "duplicated_annotation_id", "Using duplicate annotation IDs is not allowed - the "
     "following IDs were used multiple times: ['a1']"),
    ("classification not full", PETS, lambda a: [ann(a, PETS, rect(0, 0, W, H - 1), "cat")],
     "bad_request", BAD),
    ("extra key in full box", PETS, lambda a: [ann(a, PETS, {**full(), "angle": 0}, "cat")],
     "bad_request", BAD),
    ("anomaly local box", ANOMALY, lambda a: [ann(a, ANOMALY, rect(5, 5, 50, 50), "Anomalous")],
     "bad_request", BAD),
    ("detection polygon", DET, lambda a: [ann(a, DET, TRIANGLE, "car")], "bad_request",
     "Only rectangle annotations are allowed for a detection task."),
    ("rotated polygon", ROT, lambda a: [ann(a, ROT, TRIANGLE, "ship")], "bad_request",
     "Only rectangle and rotated rectangle annotations are allowed for a rotated detection "
     "task."),
    ("empty not full", DET, lambda a: [ann(a, DET, rect(0, 0, 5, 5), "No object")],
     "bad_request", "Empty label for the first task must be a full box rectangle."),
    ("overlap empty", DET, lambda a: [ann(a, DET, full(), "No object"),
                                      ann(a, DET, rect(0, 0, 5, 5), "car")],
     "bad_request", "Not allowed to create annotation that overlaps with an empty box "
     "annotation."),
    ("empty with a label", SEG, lambda a: [ann(a, SEG, full(), "Empty", "road")],
     "bad_request", "Not allowed to create annotation that overlaps with an empty box "
     "annotation."),
    ("class without box label", CHAIN, lambda a: [ann(a, CHAIN, rect(0, 0, 9, 9), "red")],
     "bad_request", "Annotation for a global task is missing a label for the preceding task."),
    ("seg empty without box", DETSEG, lambda a: [ann(a, DETSEG, rect(0, 0, 9, 9), "Empty")],
     "bad_request", "Empty annotation for a task is missing a label for the preceding task."),
]


@pytest.mark.parametrize(("case", "project", "build", "code", "message"), CASES,
                         ids=[c[0] for c in CASES])
async def test_validation_answers(api: Api, case: str, project: str, build: Build, code: str,
                                  message: str) -> None:
    image_id, reply = await annotated(api, project, *build(api))
    assert reply.json() == error(400, code, message), case
    assert api.server.store.scenes.count() == 0


async def test_empty_and_non_empty_of_one_global_task(api: Api) -> None:
    _, reply = await annotated(api, MULTI, ann(api, MULTI, full(), "No class", "indoor"))
    task = task_ids(api, MULTI)[0]
    assert reply.json() == error(
        400, "bad_request", "Cannot create annotation that has both empty label with ID "
        f"{api.label_id(MULTI, 'No class')} and non-empty label with ID "
        f"{api.label_id(MULTI, 'indoor')} for task {task}")


@pytest.mark.parametrize("extra", ["kind", "id", "annotation_state_per_task"])
async def test_scene_level_keys_of_a_get_are_refused(api: Api, extra: str) -> None:
    image_id = await upload_image(api, DET)
    body = {"annotations": [ann(api, DET, rect(0, 0, 5, 5), "car")], extra: "x"}
    reply = await post(api, DET, image_id, body)
    assert reply.json() == error(
        400, "bad_request", f"Additional properties are not allowed ('{extra}' was unexpected)")


async def test_bodies_geti_refuses_early(api: Api) -> None:
    image_id = await upload_image(api, DET)
    empty = await post(api, DET, image_id, {})
    assert empty.json() == error(400, "bad_request",
                                 "Server received empty annotation data. It cannot be empty.")
    for raw in (b"", b"not json"):
        reply = await post(api, DET, image_id, raw=raw)
        assert reply.json() == error(400, "missing_payload", "Missing request body")
    no_list = await post(api, DET, image_id, {"modified": "x"})
    assert no_list.json() == error(400, "bad_request",
                                   "Server received request with data that cannot be validated")


async def test_unhandled_errors_are_plain_500(api: Api) -> None:
    image_id = await upload_image(api, DET)
    car = api.label_id(DET, "car")
    cases = [
        {"annotations": [{"labels": [{"id": car}]}], "kind": "x"},  # no shape: KeyError
        {"annotations": [ann(api, DET, rect(0, 0, 5, 5), "car", id="twelve_chars")]},
        {"annotations": [ann(api, DET, rect(0, 0, 5, 5), "car", modified="yesterday")]},
        {"annotations": [ann(api, SEG, polygon((1, 1), (5, 5)), "road")]},
    ]
    for index, body in enumerate(cases):
        project = SEG if index == 3 else DET
        target = image_id if project == DET else await upload_image(api, SEG)
        reply = await post(api, project, target, body)
        assert (reply.status, reply.text) == (500, "Internal Server Error"), body
        assert reply.headers["Content-Type"].startswith("text/plain")
    assert api.server.store.scenes.count() == 0


async def test_bounds_have_no_tolerance(api: Api) -> None:
    _, edge = await annotated(api, DET, ann(api, DET, rect(600, 440, 40, 40), "car"))
    assert edge.status == 200
    _, over = await annotated(api, DET, ann(api, DET, rect(600, 440, 40.000001, 40), "car"))
    assert over.status == 400 and over.json()["message"].startswith(OUT)


async def test_check_order(api: Api) -> None:
    image_id = await upload_image(api, DET)
    unknown = {"labels": [{"id": "b" * 24}], "shape": rect(0, 0, 5, 5)}
    out = ann(api, DET, rect(630, 0, 20, 5), "car")
    # every label is looked up before any annotation is checked
    reply = await post(api, DET, image_id, {"annotations": [out, unknown]})
    assert reply.json() == error(404, "label_not_found", "The requested label could not be "
                                 f"found. Label ID: `{'b' * 24}`. ")
    # bounds come before exclusivity on one annotation
    both = ann(api, DET, rect(630, 0, 20, 5), "car", "truck")
    assert (await post(api, DET, image_id, {"annotations": [both]})).json()[
        "error_code"] == "bad_request"
    # duplicate ids are checked after the first annotation passed its own checks
    first = ann(api, DET, rect(0, 0, 5, 5), "car", id="d")
    second = ann(api, DET, rect(0, 0, 5, 5), "car", "truck", id="d")
    assert (await post(api, DET, image_id, {"annotations": [first, second]})).json()[
        "error_code"] == "duplicated_annotation_id"
    # the image must exist in this dataset; the project is checked first
    reply = await post(api, DET, "c" * 24, {"annotations": []})
    assert reply.json()["error_code"] == "image_not_found"
    bad_path = f"{api.dataset_path(DET)}/media/images/nope/annotations"
    reply = await api.request("POST", bad_path, json={"annotations": []})
    assert reply.json() == error(400, "bad_request", "Invalid request parameters: 'image_id'. "
                                 "The provided string is not a valid ID: 'nope'.")


async def test_ids_and_labels_are_normalised_like_geti(api: Api) -> None:
    upper = api.label_id(DET, "car").upper()
    raw = {"labels": [{"id": upper, "probability": 0.25, "source": {"model_id": None}}],
           "shape": rect(0, 0, 5, 5), "id": "0123456789ABCDEF0123456789ABCDEF"}
    image_id, reply = await annotated(api, DET, raw)
    label = reply.json()["annotations"][0]["labels"][0]
    assert label["id"] == upper.lower() and label["probability"] == 0.25
    assert label["source"]["model_id"] == "none"
    got = (await post(api, DET, image_id, {"annotations": []}))
    assert got.status == 200
    _, reply = await annotated(api, DET, raw)
    image = reply.json()["media_identifier"]["image_id"]
    stored = await api.get(f"{api.dataset_path(DET)}/media/images/{image}/annotations/latest")
    assert stored.json()["annotations"][0]["id"] == "01234567-89ab-cdef-0123-456789abcdef"
