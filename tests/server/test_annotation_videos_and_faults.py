"""Video-frame annotations (§1, §7) and the annotation faults (``--annotation-faults``)."""

from __future__ import annotations

import time

import aiohttp
import pytest

from geti_bulk.server.cli import _parser
from geti_bulk.server.samples import mp4_bytes

from .annotation_helpers import (
    DET,
    PETS,
    ann,
    error,
    frame_path,
    full,
    latest,
    post,
    rect,
    upload_image,
    upload_video,
)
from .conftest import Api, MakeGeti


async def test_frame_annotations_and_the_video_listing(api: Api) -> None:
    video_id = await upload_video(api, DET, frames=20)
    listing = f"{api.dataset_path(DET)}/media/videos/{video_id}/annotations/latest"
    assert (await api.get(listing)).status == 204
    for frame in (0, 3, 4, 6):
        body = {"annotations": [ann(api, DET, rect(frame, 0, 10, 10), "car")]}
        reply = await api.request("POST", frame_path(api, DET, video_id, frame), json=body)
        assert reply.status == 200, reply.text
        assert reply.json()["media_identifier"] == {
            "type": "video_frame", "video_id": video_id, "frame_index": frame}
    one = await api.get(frame_path(api, DET, video_id, 3) + "/latest")
    assert one.json()["annotations"][0]["shape"] == rect(3, 0, 10, 10)
    assert (await api.get(frame_path(api, DET, video_id, 5) + "/latest")).status == 204
    body = (await api.get(listing + "?frameskip=2&start_frame=1&label_only=true")).json()
    assert [s["media_identifier"]["frame_index"] for s in body["video_annotations"]] == [4, 6]
    assert "shape" not in body["video_annotations"][0]["annotations"][0]
    assert body["video_annotation_properties"] == {
        "total_count": 2, "start_frame": 4, "end_frame": 6, "total_requested_count": 2,
        "requested_start_frame": 1, "requested_end_frame": None}
    detail = (await api.get(f"{api.dataset_path(DET)}/media/videos/{video_id}")).json()
    assert detail["annotation_state_per_task"][0]["state"] is None
    assert detail["annotation_statistics"] == {
        "annotated": 4, "partially_annotated": 0, "unannotated": 16}
    other = await api.get(listing.replace("/latest", "/" + "e" * 24))
    assert other.json() == error(405, "not_implemented",
                                 "Only latest annotation can be served currently")
    bad = await api.get(listing + "?frameskip=0")
    assert bad.status == 400 and bad.json()["error_code"] == "bad_request"


async def test_frame_errors(api: Api) -> None:
    video_id = await upload_video(api, DET, frames=20)
    body = {"annotations": []}
    reply = await api.request("POST", frame_path(api, DET, video_id, 20), json=body)
    assert reply.json() == error(404, "video_frame_not_found", "The requested frame index 20 "
                                 f"could not be found in this video. Video ID: `{video_id}`. ")
    reply = await api.request("POST", frame_path(api, DET, video_id, "x"), json=body)
    assert (reply.status, reply.text) == (500, "Internal Server Error")
    wrong_type = {"annotations": [], "media_identifier": {"type": "image"}}
    reply = await api.request("POST", frame_path(api, DET, video_id, 1), json=wrong_type)
    assert reply.json() == error(400, "bad_request", "Invalid value received for field 'type': "
                                 "This field is expected to have enum ['video_frame'], but "
                                 "found 'image' instead.")
    missing = "f" * 24
    reply = await api.request("POST", frame_path(api, DET, missing, 1), json=body)
    assert reply.json()["error_code"] == "video_not_found"


async def test_upload_of_a_video_with_labels_annotates_one_frame_a_second(api: Api) -> None:
    cat = api.label_id(PETS, "cat")
    reply = await api.upload(mp4_bytes(640, 480, frames=20, fps=5), "clip.mp4", project=PETS,
                             kind="videos", upload_info=f'{{"label_ids": ["{cat}"]}}')
    assert reply.status == 200, reply.text
    video_id = reply.json()["id"]
    listing = f"{api.dataset_path(PETS)}/media/videos/{video_id}/annotations/latest"
    scenes = (await api.get(listing)).json()["video_annotations"]
    assert [s["media_identifier"]["frame_index"] for s in scenes] == [0, 5, 10, 15]
    assert all(s["annotations"][0]["shape"] == full() for s in scenes)


GATEWAY = [
    ("502", 502, None), ("503", 503, None), ("503ra", 503, "1"), ("504", 504, None),
    ("429", 429, None), ("429ra", 429, "1"),
]


@pytest.mark.parametrize(("kind", "status", "retry_after"), GATEWAY)
async def test_gateway_faults_on_annotation_posts(api: Api, kind: str, status: int,
                                                  retry_after: str | None) -> None:
    image_id = await upload_image(api, DET)
    api.server.set_annotation_faults(script=[kind])
    body = {"annotations": [ann(api, DET, rect(0, 0, 5, 5), "car")]}
    reply = await post(api, DET, image_id, body)
    assert reply.status == status and reply.headers["Content-Type"].startswith("text/plain")
    assert reply.headers.get("Retry-After") == retry_after
    assert api.server.store.scenes.count() == 0
    assert (await post(api, DET, image_id, body)).status == 200
    stats = (await api.admin("GET", "/_admin/stats")).json()
    assert stats["annotations"]["faults"] == {kind: 1} and stats["faults"] == {}


async def test_reset_stores_nothing_and_stored500_stores_then_fails(make_geti: MakeGeti) -> None:
    api = await make_geti(slow_ms=200)
    image_id = await upload_image(api, DET)
    body = {"annotations": [ann(api, DET, rect(0, 0, 5, 5), "car")]}
    api.server.set_annotation_faults(script=["reset", "stored500", "slow"])
    with pytest.raises(aiohttp.ClientError):
        await post(api, DET, image_id, body)
    assert api.server.store.scenes.count() == 0
    reply = await post(api, DET, image_id, body)
    assert (reply.status, reply.text) == (500, "Internal Server Error")
    assert api.server.store.scenes.count() == 1
    assert (await latest(api, DET, image_id)).json()["annotations"][0]["labels"]
    started = time.monotonic()
    assert (await post(api, DET, image_id, body)).status == 200
    assert time.monotonic() - started >= 0.2
    stats = (await api.admin("GET", "/_admin/stats")).json()["annotations"]
    assert stats["faults"] == {"reset": 1, "stored500": 1, "slow": 1}
    assert stats["scenes_stored"] == 2 and stats["posts"] == 3
    # media uploads are not affected by annotation faults
    api.server.set_annotation_faults(spec="503=1.0")
    assert (await api.upload(b"", "x.jpg")).status == 500  # the empty-file 500, not a 503


async def test_seeded_annotation_fault_spec_and_the_admin_endpoint(make_geti: MakeGeti) -> None:
    api = await make_geti(annotation_faults="504=1.0")
    image_id = await upload_image(api, DET)
    assert (await post(api, DET, image_id, {"annotations": []})).status == 504
    reply = await api.admin("POST", "/_admin/faults", json={"annotations": {"script": ["429"]}})
    assert reply.json() == {"annotations": {"spec": "", "script": ["429"]}}
    assert (await post(api, DET, image_id, {"annotations": []})).status == 429
    assert (await post(api, DET, image_id, {"annotations": []})).status == 200
    refused = await api.admin("POST", "/_admin/faults",
                              json={"spec": "503=0.5", "annotations": {"spec": "crash=1"}})
    assert refused.status == 400 and "crash" not in refused.text.split("kinds")[1]
    api.server.set_faults(script=["503"])
    assert (await api.upload(b"x", "x.jpg")).status == 503  # unchanged by the refused call
    with pytest.raises(ValueError):
        api.server.set_annotation_faults(script=["crash"])


def test_serve_flag() -> None:
    args = _parser().parse_args(["--data-dir", "d", "--annotation-faults", "stored500=0.1"])
    assert args.annotation_faults == "stored500=0.1"
