"""Multipart upload, listing and paging (GETI3_API.md §5, §8, §15)."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from .conftest import Api3, MakeGeti3, jpeg, multipart

PETS = "Pets classification"


async def test_upload_201_media_view_and_detail(api: Api3) -> None:
    data = jpeg(80, 60)
    reply = await api.upload(PETS, data, "Photo.JPEG")
    assert reply.status == 201, reply.text
    view = reply.json()
    assert view == {"id": view["id"], "name": "Photo", "type": "image", "format": "jpeg",
                    "width": 80, "height": 60, "size": len(data), "source_id": None}
    detail = await api.call("GET", f"{api.media_path(PETS)}/{view['id']}")
    assert detail.json() == view
    binary = await api.call("GET", f"{api.media_path(PETS)}/{view['id']}/binary")
    assert (binary.status, binary.body) == (200, data)


@pytest.mark.parametrize(("filename", "name"), [
    ("with space 01.jpg", "with space 01"),
    ("with%20space%2001.jpg", "with%20space%2001"),
    ("archive.tar.png", "archive.tar"),
    ("C:\\photos\\cat.jpg", "cat"),
])
async def test_filename_is_taken_literally(api: Api3, filename: str, name: str) -> None:
    reply = await api.upload(PETS, jpeg(), filename)
    assert reply.status == 201, reply.text
    assert reply.json()["name"] == name


async def test_rfc5987_filename_is_not_decoded(api: Api3) -> None:
    body, content_type = multipart(jpeg(), raw_disposition=(
        "form-data; name=\"file\"; filename*=utf-8''with%20space.jpg"))
    reply = await api.call("POST", api.media_path(PETS), data=body,
                           headers={"Content-Type": content_type})
    assert reply.status == 422  # no plain filename: the part is not a file


@pytest.mark.parametrize(("filename", "data", "message"), [
    ("noext", jpeg(), "File extension cannot be empty."),
    ("   ", jpeg(), "File name cannot be empty."),
    ("anim.GIF", jpeg(), "Unsupported media extension: GIF"),
    ("fake.jpg", b"not an image at all", "Invalid image has been uploaded."),
])
async def test_upload_422_messages(api: Api3, filename: str, data: bytes, message: str) -> None:
    reply = await api.upload(PETS, data, filename)
    assert (reply.status, reply.json()) == (422, {"detail": message})
    assert (await api.stats())["media_total"] == 0


async def test_missing_file_part_is_reported_twice(api: Api3) -> None:
    body, content_type = multipart(jpeg(), field="image")
    reply = await api.call("POST", api.media_path(PETS), data=body,
                           headers={"Content-Type": content_type})
    assert reply.status == 422
    assert reply.json()["detail"] == [
        {"type": "missing", "loc": ["body", "file"], "msg": "Field required", "input": None}] * 2


async def test_truncated_jpeg_accepted_by_multipart(api: Api3) -> None:
    data = jpeg(200, 200)
    reply = await api.upload(PETS, data[: len(data) // 2], "half.jpg")
    assert reply.status == 201 and reply.json()["size"] == len(data) // 2


async def test_no_dedup_and_admin_duplicates(api: Api3) -> None:
    data = jpeg()
    first = await api.upload(PETS, data, "same.jpg")
    second = await api.upload(PETS, data, "same.jpg")
    assert first.json()["id"] != second.json()["id"]
    stats = await api.stats()
    assert stats["media_total"] == 2 and stats["duplicates"] == 1


async def test_paging_limit_offset_and_direction(api: Api3) -> None:
    names = [f"img{i:02d}" for i in range(7)]
    for name in names:
        assert (await api.upload(PETS, jpeg(), f"{name}.png")).status == 201
    seen: list[str] = []
    offset = 0
    while True:
        page = (await api.call("GET", f"{api.media_path(PETS)}?limit=3&offset={offset}"
                               "&sort_direction=asc")).json()
        assert page["pagination"]["total"] == 7
        assert page["pagination"]["count"] == len(page["items"]) <= 3
        seen += [item["name"] for item in page["items"]]
        offset += page["pagination"]["count"]
        if offset >= page["pagination"]["total"]:
            break
    assert sorted(seen) == names and len(set(seen)) == 7
    default = (await api.call("GET", api.media_path(PETS))).json()
    assert default["pagination"] == {"offset": 0, "limit": 10, "count": 7, "total": 7}


async def test_list_query_422(api: Api3) -> None:
    reply = await api.call("GET", f"{api.media_path(PETS)}?limit=101&annotation_status=all")
    errors = [(e["type"], e["loc"]) for e in reply.json()["detail"]]
    assert reply.status == 422
    assert errors == [("less_than_equal", ["query", "limit"]),
                      ("enum", ["query", "annotation_status"])]
    dates = await api.call("GET", f"{api.media_path(PETS)}?start_date=2026-02-01"
                                  "&end_date=2026-01-01")
    assert (dates.status, dates.json()) == (422, {"detail": "Start date must be before end date."})


async def test_start_date_is_second_granular_and_strict(api: Api3) -> None:
    reply = await api.upload(PETS, jpeg(), "timed.jpg")
    media_id = reply.json()["id"]
    created = api.server.store.get_media(api.pid(PETS), media_id)
    assert created is not None and len(created.created_at) == 19  # YYYY-MM-DD HH:MM:SS
    second = dt.datetime.fromisoformat(created.created_at)
    before = (second - dt.timedelta(seconds=1)).isoformat()

    async def total(start: str) -> int:
        page = await api.call("GET", api.media_path(PETS), params={"start_date": start})
        return int(page.json()["pagination"]["total"])

    assert await total(second.isoformat()) == 0  # its own second excludes it (§15)
    assert await total(second.isoformat() + "Z") == 0
    assert await total(before) == 1
    assert await total((second + dt.timedelta(hours=2)).isoformat() + "+02:00") == 0


async def test_delete_and_bulk_delete(api: Api3) -> None:
    ids = [(await api.upload(PETS, jpeg(), f"d{i}.jpg")).json()["id"] for i in range(3)]
    gone = await api.call("DELETE", f"{api.media_path(PETS)}/{ids[0]}")
    assert gone.status == 204
    again = await api.call("GET", f"{api.media_path(PETS)}/{ids[0]}")
    assert (again.status, again.json()) == (404, {"detail": f"Media with ID {ids[0]} not found."})
    bulk = await api.call("DELETE", api.media_path(PETS),
                          data=json.dumps({"media_ids": ids}),
                          headers={"Content-Type": "application/json"})
    assert bulk.status == 204
    assert (await api.stats())["media_total"] == 0


async def test_bad_media_id_is_400(api: Api3) -> None:
    reply = await api.call("GET", f"{api.media_path(PETS)}/nope")
    assert (reply.status, reply.json()) == (
        400, {"detail": "Invalid media_id: 'nope' must be a valid UUID format."})


async def test_ids_endpoint(make_geti3: MakeGeti3) -> None:
    api = await make_geti3(plain_http=True)
    media_id = (await api.upload(PETS, jpeg(), "x.jpg")).json()["id"]
    reply = await api.call("GET", f"{api.media_path(PETS)}/ids")
    assert reply.json() == {"items": [{"id": media_id, "type": "image"}]}


async def test_video_upload_view_and_frame_rules(api: Api3) -> None:
    from geti_bulk.server.samples import mp4_bytes

    reply = await api.upload(PETS, mp4_bytes(), "clip.MP4")
    assert reply.status == 201, reply.text
    video = reply.json()
    assert (video["type"], video["format"]) == ("video", "mp4")
    assert video["frame_count"] > 0 and video["fps"] > 0
    assert video["duration"] == pytest.approx(video["frame_count"] / video["fps"])
    assert video["annotated_frame_count"] == 0
    path = f"{api.media_path(PETS)}/{video['id']}/annotations"
    body = {"annotations": []}
    absent = await api.call("POST", path, json=body)
    assert (absent.status, absent.json()) == (400, {"detail": "Video frame index is not "
                                                              "provided."})
    count = video["frame_count"]
    past = await api.call("POST", path, json=body, params={"frame_index": str(count)})
    assert (past.status, past.json()) == (400, {"detail": f"Video frame index {count} exceeds "
                                                          f"video frames count {count}."})
    negative = await api.call("POST", path, json=body, params={"frame_index": "-1"})
    assert negative.status == 422
    assert [e["loc"] for e in negative.json()["detail"]] == [["query", "frame_index"]] * 2
    todo = await api.call("GET", api.media_path(PETS),
                          params={"annotation_status": "missing_annotations"})
    assert [item["id"] for item in todo.json()["items"]] == [video["id"]]


async def test_unreadable_video_is_a_plain_500(api: Api3) -> None:
    reply = await api.upload(PETS, b"\x00" * 4096, "broken.mp4")
    assert (reply.status, reply.text) == (500, "Internal Server Error")
    assert (await api.stats())["media_total"] == 0
