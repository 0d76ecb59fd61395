"""Annotation scenes over real HTTP: bodies (§3), versions and latest (§5), rounding (§2.3),
task rules and chains (§4.3, §6), media state, uploads with labels, restarts."""

from __future__ import annotations

import json
import re
from pathlib import Path

from geti_bulk.server.samples import image_bytes

from .annotation_helpers import (
    CHAIN,
    DET,
    DETSEG,
    PETS,
    ROT,
    SEG,
    H,
    W,
    ann,
    annotated,
    error,
    full,
    latest,
    post,
    rect,
    task_ids,
    upload_image,
)
from .conftest import Api, MakeGeti

OBJECT_ID = re.compile(r"[0-9a-f]{24}")


async def test_post_answers_the_stored_scene(api: Api) -> None:
    image_id, reply = await annotated(api, DET, ann(api, DET, rect(12.4, 40.2, 100.6, 64.25),
                                                    "car", id="0B9C-custom"))
    assert reply.status == 200, reply.text
    body = reply.json()
    assert list(body) == ["kind", "modified", "media_identifier", "id",
                          "labels_to_revisit_full_scene", "annotation_state_per_task",
                          "annotations"]
    assert body["kind"] == "annotation" and OBJECT_ID.fullmatch(body["id"])
    assert body["media_identifier"] == {"type": "image", "image_id": image_id}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}000\+00:00", body["modified"])
    assert body["annotation_state_per_task"] == [
        {"task_id": task_ids(api, DET)[0], "state": "annotated"}]
    [one] = body["annotations"]
    assert list(one) == ["id", "modified", "labels", "labels_to_revisit", "shape"]
    assert one["id"] == "0B9C-custom"            # the POST shows the id as sent ...
    assert one["labels"] == [{"id": api.label_id(DET, "car"), "probability": 1.0, "source": {
        "user_id": api.server.world.user_id, "model_id": None, "model_storage_id": None}}]
    assert one["shape"] == rect(12, 40, 101, 64)  # rounded to whole pixels
    again = (await latest(api, DET, image_id)).json()
    assert again["annotations"][0]["id"] == "0b9c-custom"  # ... a GET as MongoDB keeps it
    assert again["annotations"][0]["shape"] == rect(12, 40, 101, 64)


async def test_every_post_is_a_new_version_and_latest_is_the_newest(api: Api) -> None:
    image_id, first = await annotated(api, DET, ann(api, DET, rect(0, 0, 10, 10), "car"))
    second = await post(api, DET, image_id,
                        {"annotations": [ann(api, DET, rect(5, 5, 20, 20), "truck")]})
    assert first.json()["id"] != second.json()["id"]
    reply = await latest(api, DET, image_id)
    assert reply.json()["id"] == second.json()["id"]
    assert reply.json()["annotations"][0]["shape"] == rect(5, 5, 20, 20)
    by_id = await api.get(f"{api.dataset_path(DET)}/media/images/{image_id}/annotations/"
                          f"{first.json()['id']}")
    assert by_id.json()["annotations"][0]["shape"] == rect(0, 0, 10, 10)
    other = await upload_image(api, DET)
    missing = await api.get(f"{api.dataset_path(DET)}/media/images/{other}/annotations/"
                            f"{first.json()['id']}")
    assert missing.json() == error(
        404, "annotation_not_found", "The requested annotation scene could not be found. "
        f"Annotation Scene ID: `{first.json()['id']}`. ")
    bad = await api.get(f"{api.dataset_path(DET)}/media/images/{image_id}/annotations/LATEST")
    assert bad.status == 400 and "'annotation_id'" in bad.json()["message"]
    stats = (await api.admin("GET", "/_admin/stats")).json()["annotations"]
    assert stats["scenes_stored"] == 2 and stats["posts"] == 2


async def test_latest_is_204_with_an_empty_body_when_none_or_empty(api: Api) -> None:
    image_id = await upload_image(api, DET)
    reply = await latest(api, DET, image_id)
    assert (reply.status, reply.text) == (204, "")
    await post(api, DET, image_id, {"annotations": [ann(api, DET, rect(0, 0, 9, 9), "car")]})
    assert (await latest(api, DET, image_id)).status == 200
    cleared = await post(api, DET, image_id, {"annotations": []})
    assert cleared.status == 200 and cleared.json()["annotation_state_per_task"][0]["state"] \
        == "none"
    reply = await latest(api, DET, image_id)
    assert (reply.status, reply.text) == (204, "")
    detail = (await api.get(f"{api.dataset_path(DET)}/media/images/{image_id}")).json()
    assert detail["annotation_state_per_task"][0]["state"] == "none"


async def test_label_only_drops_shapes(api: Api) -> None:
    image_id, _ = await annotated(api, DET, ann(api, DET, rect(0, 0, 9, 9), "car"))
    body = (await latest(api, DET, image_id, "?label_only=true")).json()
    assert "shape" not in body["annotations"][0] and body["annotations"][0]["labels"]
    assert "shape" in (await latest(api, DET, image_id, "?label_only=false")).json()[
        "annotations"][0]


async def test_polygons_and_keypoints_round_to_integers(api: Api) -> None:
    points = [{"x": 10.4, "y": 10.6}, {"x": 200.5, "y": 12.2}, {"x": 190.7, "y": 150.49}]
    image_id, reply = await annotated(api, SEG, ann(api, SEG, {"type": "POLYGON",
                                                               "points": points}, "road"))
    assert reply.status == 200, reply.text
    shape = (await latest(api, SEG, image_id)).json()["annotations"][0]["shape"]
    assert shape == {"type": "POLYGON", "points": [{"x": 10, "y": 11}, {"x": 200, "y": 12},
                                                   {"x": 191, "y": 150}]}


async def test_rotated_rectangles_keep_4_decimals_only_in_rotated_detection(api: Api) -> None:
    rotated = {"type": "ROTATED_RECTANGLE", "x": 100.123456, "y": 80.25, "width": 40,
               "height": 20, "angle": 390}
    image_id, reply = await annotated(api, ROT, ann(api, ROT, rotated, "ship"))
    assert reply.json()["annotations"][0]["shape"] == {
        "type": "ROTATED_RECTANGLE", "x": 100.1235, "y": 80.25, "width": 40.0, "height": 20.0,
        "angle": 30.0}
    # a RECTANGLE is converted with Geti's centre (x + width) / 2, not x + width / 2
    _, moved = await annotated(api, ROT, ann(api, ROT, rect(100, 50, 40, 20), "ship"))
    assert moved.json()["annotations"][0]["shape"] == {
        "type": "ROTATED_RECTANGLE", "x": 70.0, "y": 35.0, "width": 40.0, "height": 20.0,
        "angle": 0.0}
    square = {"type": "ROTATED_RECTANGLE", "x": 50, "y": 50, "width": 20, "height": 20,
              "angle": 0}
    _, elsewhere = await annotated(api, SEG, ann(api, SEG, square, "road"))
    assert elsewhere.json()["annotations"][0]["shape"] == {"type": "POLYGON", "points": [
        {"x": 60, "y": 60}, {"x": 40, "y": 60}, {"x": 40, "y": 40}, {"x": 60, "y": 40}]}


async def test_hierarchical_labels_get_their_ancestors(api: Api) -> None:
    _, reply = await annotated(api, CHAIN, ann(api, CHAIN, rect(10, 10, 50, 50), "red",
                                               "object"))
    labels = reply.json()["annotations"][0]["labels"]
    assert [lb["id"] for lb in labels] == [api.label_id(CHAIN, "red"),
                                           api.label_id(CHAIN, "object")]
    _, reply = await annotated(api, CHAIN, ann(api, CHAIN, rect(10, 10, 50, 50), "object",
                                               "blue"))
    assert [s["state"] for s in reply.json()["annotation_state_per_task"]] == [
        "annotated", "annotated"]


async def test_chain_states_per_task(api: Api) -> None:
    both = ann(api, CHAIN, rect(0, 0, 50, 50), "object", "red")
    box_only = ann(api, CHAIN, rect(100, 100, 50, 50), "object")
    _, reply = await annotated(api, CHAIN, both, box_only)
    assert [s["state"] for s in reply.json()["annotation_state_per_task"]] == [
        "annotated", "partially_annotated"]
    _, reply = await annotated(api, CHAIN, box_only)
    assert [s["state"] for s in reply.json()["annotation_state_per_task"]] == [
        "annotated", "none"]
    _, reply = await annotated(api, CHAIN, ann(api, CHAIN, full(), "No object"))
    assert [s["state"] for s in reply.json()["annotation_state_per_task"]] == [
        "annotated", "annotated"]
    inside = {"type": "POLYGON", "points": [{"x": 20, "y": 20}, {"x": 40, "y": 20},
                                            {"x": 30, "y": 40}]}
    region = ann(api, DETSEG, rect(10, 10, 50, 50), "region")
    _, reply = await annotated(api, DETSEG, region, ann(api, DETSEG, inside, "defect"))
    assert reply.status == 200, reply.text
    assert [s["state"] for s in reply.json()["annotation_state_per_task"]] == [
        "annotated", "annotated"]
    far = {"type": "POLYGON", "points": [{"x": 300, "y": 300}, {"x": 340, "y": 300},
                                         {"x": 320, "y": 340}]}
    _, reply = await annotated(api, DETSEG, region, ann(api, DETSEG, far, "defect"))
    assert [s["state"] for s in reply.json()["annotation_state_per_task"]] == [
        "annotated", "none"]


async def test_media_detail_and_query_show_the_annotation(api: Api) -> None:
    image_id, reply = await annotated(api, DET, ann(api, DET, rect(0, 0, 9, 9), "car"))
    detail = (await api.get(f"{api.dataset_path(DET)}/media/images/{image_id}")).json()
    assert detail["annotation_state_per_task"] == reply.json()["annotation_state_per_task"]
    found = (await api.query({}, project=DET)).json()["media"]
    assert found[0]["annotation_scene_id"] == reply.json()["id"]
    filtered = await api.query({"rules": [{"field": "label_id", "operator": "equal",
                                           "value": api.label_id(DET, "car")}]}, project=DET)
    assert [m["id"] for m in filtered.json()["media"]] == [image_id]


async def test_upload_with_labels_is_an_annotation(api: Api) -> None:
    cat = api.label_id(PETS, "cat")
    image_id = await upload_image(api, PETS, upload_info=json.dumps({"label_ids": [cat]}))
    body = (await latest(api, PETS, image_id)).json()
    [one] = body["annotations"]
    assert one["shape"] == full() and [lb["id"] for lb in one["labels"]] == [cat]
    assert body["annotation_state_per_task"][0]["state"] == "annotated"
    assert api.server.store.list_media()[0].label_ids == (cat,)


async def test_stored500_on_an_upload_with_labels_leaves_the_media_unannotated(
        api: Api) -> None:
    cat = api.label_id(PETS, "cat")
    api.server.set_faults(script=["stored500"])
    reply = await api.upload(image_bytes(W, H), "kept.jpg",
                             upload_info=json.dumps({"label_ids": [cat]}))
    assert (reply.status, reply.text) == (500, "Internal Server Error")
    [record] = api.server.store.list_media()
    assert record.name == "kept" and record.label_ids == ()
    assert (await latest(api, PETS, record.id)).status == 204
    detail = (await api.get(f"{api.dataset_path()}/media/images/{record.id}")).json()
    assert detail["annotation_state_per_task"][0]["state"] == "none"
    unlabelled = await api.query({"rules": [{"field": "annotation_scene_state",
                                             "operator": "equal", "value": "annotated"}]})
    assert unlabelled.json()["media"] == []


async def test_scenes_survive_a_restart_and_go_with_their_media(make_geti: MakeGeti,
                                                                tmp_path: Path) -> None:
    first = await make_geti(data_dir=tmp_path / "d")
    image_id, reply = await annotated(first, DET, ann(first, DET, rect(1, 2, 30, 40), "car"))
    await first.server.stop()
    second = await make_geti(data_dir=first.server.store.data_dir)
    again = (await latest(second, DET, image_id)).json()
    assert again["id"] == reply.json()["id"]
    assert again["annotations"][0]["shape"] == rect(1, 2, 30, 40)
    await second.request("DELETE", f"{second.dataset_path(DET)}/media/images/{image_id}")
    assert second.server.store.scenes.count() == 0


async def test_disk_full_is_507_before_the_project_and_image(make_geti: MakeGeti) -> None:
    api = await make_geti(disk_full=True)
    reply = await post(api, DET, "a" * 24, {"annotations": []})
    body = reply.json()
    assert (reply.status, body["error_code"]) == (507, "not_enough_space")
    assert body["message"].startswith("Cannot perform operation 'Annotate image' when there is ")
    assert body["message"].endswith("GB of storage space left. At least 30GB should be "
                                    "available.")
