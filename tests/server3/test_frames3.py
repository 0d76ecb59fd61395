"""Video frames of the local Geti 3 (GETI3_API.md §7, §15): a frame is annotated and read
with `?frame_index=N`, each annotated frame is its own item, checked like an image."""

from __future__ import annotations

from geti_bulk.server.samples import mp4_bytes
from tests.server3.conftest import Api3

PETS = "Pets classification"


async def test_a_frame_is_annotated_and_read_back_by_its_index(api: Api3) -> None:
    reply = await api.upload(PETS, mp4_bytes(), "clip.mp4")
    video = reply.json()
    path = f"{api.media_path(PETS)}/{video['id']}/annotations"
    label = str(api.projects[PETS]["labels"][0]["id"])
    body = {"annotations": [{"labels": [{"id": label}], "shape": {"type": "full_image"}}]}
    none = await api.call("GET", path, params={"frame_index": "0"})
    assert (none.status, none.json()) == (404, {"detail": "Media has not been annotated yet."})
    posted = await api.call("POST", path, json=body, params={"frame_index": "0"})
    assert posted.status == 201, posted.text
    assert posted.json()["media_id"] == video["id"]
    got = await api.call("GET", path, params={"frame_index": "0"})
    assert got.status == 200
    assert [(a["labels"], a["shape"]) for a in got.json()["annotations"]] == [
        ([{"id": label}], {"type": "full_image"})]
    other = await api.call("GET", path, params={"frame_index": "1"})
    assert other.status == 404
    detail = await api.call("GET", f"{api.media_path(PETS)}/{video['id']}")
    assert detail.json()["annotated_frame_count"] == 1
    bad = await api.call("POST", path, json={"annotations": [
        {"labels": [{"id": label}], "shape": {"type": "rectangle", "x": 0, "y": 0,
                                              "width": 5, "height": 5}}]},
        params={"frame_index": "1"})
    assert bad.status == 400, "a frame follows its project's rules, as an image does"
