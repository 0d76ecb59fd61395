"""The REST client against Geti's own example bodies and the local server's paging."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp

from geti_bulk.geti.client import GetiClient, Secret
from geti_bulk.geti.models import MediaItem, Project
from geti_bulk.sampledata import make_flat_images
from tests.conftest import make_cfg, upload

FIXTURES = Path(__file__).resolve().parent / "geti_fixtures"   # Geti's OpenAPI examples


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def test_project_details_from_geti_docs_parse():
    cls = Project.from_json(fixture("project_detail_classification.json"))
    assert cls.task_type == "classification" and cls.takes_labels_at_upload
    assert cls.datasets[0].use_for_training
    assert {lab.group for lab in cls.labels} >= {"species", "saddle_state"}
    det = Project.from_json(fixture("project_detail_detection.json"))
    assert det.task_type == "detection" and not det.takes_labels_at_upload
    anomaly = Project.from_json(fixture("project_detail_anomaly.json"))
    assert anomaly.task_type == "anomaly" and anomaly.takes_labels_at_upload
    chain = Project.from_json(fixture("project_detail_task_chain_detection_classification.json"))
    assert chain.task_type == "detection" and not chain.takes_labels_at_upload


def test_media_bodies_from_geti_docs_parse():
    img = MediaItem.from_json(fixture("image_upload_response.json"))
    assert img.type == "image" and img.extension.startswith(".") and img.id
    vid = MediaItem.from_json(fixture("video_upload_response.json"))
    assert vid.type == "video"
    page = fixture("media_query_response.json")
    items = [MediaItem.from_json(m) for m in page["media"]]
    assert {m.type for m in items} == {"image", "video"}


async def test_media_query_follows_next_page_and_reposts_the_filter(server, token, tmp_path):
    data = tmp_path / "flat"
    make_flat_images(data, 25, size=(40, 40))
    result, _ = await upload(make_cfg(server, token, tmp_path, (data,),
                                      project="Vehicle detection"))
    assert result.uploaded == 25
    async with aiohttp.ClientSession() as session:
        client = GetiClient(session, server.base_url, Secret(token))
        target = await client.resolve("Vehicle detection")
        pages = [len(p) async for p in client.query_media(target, limit=10)]
        assert pages == [10, 10, 5]
        rules = [{"field": "media_name", "operator": "contains", "value": "img_00001"}]
        names = sorted([m.name async for page in client.query_media(target, rules, limit=3)
                        for m in page])
        assert names == [f"img_{i:06d}" for i in range(10, 20)]   # the filter held on every page
        assert [m.name for m in await client.find_by_name(target, "img_000007", "image")] == ["img_000007"]
        assert await client.find_by_name(target, "img_000007", "video") == []
