"""The same uploads into Geti 3, against the local Geti 3 server over TLS: the dialect is
detected, no token is sent, annotations are the second step, and faults (locked,
stored-then-500, resets) end with every file stored once and annotated right."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from geti_bulk.config import UploadConfig
from geti_bulk.geti.client import Secret
from geti_bulk.geti.dialect import detect, geti3_version
from geti_bulk.sampledata import make_labelled_tree
from geti_bulk.server import Geti3Config, LocalGeti3
from tests.conftest import upload
from tests.datasets import Img, sample_images, write_coco, write_yolo

LABELS = ("car", "truck")


@pytest.fixture
async def geti3(tmp_path: Path):
    srv = LocalGeti3(Geti3Config(data_dir=tmp_path / "g3", locked_ms=300, slow_ms=600,
                                 seed=5))
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


def cfg3(srv: LocalGeti3, tmp_path: Path, sources: tuple[Path, ...], project: str,
         **kw: Any) -> UploadConfig:
    kw.setdefault("journal", tmp_path / "journal.sqlite")
    kw.setdefault("report", tmp_path / "report.jsonl")
    return UploadConfig(host=srv.base_url, project=project, token=Secret(""), sources=sources,
                        ca_bundle=str(srv.cert_path), **kw)


def pid(srv: LocalGeti3, name: str) -> str:
    return next(p["id"] for p in srv.info["projects"] if p["name"] == name)


def label_names(srv: LocalGeti3, project: str) -> dict[str, str]:
    p = next(p for p in srv.info["projects"] if p["name"] == project)
    return {lab["id"]: lab["name"] for lab in p["labels"]}


async def get(srv: LocalGeti3, path: str) -> tuple[int, Any]:
    import ssl

    ctx = ssl.create_default_context(cafile=str(srv.cert_path))
    async with aiohttp.ClientSession() as s, s.get(srv.base_url + path, ssl=ctx) as r:
        body = await r.read()
        return r.status, (json.loads(body) if body and "json" in r.content_type else body)


async def all_media(srv: LocalGeti3, project: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        status, data = await get(srv, f"/api/projects/{pid(srv, project)}/dataset/media"
                                      f"?limit=100&offset={len(out)}&sort_direction=asc")
        assert status == 200
        out += data["items"]
        if not data["items"] or len(out) >= data["pagination"]["total"]:
            return out


async def assert_detection_annotated(srv: LocalGeti3, imgs: list[Img]) -> None:
    media = await all_media(srv, "Vehicle detection")
    by_name: dict[str, list[dict[str, Any]]] = {}
    for m in media:
        by_name.setdefault(m["name"], []).append(m)
    names = label_names(srv, "Vehicle detection")
    assert len(media) == len(imgs)
    for im in imgs:
        [m] = by_name[Path(im.name).stem]
        status, ann = await get(srv, f"/api/projects/{pid(srv, 'Vehicle detection')}/dataset/"
                                     f"media/{m['id']}/annotations")
        assert status == 200, (im.name, status)
        got = sorted((names[a["labels"][0]["id"]], a["shape"]["x"], a["shape"]["y"],
                      a["shape"]["width"], a["shape"]["height"]) for a in ann["annotations"])
        want = im.expected_boxes()
        assert len(got) == len(want), (im.name, got, want)
        for g, w in zip(got, want, strict=True):
            assert g[0] == w[0] and all(abs(a - b) <= 1 for a, b in zip(g[1:], w[1:],
                                                                        strict=True)), (g, w)
        assert ann["subset"] == ("validation" if im.subset == "val" else "training")


async def test_dialect_is_told_by_the_json_not_the_status(geti3, server, tmp_path):
    import ssl

    ctx = ssl.create_default_context(cafile=str(geti3.cert_path))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s:
        assert await detect(s, geti3.base_url) == ("geti3", "3.2.0")
        assert await detect(s, server.base_url) == ("geti2", "")
        # the SPA answers 200 HTML to any unknown GET: never a dialect
        async with s.get(geti3.base_url + "/api/v1/product_info") as r:
            assert r.status == 200 and "html" in r.content_type
            assert geti3_version(r.status, r.content_type, await r.read()) is None
        from geti_bulk.errors import FatalError

        with pytest.raises(FatalError, match="not a Geti 3 server"):
            await detect(s, server.base_url, "geti3")
    assert geti3_version(200, "application/json", b'{"info": {"title": "Geti", '
                                                   b'"version": "2.13.0"}}') is None


@pytest.mark.parametrize("fmt", ["coco", "yolo"])
async def test_detection_dataset_into_geti3_through_faults(geti3, tmp_path, fmt):
    imgs = [im for im in sample_images(24) if im.expected_boxes() or not im.objects]
    root = tmp_path / fmt
    (write_coco if fmt == "coco" else write_yolo)(root, imgs, LABELS)
    geti3.set_faults("stored500=0.15,reset=0.1,locked=0.1")
    result, rec = await upload(cfg3(geti3, tmp_path, (root,), "Vehicle detection"))
    failed = [e.reason for e in rec.events if type(e).__name__ == "FileFailed"]
    assert (result.uploaded, result.failed, result.exit_code) == (len(imgs), 0, 0), failed[:3]
    await assert_detection_annotated(geti3, imgs)
    stats = await admin3(geti3)
    assert stats["duplicates"] == 0 and stats["faults"], stats


async def admin3(srv: LocalGeti3) -> dict[str, Any]:
    import ssl

    ctx = ssl.create_default_context(cafile=str(srv.cert_path))
    async with aiohttp.ClientSession() as s, s.get(
            srv.base_url + "/_admin/stats", ssl=ctx,
            headers={"x-admin-token": srv.info["admin_token"]}) as r:
        assert r.status == 200
        data: dict[str, Any] = await r.json()
        return data


async def test_classification_folders_become_annotations_with_their_subsets(geti3, tmp_path):
    data = tmp_path / "data"
    make_labelled_tree(data / "train", ["cat", "dog"], 10, size=(48, 40))
    for p in make_labelled_tree(data / "val", ["cat", "dog"], 4, size=(48, 40), seed=9):
        p.rename(p.with_name("val_" + p.name))      # Geti 3 keeps only the stem as the name
    result, _ = await upload(cfg3(geti3, tmp_path, (data,), "Pets classification"))
    assert (result.uploaded, result.exit_code) == (14, 0)
    names = label_names(geti3, "Pets classification")
    project = pid(geti3, "Pets classification")
    for m in await all_media(geti3, "Pets classification"):
        [path] = list(data.rglob(m["name"] + ".*"))
        status, ann = await get(geti3, f"/api/projects/{project}/dataset/media/{m['id']}/"
                                       "annotations")
        assert status == 200
        [a] = ann["annotations"]
        assert a["shape"] == {"type": "full_image"}
        assert [names[x["id"]] for x in a["labels"]] == [path.parent.name]
        assert ann["subset"] == ("training" if path.parent.parent.name == "train"
                                 else "validation")


async def test_no_token_is_needed_and_none_is_sent(geti3, tmp_path):
    data = tmp_path / "data"
    make_labelled_tree(data, ["cat"], 3, size=(48, 40))
    env = {k: v for k, v in os.environ.items() if k != "GETI_TOKEN"}
    env["GETI_TOKEN"] = ""
    cmd = [sys.executable, "-m", "geti_bulk.cli", "upload", str(data), "--host",
           geti3.base_url, "--project", "Pets classification", "--ca-bundle",
           str(geti3.cert_path), "--progress", "plain", "--journal",
           str(tmp_path / "j.sqlite")]
    proc = await asyncio.create_subprocess_exec(*cmd, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert "(Geti 3.2.0)" in out.decode()              # the start line names the dialect


async def test_a_self_signed_certificate_gets_one_line_on_how_to_trust_it(geti3, tmp_path):
    data = tmp_path / "data"
    make_labelled_tree(data, ["cat"], 2, size=(48, 40))
    cmd = [sys.executable, "-m", "geti_bulk.cli", "upload", str(data), "--host",
           geti3.base_url, "--project", "Pets classification", "--no-journal"]
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE,
                                                cwd=str(tmp_path))
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    text = err.decode().strip()
    assert proc.returncode == 3, text
    assert len(text.splitlines()) == 1 and "--ca-bundle" in text and "--insecure" in text
    assert "Traceback" not in text


async def test_sqlite_locked_500s_are_reconciled_and_slow_the_writers(tmp_path):
    from geti_bulk.events import ConcurrencyChanged

    srv = LocalGeti3(Geti3Config(data_dir=tmp_path / "g3l", locked_writers=3, locked_ms=200,
                                 latency_ms=10, seed=2))
    await srv.start()
    try:
        data = tmp_path / "data"
        make_labelled_tree(data, ["cat", "dog"], 60, size=(48, 40))
        result, rec = await upload(cfg3(srv, tmp_path, (data,), "Pets classification",
                                        concurrency=8))
        assert (result.uploaded, result.failed, result.exit_code) == (60, 0, 0)
        stats = await admin3(srv)
        assert stats["duplicates"] == 0 and stats["media_total"] == 60
        assert stats["locked_errors"] > 0, "the limit must have been hit to test anything"
        assert result.retries.get("500-locked?", 0) >= 1
        levels = [e.limit for e in rec.events if isinstance(e, ConcurrencyChanged)]
        assert levels and min(levels) <= 3, levels
    finally:
        await srv.stop()


async def test_kill_9_between_the_steps_then_the_rerun_finishes_on_geti3(tmp_path):
    import sqlite3

    srv = LocalGeti3(Geti3Config(data_dir=tmp_path / "g3k", slow_ms=1500, locked_ms=300,
                                 seed=5))
    await srv.start()
    try:
        imgs = [im for im in sample_images(24) if im.expected_boxes() or not im.objects]
        write_coco(tmp_path / "coco", imgs, LABELS)
        journal = tmp_path / "journal.sqlite"
        cmd = [sys.executable, "-m", "geti_bulk.cli", "upload", str(tmp_path / "coco"),
               "--host", srv.base_url, "--project", "Vehicle detection", "--ca-bundle",
               str(srv.cert_path), "--journal", str(journal), "--progress", "plain"]

        def states() -> dict[str, int]:
            if not journal.exists():
                return {}
            try:
                with sqlite3.connect(journal) as c:
                    return dict(c.execute("SELECT state, COUNT(*) FROM files GROUP BY state"))
            except sqlite3.OperationalError:    # created, its tables not yet
                return {}

        srv.set_faults("slow=1.0")          # every write waits: media and annotations
        proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.DEVNULL,
                                                    stderr=asyncio.subprocess.DEVNULL)
        for _ in range(400):
            if states().get("media", 0) >= 2:
                break
            await asyncio.sleep(0.05)
        proc.kill()
        await proc.wait()
        assert states().get("media", 0) >= 2, states()
        srv.set_faults("stored500=0.2,locked=0.1")
        proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode == 0, out.decode()[-2000:]
        assert states() == {"uploaded": len(imgs)}
        await assert_detection_annotated(srv, imgs)
        assert (await admin3(srv))["duplicates"] == 0
    finally:
        await srv.stop()


async def test_a_large_file_goes_over_tus_with_its_url_in_the_journal(geti3, tmp_path,
                                                                     monkeypatch):
    import hashlib
    import sqlite3

    from geti_bulk.geti.v3 import Geti3Client
    from geti_bulk.sampledata import image_bytes

    monkeypatch.setattr(Geti3Client, "tus_threshold", 1 << 20)
    monkeypatch.setattr(Geti3Client, "tus_chunk_size", 1 << 20)
    data = tmp_path / "big"
    (data / "cat").mkdir(parents=True)
    png = data / "cat" / "large.png"
    png.write_bytes(image_bytes(1200, 900, "PNG", seed=3, noise=1.0))
    assert png.stat().st_size > 3 << 20
    seen: list[str] = []
    from geti_bulk.journal import JournalResumeStore

    real_put = JournalResumeStore.put
    monkeypatch.setattr(JournalResumeStore, "put",
                        lambda self, k, url: (seen.append(url), real_put(self, k, url))[1])
    result, _ = await upload(cfg3(geti3, tmp_path, (data,), "Pets classification"))
    assert (result.uploaded, result.exit_code) == (1, 0)
    assert seen and "/api/uploads/" in seen[0], "the upload URL went to the journal"
    with sqlite3.connect(tmp_path / "journal.sqlite") as c:
        keys = [k for (k,) in c.execute("SELECT k FROM meta WHERE k LIKE 'tus:%'")]
    assert keys == [], "dropped once the media was made"
    status, body = await get(geti3, f"/api/projects/{pid(geti3, 'Pets classification')}/"
                                    "dataset/media?limit=10")
    [m] = body["items"]
    status, blob = await get(geti3, f"/api/projects/{pid(geti3, 'Pets classification')}/"
                                    f"dataset/media/{m['id']}/binary")
    assert status == 200 and hashlib.sha256(blob).hexdigest() == \
        hashlib.sha256(png.read_bytes()).hexdigest()
