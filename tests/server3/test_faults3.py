"""Write faults (``geti3/faults.py``): SQLite's "database is locked" beyond the writers
limit (GETI3_API.md §5, issue #7614), stored-then-500, connection resets, slow commits."""

from __future__ import annotations

import asyncio
import base64
import os
import time

import aiohttp
import pytest

from .conftest import Api3, MakeGeti3, jpeg

PETS = "Pets classification"
TUS = {"Tus-Resumable": "1.0.0"}


async def _wait_writers(api: Api3, count: int) -> None:
    for _ in range(100):
        if (await api.stats())["writers_inflight"] >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"never {count} writers in flight")


async def test_locked_beyond_the_default_ten_writers(make_geti3: MakeGeti3) -> None:
    api = await make_geti3(locked_ms=300, slow_ms=1500)
    assert api.server.config.locked_writers == 10
    api.server.set_faults(script=["slow"] * 10)
    holders = [asyncio.create_task(api.upload(PETS, jpeg(), f"h{i}.jpg")) for i in range(10)]
    await _wait_writers(api, 10)
    started = time.monotonic()
    locked = await api.upload(PETS, jpeg(), "eleventh.jpg")
    waited = time.monotonic() - started
    assert (locked.status, locked.text) == (500, "Internal Server Error")
    assert locked.headers["Content-Type"].startswith("text/plain")
    assert waited >= 0.3
    assert [r.status for r in await asyncio.gather(*holders)] == [201] * 10
    stats = await api.stats()
    assert stats["media_total"] == 10 and stats["locked_errors"] == 1
    assert stats["peak_writers"] == 11
    names = {m.name for m in api.server.store.all_media()}
    assert "eleventh" not in names


async def test_locked_annotation_commits_nothing(make_geti3: MakeGeti3) -> None:
    api = await make_geti3(locked_writers=1, locked_ms=200, slow_ms=800)
    media = (await api.upload(PETS, jpeg(), "a.jpg")).json()["id"]
    cat = api.label(PETS, "cat")
    api.server.set_faults(script=["slow"])
    holder = asyncio.create_task(api.upload(PETS, jpeg(), "b.jpg"))
    await _wait_writers(api, 1)
    reply = await api.annotate(PETS, media, {"annotations": [
        {"labels": [{"id": cat}], "shape": {"type": "full_image"}}]})
    assert reply.status == 500
    assert (await holder).status == 201
    got = await api.call("GET", f"{api.media_path(PETS)}/{media}/annotations")
    assert got.status == 404
    assert (await api.stats())["annotations_stored"] == 0


async def test_locked_from_spec_and_from_upload_is_retryable(api: Api3) -> None:
    data = jpeg()
    reply = await api.call("POST", "/api/uploads", headers={
        **TUS, "Upload-Length": str(len(data)),
        "Upload-Metadata": "filename " + base64.b64encode(b"t.jpg").decode()})
    location = reply.headers["Location"]
    await api.call("PATCH", location, data=data, headers={
        **TUS, "Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"})
    api.server.set_faults("locked=1")
    body = {"upload_id": location.rsplit("/", 1)[1]}
    path = f"{api.media_path(PETS)}:from-upload"
    assert (await api.call("POST", path, json=body)).status == 500
    assert (await api.call("GET", location)).json()["state"] == "completed"
    api.server.set_faults()
    assert (await api.call("POST", path, json=body)).status == 201
    stats = await api.stats()
    assert stats["faults"] == {"locked": 1} and stats["media_total"] == 1


async def test_stored500_commits_then_fails(api: Api3) -> None:
    api.server.set_faults(script=["stored500"])
    reply = await api.upload(PETS, jpeg(), "kept.jpg")
    assert (reply.status, reply.text) == (500, "Internal Server Error")
    listing = (await api.call("GET", api.media_path(PETS))).json()
    assert [item["name"] for item in listing["items"]] == ["kept"]
    media = listing["items"][0]["id"]
    api.server.set_faults(script=["stored500"])
    cat = api.label(PETS, "cat")
    failed = await api.annotate(PETS, media, {"annotations": [
        {"labels": [{"id": cat}], "shape": {"type": "full_image"}}]})
    assert failed.status == 500
    got = await api.call("GET", f"{api.media_path(PETS)}/{media}/annotations")
    assert got.status == 200 and got.json()["annotations"][0]["labels"] == [{"id": cat}]
    assert (await api.stats())["faults"] == {"stored500": 2}


async def test_reset_drops_the_connection_and_stores_nothing(api: Api3) -> None:
    api.server.set_faults(script=["reset"])
    with pytest.raises(aiohttp.ClientError):
        await api.upload(PETS, os.urandom(1 << 20), "lost.jpg")  # cut mid-body
    assert (await api.stats())["media_total"] == 0
    media = (await api.upload(PETS, jpeg(), "a.jpg")).json()["id"]
    api.server.set_faults(script=["reset"])
    with pytest.raises(aiohttp.ClientError):
        await api.annotate(PETS, media, {"annotations": []})
    assert (await api.call("GET", f"{api.media_path(PETS)}/{media}/annotations")).status == 404


async def test_slow_and_bad_specs(make_geti3: MakeGeti3) -> None:
    api = await make_geti3(slow_ms=300)
    api.server.set_faults(script=["slow"])
    started = time.monotonic()
    assert (await api.upload(PETS, jpeg(), "s.jpg")).status == 201
    assert time.monotonic() - started >= 0.3
    with pytest.raises(ValueError):
        api.server.set_faults("503=0.5")
    refused = await api.call("POST", "/_admin/faults", json={"spec": "locked=2"},
                             headers={"x-admin-token": api.server.admin_token})
    assert refused.status == 400
    assert (await api.call("GET", "/_admin/stats")).status == 403
