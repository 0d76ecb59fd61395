"""`geti-bulk migrate`: a Geti 2 project into Geti 3 (and Geti 2 → Geti 2), between the two
local servers over real sockets: every item once, its bytes equal to the source's
download, its annotation the source's, refused parts listed, faults on both sides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from geti_bulk.events import FileDone, Notice, RecordingReporter
from geti_bulk.geti.client import Secret
from geti_bulk.migrate.config import MigrateConfig, Side
from geti_bulk.migrate.run import Migration
from geti_bulk.server import Geti3Config, LocalGeti, LocalGeti3, ServerConfig
from geti_bulk.server.seed import generate_pat
from tests.conftest import no_sleep
from tests.migrate_helpers import Source2, Target3, download, seed_detection, sha

SRC_PROJECT = "Vehicle detection"


@pytest.fixture
async def geti2(tmp_path: Path):
    token = generate_pat()
    srv = LocalGeti(ServerConfig(data_dir=tmp_path / "g2", token=token, seed=7))
    async with srv:
        srv.test_token = token  # type: ignore[attr-defined]
        yield srv


@pytest.fixture
async def geti3(tmp_path: Path):
    srv = LocalGeti3(Geti3Config(data_dir=tmp_path / "g3", locked_ms=200, slow_ms=300,
                                 seed=5))
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


def migrate_cfg(g2: Any, g3: Any, tmp_path: Path, **kw: Any) -> MigrateConfig:
    kw.setdefault("journal", tmp_path / "migrate.sqlite")
    kw.setdefault("report", tmp_path / "report.jsonl")
    kw.setdefault("create_project", "Vehicles (from Geti 2)")
    return MigrateConfig(
        source=Side(host=g2.base_url, project=SRC_PROJECT, token=Secret(g2.test_token)),
        target=Side(host=g3.base_url, project=None, token=Secret(""),
                    ca_bundle=str(g3.cert_path)), **kw)


async def expected_bytes(src: Source2, seeded: Any) -> dict[str, bytes]:
    """The source's download of each item (what Geti 2 stored), by stored filename."""
    out = {}
    for name, media_id in seeded.ids.items():
        kind = "videos" if name.endswith(".mp4") else "images"
        what = "stream" if kind == "videos" else "full"
        out[name] = await download(src.session, f"{src.base}/media/{kind}/{media_id}/"
                                   f"display/{what}", headers=src.headers)
    return out


def v3_boxes(anns: list[dict[str, Any]], names: dict[str, str]) -> list[tuple[Any, ...]]:
    return sorted((names[a["labels"][0]["id"]], a["shape"]["x"], a["shape"]["y"],
                   a["shape"]["width"], a["shape"]["height"]) for a in anns)


def v2_boxes(anns: list[dict[str, Any]], names: dict[str, str]) -> list[tuple[Any, ...]]:
    return sorted((names[a["labels"][0]["id"]], a["shape"]["x"], a["shape"]["y"],
                   a["shape"]["width"], a["shape"]["height"]) for a in anns
                  if names[a["labels"][0]["id"]] != "No object")


async def check_target(g3: LocalGeti3, src: Source2, seeded: Any, project: str) -> None:
    """Every source item on the target once, same bytes, same annotation."""
    t = Target3(g3)
    try:
        proj = await t.project(project)
        names3 = {lab["id"]: lab["name"] for lab in proj["task"]["labels"]}
        names2 = {v: k for k, v in src.labels.items()}
        media = await t.media(proj["id"])
        got = sorted(f"{m['name']}.{m['format']}" for m in media)
        assert got == sorted(seeded.ids), "every source item exactly once"
        want = await expected_bytes(src, seeded)
        for m in media:
            name = f"{m['name']}.{m['format']}"
            assert sha(await t.binary(proj["id"], m["id"])) == sha(want[name]), name
            if m["type"] != "image":
                continue
            anns = await t.annotations(proj["id"], m["id"])
            source = seeded.annotations.get(name)
            if source is None:
                assert anns is None, f"{name} had no annotation in the source"
            else:
                assert anns is not None, name
                assert v3_boxes(anns, names3) == v2_boxes(source, names2), name
    finally:
        await t.close()


async def test_geti2_detection_project_into_a_created_geti3_project(geti2, geti3, tmp_path):
    src = Source2(geti2, geti2.test_token, SRC_PROJECT)
    try:
        seeded = await seed_detection(src, 12)
        rec = RecordingReporter()
        result = await Migration(migrate_cfg(geti2, geti3, tmp_path), rec,
                                 sleep=no_sleep).execute()
        assert result.fatal is None, result.fatal
        assert (result.uploaded, result.failed) == (len(seeded.ids), 0)
        await check_target(geti3, src, seeded, "Vehicles (from Geti 2)")
        notices = [e.text for e in rec.events if isinstance(e, Notice)]
        assert any("refused by the target" in n and "video frame" in n for n in notices), \
            notices
        empty = next(e for e in rec.events if isinstance(e, FileDone)
                     and e.path == f"image/{seeded.ids['img_0001.jpg']}")
        assert empty.media_id
        # a rerun moves nothing and creates nothing
        rec2 = RecordingReporter()
        again = await Migration(migrate_cfg(geti2, geti3, tmp_path,
                                            report=tmp_path / "r2.jsonl"), rec2,
                                sleep=no_sleep).execute()
        assert (again.uploaded, again.skipped, again.failed) == (0, len(seeded.ids), 0)
        await check_target(geti3, src, seeded, "Vehicles (from Geti 2)")
    finally:
        await src.close()


async def test_empty_label_becomes_an_empty_reviewed_list(geti2, geti3, tmp_path):
    src = Source2(geti2, geti2.test_token, SRC_PROJECT)
    try:
        seeded = await seed_detection(src, 3, video=False, tiff=False)
        result = await Migration(migrate_cfg(geti2, geti3, tmp_path), RecordingReporter(),
                                 sleep=no_sleep).execute()
        assert result.exit_code == 0
        t = Target3(geti3)
        proj = await t.project("Vehicles (from Geti 2)")
        media = {m["name"]: m for m in await t.media(proj["id"])}
        status, body = await t.get(f"/api/projects/{proj['id']}/dataset/media/"
                                   f"{media['img_0001']['id']}/annotations")
        assert status == 200 and body["annotations"] == [] and body["user_reviewed"] is True
        assert await t.annotations(proj["id"], media["img_0002"]["id"]) is None
        await t.close()
        assert len(seeded.ids) == 3
    finally:
        await src.close()


__all__ = ["aiohttp"]
