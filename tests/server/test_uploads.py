"""Image and video uploads: success bodies, the §3.4 processing order and the §4.3 errors."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from pathlib import Path

from PIL import Image

from geti_bulk.server.samples import avi_bytes, image_bytes, mkv_bytes, mp4_bytes

from .conftest import Api, MakeGeti, load_fixture, multipart

IMAGE_FORMATS = "['.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.jfif', '.webp']"
VIDEO_FORMATS = "['.mp4', '.avi', '.mkv', '.mov', '.webm', '.m4v']"


def error(status: int, code: str, message: str) -> dict[str, object]:
    return {"error_code": code, "message": message, "http_status": status}


async def test_image_upload_body(api: Api) -> None:
    data = image_bytes(640, 480)
    reply = await api.upload(data, " cat_0001 .jpg")
    assert reply.status == 200
    body = reply.json()
    fixture = load_fixture("image_upload_response.json")
    assert set(fixture) | {"preprocessing"} == set(body)
    assert set(body["media_information"]) == set(fixture["media_information"])
    assert body["name"] == "cat_0001"
    assert body["type"] == "image"
    info = body["media_information"]
    assert (info["width"], info["height"], info["size"], info["extension"]) == (
        640, 480, len(data), ".jpg")
    base = f"{api.dataset_path()}/media/images/{body['id']}"
    assert info["display_url"] == base + "/display/full"
    assert body["thumbnail"] == base + "/display/thumb"
    assert body["preprocessing"] == {"status": "FINISHED"}
    assert body["annotation_state_per_task"] == [
        {"task_id": t, "state": "none"} for t in [body["annotation_state_per_task"][0]["task_id"]]]
    assert body["upload_time"].endswith("000+00:00")
    record = api.server.store.list_media()[0]
    assert record.original_filename == " cat_0001 .jpg" and record.id == body["id"]


async def test_duplicate_names_get_new_ids(api: Api) -> None:
    first = (await api.upload(image_bytes(), "same.png")).json()
    second = (await api.upload(image_bytes(), "same.png")).json()
    assert first["id"] != second["id"] and first["name"] == second["name"] == "same"
    stats = (await api.admin("GET", "/_admin/stats")).json()
    assert stats["duplicates"] == 1
    assert stats["duplicate_groups"][0]["count"] == 2


async def test_stored_extension_mapping(api: Api) -> None:
    for filename, fmt, stored in (("a.tif", "TIFF", ".jpeg"), ("b.jfif", "JPEG", ".jpeg"),
                                  ("c.PNG", "PNG", ".png"), ("d.webp", "WEBP", ".webp"),
                                  ("e.bmp", "BMP", ".bmp")):
        reply = await api.upload(image_bytes(40, 40, fmt), filename)
        assert reply.status == 200, filename
        assert reply.json()["media_information"]["extension"] == stored


async def test_video_uploads(api: Api) -> None:
    fixture = load_fixture("video_upload_response.json")
    cases = [
        ("clip.mp4", mp4_bytes(640, 360, frames=90, fps=30), (640, 360, 90, 30.0, 3)),
        ("clip.mov", mp4_bytes(320, 240, frames=50, fps=25), (320, 240, 50, 25.0, 2)),
        ("clip.avi", avi_bytes(320, 240, frames=100, fps=25), (320, 240, 100, 25.0, 4)),
        ("clip.mkv", mkv_bytes(800, 600, seconds=2.0, fps=25), (800, 600, 50, 25.0, 2)),
        ("clip.webm", mkv_bytes(800, 600, seconds=4.0, fps=25, webm=True), (800, 600, 100, 25.0, 4)),
    ]
    for filename, data, (width, height, frames, fps, duration) in cases:
        reply = await api.upload(data, filename, kind="videos")
        assert reply.status == 200, (filename, reply.text)
        body = reply.json()
        assert set(fixture) | {"preprocessing"} == set(body)
        info = body["media_information"]
        assert set(info) == set(fixture["media_information"])
        assert (info["width"], info["height"], info["frame_count"]) == (width, height, frames)
        assert (info["frame_rate"], info["duration"], info["frame_stride"]) == (fps, duration, int(fps))
        assert info["display_url"].endswith(f"/media/videos/{body['id']}/display/stream")
        assert body["type"] == "video"
        assert body["annotation_state_per_task"][0]["state"] is None
        assert body["annotation_statistics"] == {
            "annotated": 0, "partially_annotated": 0, "unannotated": frames}


async def test_not_a_video_is_415(api: Api) -> None:
    reply = await api.upload(b"definitely not a video" * 100, "fake.mp4", kind="videos")
    assert (reply.status, reply.json()) == (
        415, error(415, "invalid_media", "Video file can not be read."))
    truncated = mp4_bytes()[:40]  # ftyp but no moov
    reply = await api.upload(truncated, "cut.mp4", kind="videos")
    assert reply.status == 415


async def test_video_limits(api: Api) -> None:
    reply = await api.upload(mp4_bytes(8000, 4000), "wide.mp4", kind="videos")
    assert reply.json() == error(
        415, "invalid_media",
        "Video too large: the maximum width is 7680 and the maximum height is 4320.")
    reply = await api.upload(avi_bytes(16, 16), "tiny.avi", kind="videos")
    assert reply.json()["message"] == (
        "Video too small, the minimum size is 32x32 pixels. The dimensions extracted for "
        "this video are: 16x16 pixels")
    reply = await api.upload(avi_bytes(64, 64, frames=0), "empty.avi", kind="videos")
    assert reply.json()["message"] == (
        "Encountered an error while decoding video: 'empty.avi'. Unable to extract frames "
        "from video.")
    long_video = avi_bytes(64, 64, frames=25 * 10801, fps=25)
    reply = await api.upload(long_video, "long.avi", kind="videos")
    assert reply.json()["message"] == "Video too long: the maximum duration is 3 hours"


async def test_wrong_extensions_415(api: Api) -> None:
    reply = await api.upload(image_bytes(), "anim.gif")
    assert reply.json() == error(
        415, "invalid_media",
        f"Not a valid image format. Received .gif, but only the following are allowed: {IMAGE_FORMATS}")
    reply = await api.upload(mp4_bytes(), "clip.mp4")  # a video sent to /images
    assert reply.status == 415 and "Received .mp4" in reply.json()["message"]
    reply = await api.upload(mp4_bytes(), "clip.xyz", kind="videos")
    assert reply.json() == error(
        415, "invalid_media",
        f"Not a valid video format. Received .xyz, but only the following are allowed: {VIDEO_FORMATS}")
    reply = await api.upload(image_bytes(), "noextension")
    assert reply.json()["message"].startswith("Not a valid image format. Received , but")
    reply = await api.upload(image_bytes(), "   .jpg")
    assert reply.json() == error(415, "invalid_media", "Cannot upload media with an empty basename")
    fixture = load_fixture("errors/media__invalid_media.json")
    assert set(reply.json()) == set(fixture)


async def test_corrupt_image_415(api: Api) -> None:
    data = image_bytes(200, 200)
    reply = await api.upload(data[: len(data) // 2], "broken.jpg")
    assert reply.json() == error(
        415, "invalid_media",
        "Cannot upload image `broken.jpg`. The server was not able to interpret it.")
    reply = await api.upload(b"\x89PNG garbage" * 10, "garbage.png")
    assert reply.status == 415
    assert api.server.store.count() == 0


async def test_image_dimension_rule(api: Api) -> None:
    message = ("Invalid image dimensions. Image width and height have to be within the range "
               "of 32 to 20000 pixels.")
    for width, height, ok in ((32, 32, True), (31, 100, False), (100, 31, False), (20000, 32, True),
                              (20001, 32, False)):
        reply = await api.upload(image_bytes(width, height, "PNG"), f"{width}x{height}.png")
        if ok:
            assert reply.status == 200, (width, height)
        else:
            assert reply.json() == error(415, "invalid_media", message), (width, height)


async def test_413_with_small_limit(make_geti: MakeGeti) -> None:
    api = await make_geti(max_upload_bytes=1000)
    reply = await api.upload(image_bytes(300, 300, "PNG") + bytes(1000), "big.png")
    assert reply.json() == error(
        413, "payload_too_large",
        f"Request too large: exceeding {1000 / 1024**2} MB is not allowed.")
    assert api.server.store.count() == 0


async def test_default_413_message_wording() -> None:
    assert f"{int(4.7 * 1024**3) / 1024**2:.1f}" == "4812.8"


async def test_labels_on_classification_annotate(api: Api) -> None:
    cat = api.label_id("Pets classification", "cat")
    reply = await api.upload(image_bytes(), "cat.jpg", upload_info=json.dumps({"label_ids": [cat]}))
    assert reply.status == 200
    assert reply.json()["annotation_state_per_task"][0]["state"] == "annotated"
    assert api.server.store.list_media()[0].label_ids == (cat,)
    anomalous = api.label_id("Anomaly inspection", "Anomalous")
    reply = await api.upload(image_bytes(), "scratch.jpg", project="Anomaly inspection",
                             upload_info=json.dumps({"label_ids": [anomalous], "filename": "x"}))
    assert reply.status == 200


async def test_labels_on_detection_are_plain_500(api: Api) -> None:
    car = api.label_id("Vehicle detection", "car")
    for project, label in (("Vehicle detection", car),
                           ("Detection then classification",
                            api.label_id("Detection then classification", "object"))):
        reply = await api.upload(image_bytes(), "car.jpg", project=project,
                                 upload_info=json.dumps({"label_ids": [label]}))
        assert (reply.status, reply.text) == (500, "Internal Server Error")
        assert reply.headers["Content-Type"].startswith("text/plain")
    assert api.server.store.count() == 0
    # without labels a detection upload is fine
    assert (await api.upload(image_bytes(), "car.jpg", project="Vehicle detection")).status == 200


async def test_unknown_label_404(api: Api) -> None:
    missing = "aaaaaaaaaaaaaaaaaaaaaaaa"
    reply = await api.upload(image_bytes(), "x.jpg", upload_info=json.dumps({"label_ids": [missing]}))
    assert reply.json() == error(
        404, "label_not_found",
        f"Labels with the following IDs were not found in the project: {{ID({missing})}}")
    # a label of another project is unknown here too
    car = api.label_id("Vehicle detection", "car")
    reply = await api.upload(image_bytes(), "x.jpg", upload_info=json.dumps({"label_ids": [car]}))
    assert reply.status == 404


async def test_upload_info_errors_400(api: Api) -> None:
    cases = [
        ("not json", "upload_info must be in json format."),
        ('"foo"', "upload_info must be a dictionary in json format. "
                  "Received 'foo' of type <class 'str'> instead."),
        ('{"label_ids": "abc"}', "label_ids must be a list of well-formed MongoDB ObjectIDs."),
        ('{"label_ids": ["xyz"]}', "Invalid request parameters: 'label_id'. "
                                   "The provided string is not a valid ID: 'xyz'."),
    ]
    for info, message in cases:
        reply = await api.upload(image_bytes(), "x.jpg", upload_info=info)
        assert reply.json() == error(400, "bad_request", message), info


async def test_missing_file_field_is_validation_400(api: Api) -> None:
    body, content_type = multipart(image_bytes(), filename=None)  # a text field, not a file
    reply = await api.request("POST", f"{api.dataset_path()}/media/images", data=body,
                              headers={"Content-Type": content_type})
    assert reply.json() == {"error_code": "bad_request",
                            "message": {"(.'.f.i.l.e.'.,.)": ["Field required"]},
                            "http_status": 400}


async def test_chunked_body_is_plain_500(api: Api) -> None:
    body, content_type = multipart(image_bytes(), "x.jpg")

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 100):
            yield body[start : start + 100]

    reply = await api.request("POST", f"{api.dataset_path()}/media/images", data=chunks(),
                              headers={"Content-Type": content_type})
    assert (reply.status, reply.text) == (500, "Internal Server Error")
    assert api.server.store.count() == 0


async def test_empty_file_is_plain_500(api: Api) -> None:
    reply = await api.upload(b"", "empty.jpg")
    assert (reply.status, reply.text) == (500, "Internal Server Error")


async def test_path_id_errors_come_first(api: Api) -> None:
    pid = api.projects["Pets classification"]["id"]
    path = f"{api.ws_path}/projects/{pid}/datasets/nope/media/images"
    reply = await api.upload(image_bytes(), "x.gif", path=path)  # bad extension too
    assert reply.json() == error(
        400, "bad_request",
        "Invalid request parameters: 'dataset_id'. The provided string is not a valid ID: 'nope'.")
    path = f"{api.ws_path}/projects/XYZ/datasets/nope/media/images"
    assert "'project_id'" in (await api.upload(image_bytes(), "x.jpg", path=path)).json()["message"]


async def test_unknown_project_404_after_validation(api: Api) -> None:
    missing = "0123456789abcdef01234567"
    path = f"{api.ws_path}/projects/{missing}/datasets/{missing}/media/images"
    reply = await api.upload(image_bytes(), "x.gif", path=path)
    assert reply.status == 415  # extension is checked before the project is loaded
    reply = await api.upload(image_bytes(), "x.jpg", path=path)
    assert reply.json() == error(
        404, "project_not_found",
        f"The requested project could not be found. Project ID: `{missing}`.")


async def test_disk_full_507(make_geti: MakeGeti) -> None:
    api = await make_geti(disk_full=True)
    reply = await api.upload(image_bytes(), "x.jpg")
    body = reply.json()
    assert reply.status == 507 and body["error_code"] == "not_enough_space"
    assert body["http_status"] == 507
    assert body["message"].startswith("Cannot upload media of size 0.00 GiB when only ")
    assert body["message"].endswith("GB is available: 30.00 GB of space must be kept free")
    assert api.server.store.count() == 0


async def test_get_and_delete_media(api: Api) -> None:
    image = (await api.upload(image_bytes(), "x.jpg")).json()
    video = (await api.upload(mp4_bytes(), "v.mp4", kind="videos")).json()
    base = api.dataset_path()
    got = await api.get(f"{base}/media/images/{image['id']}")
    assert got.status == 200 and got.json() == image
    assert (await api.get(f"{base}/media/videos/{video['id']}")).json() == video
    shown = await api.request("GET", f"{base}/media/images/{image['id']}/display/full")
    assert shown.status == 200
    wrong_kind = await api.get(f"{base}/media/videos/{image['id']}")
    assert wrong_kind.json() == error(
        404, "video_not_found",
        f"The requested video could not be found in this dataset. Dataset Storage ID: "
        f"`{base.rsplit('/', 1)[1]}`, Video ID: `{image['id']}`. ")
    deleted = await api.request("DELETE", f"{base}/media/images/{image['id']}")
    assert (deleted.status, deleted.json()) == (200, {"result": "success"})
    again = await api.request("DELETE", f"{base}/media/images/{image['id']}")
    assert again.json() == error(
        404, "image_not_found",
        f"The requested image could not be found in this dataset. Dataset Storage ID: "
        f"`{base.rsplit('/', 1)[1]}`, Image ID: `{image['id']}`. ")
    assert (await api.request("DELETE", f"{base}/media/videos/{video['id']}")).status == 200
    assert api.server.store.count() == 0
    assert not any(p.is_file() for p in api.server.store.blob_dir.rglob("*"))
    bad = await api.get(f"{base}/media/images/zzz")
    assert "'image_id'" in bad.json()["message"]


async def test_path_traversal_filename_stays_inside(api: Api, tmp_path: Path) -> None:
    for name in ("../../escape.jpg", "/tmp/abs_escape.jpg", "..\\..\\win.jpg"):
        reply = await api.upload(image_bytes(), name)
        assert reply.status == 200, name
    data_dir = api.server.store.data_dir
    assert not (tmp_path / "escape.jpg").exists()
    assert not (data_dir.parent / "escape.jpg").exists()
    assert not Path("/tmp/abs_escape.jpg").exists()
    for record in api.server.store.list_media():
        path = api.server.store.blob_path(record.id, record.extension).resolve()
        assert path.is_relative_to(data_dir) and path.exists()
    names = {r.name for r in api.server.store.list_media()}
    assert "../../escape" in names  # Geti does no path stripping: the name keeps it


async def test_blob_bytes_and_sha256(api: Api) -> None:
    import hashlib

    data = image_bytes(100, 100, "PNG")
    body = (await api.upload(data, "x.png")).json()
    record = api.server.store.list_media()[0]
    assert record.sha256 == hashlib.sha256(data).hexdigest()
    assert api.server.store.blob_path(body["id"], ".png").read_bytes() == data
    with Image.open(io.BytesIO(data)) as img:
        assert img.size == (100, 100)


async def test_dataset_not_in_project_is_not_checked_on_upload(api: Api) -> None:
    """Real Geti's upload path never loads the dataset (GETI_API §4.3): it stores."""
    pid = api.projects["Pets classification"]["id"]
    other = api.projects["Vehicle detection"]["datasets"][0]["id"]
    path = f"{api.ws_path}/projects/{pid}/datasets/{other}/media/images"
    assert (await api.upload(image_bytes(), "x.jpg", path=path)).status == 200
