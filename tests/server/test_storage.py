"""Storage guarantees: aborted bodies leave nothing, discard mode, persistence."""

from __future__ import annotations

import asyncio
import hashlib

from geti_bulk.server.samples import image_bytes

from .conftest import Api, MakeGeti, multipart


async def _wait_idle(api: Api) -> None:
    for _ in range(200):
        if api.server.state.service.inflight == 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("upload still in flight")


async def test_disconnect_mid_body_leaves_nothing(api: Api) -> None:
    body, content_type = multipart(image_bytes() + bytes(3 << 20), "partial.jpg")
    host, port = api.server.base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = (
        f"POST {api.dataset_path()}/media/images HTTP/1.1\r\nHost: {host}\r\n"
        f"x-api-key: {api.token}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    writer.write(head.encode() + body[: 2 << 20])
    await writer.drain()
    for _ in range(200):  # wait until the server is spooling the file part
        if any(api.server.store.tmp_dir.iterdir()):
            break
        await asyncio.sleep(0.01)
    assert any(api.server.store.tmp_dir.iterdir())
    writer.transport.abort()
    await _wait_idle(api)
    assert list(api.server.store.tmp_dir.iterdir()) == []
    assert api.server.store.count() == 0
    assert not any(p.is_file() for p in api.server.store.blob_dir.rglob("*"))
    assert (await api.upload(image_bytes(), "after.jpg")).status == 200


async def test_discard_mode_hashes_without_keeping(make_geti: MakeGeti) -> None:
    api = await make_geti(discard=True)
    data = image_bytes(200, 100, "PNG")
    reply = await api.upload(data, "x.png")
    assert reply.status == 200
    assert reply.json()["media_information"]["width"] == 200
    record = api.server.store.list_media()[0]
    assert record.sha256 == hashlib.sha256(data).hexdigest()
    assert record.size == len(data) and not record.stored
    assert not any(p.is_file() for p in api.server.store.blob_dir.rglob("*"))
    assert (await api.upload(data[:100], "bad.png")).status == 415


async def test_media_persist_across_restart_with_same_seed(make_geti: MakeGeti, tmp_path) -> None:  # type: ignore[no-untyped-def]
    first = await make_geti(data_dir=tmp_path / "shared", seed=3)
    uploaded = (await first.upload(image_bytes(), "keep.jpg")).json()
    await first.server.stop()
    second = await make_geti(data_dir=tmp_path / "shared", seed=3)
    reply = await second.get(f"{second.dataset_path()}/media/images/{uploaded['id']}")
    assert reply.status == 200 and reply.json()["name"] == "keep"


async def test_admin_media_listing(api: Api) -> None:
    await api.upload(image_bytes(), "one.jpg")
    await api.upload(image_bytes(), "two.jpg", dataset=1)
    everything = (await api.admin("GET", "/_admin/media")).json()["media"]
    assert {m["name"] for m in everything} == {"one", "two"}
    assert set(everything[0]) >= {"id", "name", "extension", "original_filename", "size",
                                  "sha256", "label_ids", "upload_time"}
    holdout = api.project()["datasets"][1]["id"]
    only = (await api.admin("GET", f"/_admin/media?dataset_id={holdout}")).json()["media"]
    assert [m["name"] for m in only] == ["two"]
    stats = (await api.admin("GET", "/_admin/stats")).json()
    assert stats["media_total"] == 2 and stats["media_per_dataset"][holdout] == 1
