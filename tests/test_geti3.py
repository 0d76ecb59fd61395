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


async def test_a_web_ui_answering_html_everywhere_is_never_geti3(tmp_path):
    """A server whose web UI answers every GET with 200 HTML (a Geti 2 on-prem, a proxy's
    page), openapi.json included: not Geti 3, and --dialect geti3 says so in one line. A
    Geti 3 without its UI files (JSON 404 for unknown paths) is still Geti 3."""
    from aiohttp import web

    from geti_bulk.errors import FatalError

    async def page(_: web.Request) -> web.Response:
        return web.Response(text="<!doctype html><title>Geti</title>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/{tail:.*}", page)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    bare = LocalGeti3(Geti3Config(data_dir=tmp_path / "nospa", spa=False, seed=1))
    await bare.start()
    try:
        import ssl

        ctx = ssl.create_default_context(cafile=str(bare.cert_path))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s:
            html_host = f"http://127.0.0.1:{port}"
            assert await detect(s, html_host) == ("geti2", "")
            with pytest.raises(FatalError, match="not a Geti 3 server.*text/html"):
                await detect(s, html_host, "geti3")
            assert await detect(s, bare.base_url) == ("geti3", "3.2.0")
            async with s.get(bare.base_url + "/api/v1/product_info") as r:
                assert r.status == 404 and "json" in r.content_type
    finally:
        await bare.stop()
        await runner.cleanup()


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
    assert text.count("--ca-bundle") == 1 and text.count("--insecure") == 1, text  # once
    assert "Traceback" not in text


async def assert_classified(srv: LocalGeti3, project: str, data: Path) -> None:
    """Every image under `data` (`<label>/<file>`) is stored exactly once, under its stem,
    with one full-image annotation naming its folder's label."""
    files = {p.stem: p for p in data.rglob("*") if p.is_file()}
    media = await all_media(srv, project)
    assert sorted(m["name"] for m in media) == sorted(files), "each file stored once"
    names = label_names(srv, project)
    for m in media:
        status, ann = await get(srv, f"/api/projects/{pid(srv, project)}/dataset/media/"
                                     f"{m['id']}/annotations")
        assert status == 200, (m["name"], status)
        assert [([names[x["id"]] for x in a["labels"]], a["shape"]["type"])
                for a in ann["annotations"]] == [([files[m["name"]].parent.name],
                                                  "full_image")], (m["name"], ann)


async def test_sqlite_locked_500s_are_reconciled_and_slow_the_writers(tmp_path):
    """Beyond 2 writers the server waits, then answers 500 with nothing stored (§5). The
    limiter (ceiling 8, starting at 2) grows into the lock: every 500 is reconciled, then
    retried, and the limiter comes back down to what the server takes."""
    from geti_bulk.events import ConcurrencyChanged

    srv = LocalGeti3(Geti3Config(data_dir=tmp_path / "g3l", locked_writers=2, locked_ms=200,
                                 latency_ms=10, seed=2))
    await srv.start()
    try:
        data = tmp_path / "data"
        make_labelled_tree(data, ["cat", "dog"], 60, size=(48, 40))
        result, rec = await upload(cfg3(srv, tmp_path, (data,), "Pets classification",
                                        concurrency=8))
        failed = [(e.path, e.reason) for e in rec.events if type(e).__name__ == "FileFailed"]
        assert failed == [] and (result.uploaded, result.failed, result.exit_code) == (60, 0, 0)
        rows = [json.loads(x) for x in (tmp_path / "report.jsonl").read_text().splitlines()]
        assert sorted(r["status"] for r in rows) == ["uploaded"] * 60
        stats = await admin3(srv)
        assert (stats["media_total"], stats["duplicates"], stats["annotated_media"]) == \
            (60, 0, 60)
        locked = stats["locked_errors"]
        assert locked > 0, "the limit must have been hit to test anything"
        # every 500 the server answered was seen by the client and retried
        seen = result.retries.get("500-locked?", 0)
        assert seen == locked, (seen, locked, result.retries)
        levels = [e.limit for e in rec.events if isinstance(e, ConcurrencyChanged)]
        assert levels and min(levels) <= 3, levels
        await assert_classified(srv, "Pets classification", data)
    finally:
        await srv.stop()


async def test_geti3_defaults_stay_within_ten_writers(tmp_path):
    """With no --concurrency, geti-bulk never has more than 10 writes in flight (the UI's
    own cap after issue #7614): against the real lock threshold of 10 writers no write
    is ever locked."""
    srv = LocalGeti3(Geti3Config(data_dir=tmp_path / "g3d", locked_writers=10, locked_ms=200,
                                 latency_ms=30, seed=2))
    await srv.start()
    try:
        data = tmp_path / "data"
        make_labelled_tree(data, ["cat", "dog"], 80, size=(48, 40))
        from geti_bulk import config

        cfg = cfg3(srv, tmp_path, (data,), "Pets classification")
        # the library's and the CLI's default (both dialects share it: raising it for
        # Geti 2 must not push Geti 3 past 10 writes)
        assert cfg.concurrency <= 10 and config.KEYS["upload.concurrency"][1] <= 10
        result, _ = await upload(cfg)
        assert (result.uploaded, result.failed, result.exit_code) == (80, 0, 0)
        stats = await admin3(srv)
        assert stats["peak_writers"] <= 10 and stats["locked_errors"] == 0, stats
        assert stats["peak_writers"] >= 2, "the run wrote in parallel"
        await assert_classified(srv, "Pets classification", data)
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


def tus_keys(journal: Path) -> list[str]:
    import sqlite3

    with sqlite3.connect(journal) as c:
        return [k for (k,) in c.execute("SELECT k FROM meta WHERE k LIKE 'tus:%'")]


@pytest.mark.parametrize("fault", ["stored500", "reset"])
async def test_a_tus_file_adopted_after_an_ambiguous_from_upload_leaves_no_url(
        geti3, tmp_path, monkeypatch, fault):
    """`media:from-upload`'s answer is in doubt: stored then a 500 (the file is adopted
    by reconciliation), or a cut connection before anything was stored (the same upload
    is consumed again, nothing re-sent). The URL stays in the journal while in doubt, and
    is gone at the end either way."""
    from geti_bulk.geti.v3 import Geti3Client
    from geti_bulk.journal import JournalResumeStore
    from geti_bulk.sampledata import image_bytes

    monkeypatch.setattr(Geti3Client, "tus_threshold", 1 << 20)
    monkeypatch.setattr(Geti3Client, "tus_chunk_size", 1 << 20)
    data = tmp_path / "big"
    (data / "dog").mkdir(parents=True)
    (data / "dog" / "large.png").write_bytes(image_bytes(1100, 900, "PNG", seed=4, noise=1.0))
    kept: list[list[str]] = []
    real_drop = JournalResumeStore.drop

    def drop(self: JournalResumeStore, key: str) -> None:
        kept.append(tus_keys(self.journal.path))     # what the journal held just before
        real_drop(self, key)

    monkeypatch.setattr(JournalResumeStore, "drop", drop)
    # the first write is the from-upload (PATCHes are not dataset writes)
    geti3.set_faults(script=[fault])
    journal = tmp_path / "journal.sqlite"
    result, rec = await upload(cfg3(geti3, tmp_path, (data,), "Pets classification"))
    assert (result.uploaded, result.failed, result.exit_code) == (1, 0, 0)
    [done] = [e for e in rec.events if type(e).__name__ == "FileDone"]
    assert done.adopted == (fault == "stored500"), done
    assert kept and kept[-1], "the URL was in the journal until the file was adopted"
    assert tus_keys(journal) == []
    stats = await admin3(geti3)
    assert (stats["media_total"], stats["duplicates"], stats["faults"]) == (1, 0, {fault: 1})
    [m] = await all_media(geti3, "Pets classification")
    status, ann = await get(geti3, f"/api/projects/{pid(geti3, 'Pets classification')}/"
                                   f"dataset/media/{m['id']}/annotations")
    names = label_names(geti3, "Pets classification")
    assert status == 200 and [[names[x["id"]] for x in a["labels"]]
                              for a in ann["annotations"]] == [["dog"]]


async def test_reconcile_lists_since_the_servers_clock_not_the_clients(geti3, tmp_path,
                                                                      monkeypatch):
    """The client's clock is an hour fast: the run's start comes from the server's Date
    header, so an upload stored-then-500 is still found among "created since the start"."""
    import time as real_time
    from types import SimpleNamespace

    from geti_bulk.geti import v3

    async with aiohttp.ClientSession() as s:
        import ssl

        ctx = ssl.create_default_context(cafile=str(geti3.cert_path))
        async with s.get(geti3.base_url + "/api/projects", ssl=ctx) as r:
            assert r.headers.get("Date"), "the local Geti 3 sends a Date header"
    monkeypatch.setattr(v3, "time", SimpleNamespace(time=lambda: real_time.time() + 3600))
    queried: list[str] = []
    real_query = v3.Geti3Client.query_media

    def query(self: Any, target: Any, rules: Any = None, limit: int = 100,
              since: float | None = None) -> Any:
        if since is not None:
            queried.append(v3._iso(since - 1.0))
        return real_query(self, target, rules, limit, since)

    monkeypatch.setattr(v3.Geti3Client, "query_media", query)
    data = tmp_path / "data"
    make_labelled_tree(data, ["cat", "dog"], 6, size=(48, 40))
    geti3.set_faults(script=["stored500"])          # the first upload: stored, then a 500
    result, rec = await upload(cfg3(geti3, tmp_path, (data,), "Pets classification"))
    assert (result.uploaded, result.failed, result.exit_code) == (6, 0, 0)
    assert sum(1 for e in rec.events if type(e).__name__ == "FileDone" and e.adopted) == 1
    assert queried, "reconciliation listed by start_date"
    skew = abs(v3.datetime.fromisoformat(queried[0]).replace(tzinfo=v3.UTC).timestamp()
               - real_time.time())
    assert skew < 600, queried           # the server's time, not the client's (+1 h)
    stats = await admin3(geti3)
    assert (stats["media_total"], stats["duplicates"]) == (6, 0)


@pytest.mark.parametrize("task", ["classification", "detection"])
async def test_the_demo_runs_against_the_local_geti3(tmp_path, task):
    cmd = [sys.executable, "-m", "geti_bulk.cli", "demo", "--dialect", "geti3", "--task", task,
           "--files", "12", "--latency-ms", "0", "--progress", "plain", "--keep",
           str(tmp_path / "demo")]
    env = {k: v for k, v in os.environ.items() if k != "GETI_TOKEN"}
    proc = await asyncio.create_subprocess_exec(*cmd, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 180)
    text = out.decode()
    assert proc.returncode == 0, text[-2000:]
    n = 12 if task == "detection" else 15            # + one large PNG per label
    assert "(Geti 3.2.0)" in text and f"verified: {n}/{n} files" in text, text[-2000:]
    assert f"verify: {n} match, 0 missing, 0 stored more than once, 0 with a different" in text


async def test_a_video_in_a_label_folder_is_stored_without_the_label(geti3, tmp_path):
    """Geti 3 annotates a video's frames (`?frame_index=N`), never the whole video: a
    video under `cat/` is stored, with a notice, not failed as "media stored, but not its
    annotation" (the server's 400 "Video frame index is not provided.")."""
    from geti_bulk.events import Notice
    from tests.test_geti3_tus import make_mp4

    data = tmp_path / "data"
    make_labelled_tree(data, ["cat"], 2, size=(48, 40))
    digest = make_mp4(data / "cat" / "clip.mp4", 1 << 20)
    result, rec = await upload(cfg3(geti3, tmp_path, (data,), "Pets classification"))
    assert (result.uploaded, result.failed, result.exit_code) == (3, 0, 0)
    assert any("video frames" in e.text for e in rec.events if isinstance(e, Notice))
    [video] = [m for m in geti3.state.store.all_media() if m.type == "video"]
    assert video.sha256 == digest
    stats = await admin3(geti3)
    assert (stats["media_total"], stats["annotated_media"], stats["duplicates"]) == (3, 2, 0)
