"""Resumable uploads (GETI3_API.md §6, §14.10, §15) and ``media:from-upload``."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import uuid
from typing import Any

from .conftest import Api3, MakeGeti3, jpeg, trust

TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = {**TUS, "Content-Type": "application/offset+octet-stream"}
PETS = "Pets classification"


def meta(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


async def create(api: Api3, size: int, filename: str | None = "photo.jpg", **headers: str) -> str:
    extra = {"Upload-Metadata": meta(filename=filename)} if filename else {}
    reply = await api.call("POST", "/api/uploads", headers={
        **TUS, "Upload-Length": str(size), **extra, **headers})
    assert reply.status == 201, reply.text
    location = str(reply.headers["Location"])
    assert location.startswith("/api/uploads/")
    return location


async def patch(api: Api3, location: str, offset: int, data: bytes, **headers: str) -> Any:
    return await api.call("PATCH", location, data=data, headers={
        **OCTETS, "Upload-Offset": str(offset), **headers})


async def from_upload(api: Api3, location: str, **body: Any) -> Any:
    return await api.call("POST", f"{api.media_path(PETS)}:from-upload",
                          json={"upload_id": location.rsplit("/", 1)[1], **body})


async def test_options_advertises_tus(api: Api3) -> None:
    reply = await api.call("OPTIONS", "/api/uploads")
    assert reply.status == 204
    h = reply.headers
    assert (h["Tus-Resumable"], h["Tus-Version"], h["Tus-Max-Size"]) == (
        "1.0.0", "1.0.0", "53687091200")
    assert set(h["Tus-Extension"].split(",")) == {
        "creation", "creation-with-upload", "creation-defer-length", "termination",
        "expiration", "checksum"}
    assert h["Tus-Checksum-Algorithm"] == "sha1,sha256,md5"


async def test_happy_path_then_consumed_once(api: Api3) -> None:
    data = jpeg(120, 90)
    location = await create(api, len(data), "big photo.jpg")
    head = await api.call("HEAD", location, headers=TUS)
    assert (head.status, head.headers["Upload-Offset"], head.headers["Upload-Length"]) == (
        204, "0", str(len(data)))
    assert head.headers["Upload-Expires"].endswith("GMT")
    half = len(data) // 2
    digest = base64.b64encode(hashlib.sha256(data[:half]).digest()).decode()
    first = await patch(api, location, 0, data[:half], **{"Upload-Checksum": f"sha256 {digest}"})
    assert (first.status, first.headers["Upload-Offset"]) == (204, str(half))
    second = await patch(api, location, half, data[half:])
    assert second.headers["Upload-Offset"] == str(len(data))
    view = (await api.call("GET", location)).json()
    assert (view["state"], view["offset"], view["filename"]) == ("completed", len(data),
                                                                 "big photo.jpg")
    made = await from_upload(api, location)
    assert made.status == 201, made.text
    assert (made.json()["name"], made.json()["size"], made.json()["width"]) == (
        "big photo", len(data), 120)
    upload_id = location.rsplit("/", 1)[1]
    again = await from_upload(api, location)
    assert (again.status, again.json()) == (
        410, {"detail": f"Upload with ID {upload_id} has already been consumed."})
    assert (await api.stats())["media_total"] == 1


async def test_412_409_415_460(api: Api3) -> None:
    location = await create(api, 10)
    no_version = await api.call("PATCH", location, data=b"abc", headers={
        "Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"})
    assert no_version.status == 412 and no_version.headers["Tus-Version"] == "1.0.0"
    assert no_version.json() == {"detail": "The Tus-Resumable header must be '1.0.0'."}
    assert (await patch(api, location, 0, b"abc")).status == 204
    mismatch = await patch(api, location, 0, b"def")
    assert (mismatch.status, mismatch.json()) == (
        409, {"detail": "Upload offset mismatch: expected 3, received 0."})
    wrong_type = await api.call("PATCH", location, data=b"d", headers={
        **TUS, "Content-Type": "application/octet-stream", "Upload-Offset": "3"})
    assert wrong_type.status == 415
    bad_sum = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    checksum = await patch(api, location, 3, b"defg", **{"Upload-Checksum": f"md5 {bad_sum}"})
    assert checksum.status == 460
    head = await api.call("HEAD", location, headers=TUS)
    assert head.headers["Upload-Offset"] == "3"  # the chunk was discarded
    too_long = await patch(api, location, 3, b"x" * 8)
    assert too_long.status == 413
    override = await patch(api, location, 3, b"x", **{"X-HTTP-Method-Override": "DELETE"})
    assert (override.status, override.json()) == (
        400, {"detail": "The X-HTTP-Method-Override header is not supported."})


async def test_resume_after_a_broken_patch(api: Api3) -> None:
    data = bytes(range(256)) * 400
    location = await create(api, len(data), "blob.png")
    host, port = api.server.base_url.removeprefix("https://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port), ssl=trust(api.server))
    sent = 40_000
    writer.write((f"PATCH {location} HTTP/1.1\r\nHost: {host}\r\nTus-Resumable: 1.0.0\r\n"
                  "Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n"
                  f"Content-Length: {len(data)}\r\n\r\n").encode() + data[:sent])
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.transport.abort()
    offset = "0"
    for _ in range(50):
        head = await api.call("HEAD", location, headers=TUS)
        offset = head.headers["Upload-Offset"]
        if offset != "0":
            break
        await asyncio.sleep(0.05)
    assert offset == str(sent)  # the bytes that arrived were kept
    rest = await patch(api, location, sent, data[sent:])
    assert rest.headers["Upload-Offset"] == str(len(data))
    stored = api.server.state.uploads.path(location.rsplit("/", 1)[1]).read_bytes()
    assert stored == data


async def test_from_upload_errors(api: Api3) -> None:
    location = await create(api, 10)
    upload_id = location.rsplit("/", 1)[1]
    early = await from_upload(api, location)
    assert (early.status, early.json()) == (
        409, {"detail": f"Upload with ID {upload_id} is not complete (0/10)."})
    data = jpeg()
    nameless = await create(api, len(data), filename=None)
    await patch(api, nameless, 0, data)
    refused = await from_upload(api, nameless)
    assert (refused.status, refused.json()) == (
        422, {"detail": "The uploaded filename 'upload' must have a name and an extension."})
    assert (await api.call("GET", nameless)).json()["state"] == "completed"  # released
    unknown = str(uuid.uuid4())
    missing = await api.call("POST", f"{api.media_path(PETS)}:from-upload",
                             json={"upload_id": unknown})
    assert (missing.status, missing.json()) == (404, {"detail": f"Upload with ID {unknown} not "
                                                                "found."})
    invalid = await api.call("POST", f"{api.media_path(PETS)}:from-upload", json={"upload": 1})
    assert invalid.status == 422 and invalid.json()["detail"][0]["loc"] == ["body", "upload_id"]


async def test_from_upload_decodes_the_whole_image(api: Api3) -> None:
    data = jpeg(300, 300)
    truncated = data[: len(data) // 2]
    assert (await api.upload(PETS, truncated, "cut.jpg")).status == 201
    location = await create(api, len(truncated), "cut.jpg")
    await patch(api, location, 0, truncated)
    reply = await from_upload(api, location, name="renamed")
    assert (reply.status, reply.json()) == (422, {"detail": "Invalid image has been uploaded."})
    fine = await create(api, len(data), "whole.jpg")
    await patch(api, fine, 0, data)
    assert (await from_upload(api, fine, name="renamed")).json()["name"] == "renamed"


async def test_creation_with_upload_deferred_length_and_delete(api: Api3) -> None:
    reply = await api.call("POST", "/api/uploads", data=b"hello", headers={
        **OCTETS, "Upload-Defer-Length": "1", "Upload-Metadata": meta(filename="a.jpg")})
    assert reply.status == 201 and reply.headers["Upload-Offset"] == "5"
    assert reply.headers["Upload-Defer-Length"] == "1"
    location = reply.headers["Location"]
    done = await patch(api, location, 5, b"!", **{"Upload-Length": "6"})
    assert done.headers["Upload-Length"] == "6"
    both = await api.call("POST", "/api/uploads", headers={**TUS, "Upload-Length": "1",
                                                           "Upload-Defer-Length": "1"})
    assert both.status == 400
    assert (await api.call("DELETE", location, headers=TUS)).status == 204
    assert (await api.call("HEAD", location, headers=TUS)).status == 404
    bad = await api.call("HEAD", "/api/uploads/not-a-uuid", headers=TUS)
    assert bad.status == 422
    view = await api.call("GET", "/api/uploads/not-a-uuid")
    assert view.status == 422 and view.json()["detail"][0]["type"] == "uuid_parsing"
    assert view.headers["Tus-Resumable"] == "1.0.0"


async def test_expiry_and_collection(make_geti3: MakeGeti3) -> None:
    api = await make_geti3(upload_ttl_s=0.3, upload_gc_s=0.2)
    location = await create(api, 4)
    upload_id = location.rsplit("/", 1)[1]
    await asyncio.sleep(0.35)
    await asyncio.sleep(0.3)
    gone = await api.call("GET", location)
    assert (gone.status, gone.json()) == (404, {"detail": f"Upload with ID {upload_id} not "
                                                          "found."})


async def test_expired_upload_is_410(make_geti3: MakeGeti3) -> None:
    api = await make_geti3(upload_ttl_s=0.2, upload_gc_s=3600)
    location = await create(api, 4)
    await asyncio.sleep(0.25)
    assert (await api.call("HEAD", location, headers=TUS)).status == 410
    late = await patch(api, location, 0, b"abcd")
    upload_id = location.rsplit("/", 1)[1]
    assert (late.status, late.json()) == (410, {"detail": f"Upload with ID {upload_id} has "
                                                          "expired."})
