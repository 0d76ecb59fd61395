"""Annotations after upload (GETI3_API.md §7, §14.5–6, §15): validation messages per task,
inclusive bounds, replace semantics, subsets, GET/DELETE and the annotation filters."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from .conftest import Api3, jpeg

PETS, SCENE, CARS, CELLS = ("Pets classification", "Scene attributes", "Vehicle detection",
                            "Cell segmentation")


async def _media(api: Api3, project: str, width: int = 64, height: int = 48) -> str:
    reply = await api.upload(project, jpeg(width, height), "a.jpg")
    assert reply.status == 201, reply.text
    return str(reply.json()["id"])


def full(*labels: str) -> dict[str, Any]:
    return {"labels": [{"id": lab} for lab in labels], "shape": {"type": "full_image"}}


def rect(label: str, x: int, y: int, w: int, h: int) -> dict[str, Any]:
    return {"labels": [{"id": label}], "shape": {"type": "rectangle", "x": x, "y": y,
                                                 "width": w, "height": h}}


def poly(label: str, *points: tuple[float, float]) -> dict[str, Any]:
    return {"labels": [{"id": label}],
            "shape": {"type": "polygon", "points": [{"x": x, "y": y} for x, y in points]}}


async def test_classification_rules(api: Api3) -> None:
    cat, dog = api.label(PETS, "cat"), api.label(PETS, "dog")
    media = await _media(api, PETS)
    cases = [
        ([], "Multiclass classification project requires one annotation."),
        ([full(cat, dog)], "Multiclass classification project doesn't allow more than one "
                           "label per annotation."),
        ([full(cat), full(dog)], "Classification project doesn't allow more than one "
                                 "annotation."),
        ([rect(cat, 0, 0, 1, 1)], "Classification project supports only full_image shapes."),
    ]
    for body, message in cases:
        reply = await api.annotate(PETS, media, {"annotations": body})
        assert (reply.status, reply.json()) == (400, {"detail": message})
    ok = await api.annotate(PETS, media, {"annotations": [full(cat)]})
    assert ok.status == 201, ok.text
    assert ok.json() == {"media_id": media, "annotations": [
        {"shape": {"type": "full_image"}, "labels": [{"id": cat}], "confidences": None}],
        "user_reviewed": True, "prediction_model_id": None, "subset": "unassigned"}


async def test_multilabel_allows_several_labels_and_empty(api: Api3) -> None:
    sunny, night = api.label(SCENE, "sunny"), api.label(SCENE, "night")
    media = await _media(api, SCENE)
    assert (await api.annotate(SCENE, media, {"annotations": [full(sunny, night)]})).status == 201
    assert (await api.annotate(SCENE, media, {"annotations": []})).status == 201


async def test_unknown_label_and_wrong_shape(api: Api3) -> None:
    car = api.label(CARS, "car")
    media = await _media(api, CARS)
    stranger = str(uuid.uuid4())
    reply = await api.annotate(CARS, media, {"annotations": [rect(stranger, 0, 0, 1, 1)]})
    assert reply.json() == {"detail": f"Label {stranger} is not found in the project."}
    other = await api.annotate(CARS, media, {"annotations": [rect(api.label(PETS, "cat"),
                                                                  0, 0, 1, 1)]})
    assert other.status == 400 and "is not found in the project" in other.json()["detail"]
    shape = await api.annotate(CARS, media, {"annotations": [poly(car, (1, 1))]})
    assert shape.json() == {"detail": "Detection project supports only rectangle shapes."}
    cell = await _media(api, CELLS)
    seg = await api.annotate(CELLS, cell, {"annotations": [rect(api.label(CELLS, "cell"),
                                                                0, 0, 1, 1)]})
    assert seg.json() == {"detail": "Instance Segmentation project supports only polygon shapes."}


async def test_bounds_are_inclusive_absolute_pixels(api: Api3) -> None:
    car = api.label(CARS, "car")
    media = await _media(api, CARS, 64, 48)
    edge = await api.annotate(CARS, media, {"annotations": [rect(car, 14, 8, 50, 40)]})
    assert edge.status == 201, edge.text
    wide = await api.annotate(CARS, media, {"annotations": [rect(car, 15, 0, 50, 10)]})
    assert wide.json() == {"detail": "Rectangle coordinates (x1=15, x2=65) are out of bounds "
                                     "for media width 64"}
    tall = await api.annotate(CARS, media, {"annotations": [rect(car, 0, 1, 10, 48)]})
    assert tall.json() == {"detail": "Rectangle coordinates (y1=1, y2=49) are out of bounds "
                                     "for media height 48"}
    normalised = await api.annotate(CARS, media, {"annotations": [rect(car, 0, 0, 1, 1)]})
    assert normalised.status == 201
    cell = api.label(CELLS, "cell")
    seg = await _media(api, CELLS, 64, 48)
    assert (await api.annotate(CELLS, seg, {"annotations": [
        poly(cell, (0, 0), (64, 0), (64, 48))]})).status == 201
    out = await api.annotate(CELLS, seg, {"annotations": [poly(cell, (0, 0), (64.5, 1))]})
    assert out.json() == {"detail": "Polygon points (x=64.5, y=1.0) are out of bounds for media "
                                    "(64, 48)"}


@pytest.mark.parametrize(("annotation", "kind", "loc"), [
    ({"labels": [], "shape": {"type": "polygon", "points": [[1, 2]]}}, "model_type",
     ["body", "annotations", 0, "shape", "polygon", "points", 0]),
    ({"labels": [], "shape": {"type": "rectangle", "x": -1, "y": 0, "width": 1, "height": 1}},
     "greater_than_equal", ["body", "annotations", 0, "shape", "rectangle", "x"]),
    ({"labels": [], "shape": {"type": "rectangle", "x": 0.5, "y": 0, "width": 1, "height": 1}},
     "int_from_float", ["body", "annotations", 0, "shape", "rectangle", "x"]),
    ({"labels": [], "shape": {"type": "box"}}, "union_tag_invalid",
     ["body", "annotations", 0, "shape"]),
    ({"labels": ["car"], "shape": {"type": "full_image"}}, "model_type",
     ["body", "annotations", 0, "labels", 0]),
    ({"labels": [{"id": "car"}], "shape": {"type": "full_image"}}, "uuid_parsing",
     ["body", "annotations", 0, "labels", 0, "id"]),
    ({"shape": {"type": "full_image"}}, "missing", ["body", "annotations", 0, "labels"]),
])
async def test_body_422(api: Api3, annotation: dict[str, Any], kind: str, loc: list[Any]) -> None:
    media = await _media(api, CARS)
    reply = await api.annotate(CARS, media, {"annotations": [annotation]})
    assert reply.status == 422
    assert [(e["type"], e["loc"]) for e in reply.json()["detail"]] == [(kind, loc)]


async def test_replace_not_append_and_get(api: Api3) -> None:
    car, truck = api.label(CARS, "car"), api.label(CARS, "truck")
    media = await _media(api, CARS)
    path = f"{api.media_path(CARS)}/{media}/annotations"
    never = await api.call("GET", path)
    assert (never.status, never.json()) == (404, {"detail": "Media has not been annotated yet."})
    await api.annotate(CARS, media, {"annotations": [rect(car, 0, 0, 5, 5), rect(car, 1, 1, 2, 2)]})
    await api.annotate(CARS, media, {"annotations": [rect(truck, 3, 3, 4, 4)]})
    got = (await api.call("GET", path)).json()
    assert "media_id" not in got
    assert got["annotations"] == [{"shape": {"type": "rectangle", "x": 3, "y": 3, "width": 4,
                                             "height": 4}, "labels": [{"id": truck}],
                                   "confidences": None}]
    by_label = await api.call("GET", api.media_path(CARS), params={"labels": car})
    assert by_label.json()["pagination"]["total"] == 0
    assert (await api.stats())["annotations_stored"] == 2


async def test_subset_conflict_rolls_back(api: Api3) -> None:
    car, truck = api.label(CARS, "car"), api.label(CARS, "truck")
    media = await _media(api, CARS)
    path = f"{api.media_path(CARS)}/{media}/annotations"
    first = await api.annotate(CARS, media, {"annotations": [rect(car, 0, 0, 1, 1)],
                                             "subset": "training"})
    assert first.json()["subset"] == "training"
    same = await api.annotate(CARS, media, {"annotations": [], "subset": "training"})
    assert same.status == 201
    clash = await api.annotate(CARS, media, {"annotations": [rect(truck, 0, 0, 1, 1)],
                                             "subset": "testing"})
    assert (clash.status, clash.json()) == (409, {"detail": "Dataset item has already a subset "
                                                            "assigned."})
    assert (await api.call("GET", path)).json()["annotations"] == []


async def test_annotation_status_filters_and_delete(api: Api3) -> None:
    car = api.label(CARS, "car")
    done, empty, todo = [await _media(api, CARS) for _ in range(3)]
    await api.annotate(CARS, done, {"annotations": [rect(car, 0, 0, 1, 1)]})
    await api.annotate(CARS, empty, {"annotations": []})

    async def ids(status: str) -> set[str]:
        page = await api.call("GET", api.media_path(CARS), params={"annotation_status": status})
        return {item["id"] for item in page.json()["items"]}

    assert await ids("with_annotations") == {done, empty}
    assert await ids("missing_annotations") == {todo}
    deleted = await api.call("DELETE", f"{api.media_path(CARS)}/{done}/annotations")
    assert deleted.status == 204
    assert (await api.call("GET", f"{api.media_path(CARS)}/{done}/annotations")).status == 404
    assert await ids("with_annotations") == {done, empty}  # JSON null is not SQL NULL (§15)


async def test_unknown_media_404_before_body_errors(api: Api3) -> None:
    missing = str(uuid.uuid4())
    reply = await api.annotate(CARS, missing, {"annotations": "nope"})
    assert (reply.status, reply.json()) == (404, {"detail": f"Media with ID {missing} not found."})
