"""`geti-bulk migrate`: a Geti 2 project into Geti 3 (and Geti 2 → Geti 2), between the two
local servers over real sockets: every item once, its bytes equal to the source's
download, its annotation the source's, refused parts listed, faults on both sides."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from geti_bulk.events import FileDone, Notice, RecordingReporter
from geti_bulk.geti.client import Secret
from geti_bulk.migrate.config import MigrateConfig, Side
from geti_bulk.migrate.run import Migration
from geti_bulk.migrate.verify import verify_migration
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
                for frame, source in seeded.frames[name].items():
                    status, body = await t.get(f"/api/projects/{proj['id']}/dataset/media/"
                                               f"{m['id']}/annotations?frame_index={frame}")
                    assert status == 200, (name, frame)
                    assert v3_boxes(body["annotations"], names3) == v2_boxes(source, names2)
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
        assert not any("refused by the target" in n for n in notices), notices
        video = next(e for e in rec.events if isinstance(e, FileDone)
                     and e.path == f"video/{seeded.ids['clip.mp4']}/clip.mp4")
        assert (video.shapes, video.notes) == (2, "2 annotated frame(s)")
        empty = next(e for e in rec.events if isinstance(e, FileDone)
                     and e.path == f"image/{seeded.ids['img_0001.jpg']}/img_0001.jpg")
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


async def test_faults_on_both_sides_end_with_every_item_once_and_right(geti2, geti3, tmp_path):
    src = Source2(geti2, geti2.test_token, SRC_PROJECT)
    try:
        seeded = await seed_detection(src, 30)
        geti2.set_download_faults("503=0.1,reset=0.15,502=0.05")
        geti3.set_faults("stored500=0.15,reset=0.1,locked=0.1")
        rec = RecordingReporter()
        result = await Migration(migrate_cfg(geti2, geti3, tmp_path, max_attempts=12), rec,
                                 sleep=no_sleep).execute()
        assert result.fatal is None, result.fatal
        assert (result.uploaded, result.failed) == (len(seeded.ids), 0)
        geti2.set_download_faults("")
        geti3.set_faults("")
        assert geti2.state.download_faults.counts["reset"] > 0
        assert result.retries.get("download", 0) > 0, result.retries   # a cut download, again
        assert result.retries.get("source-503", 0) + result.retries.get("source-502", 0) > 0
        assert result.retries.get("500-locked?", 0) > 0, result.retries   # target's stored500
        await check_target(geti3, src, seeded, "Vehicles (from Geti 2)")
        adopted = [e for e in rec.events if isinstance(e, FileDone) and e.adopted]
        assert adopted, "a stored-then-500 upload is found on the target, not sent again"
    finally:
        await src.close()


def _cli_args(g2: Any, g3: Any, tmp_path: Path) -> list[str]:
    return [sys.executable, "-m", "geti_bulk.cli", "migrate", "--from", g2.base_url,
            "--from-project", SRC_PROJECT, "--to", g3.base_url, "--to-ca-bundle",
            str(g3.cert_path), "--create-project", "Vehicles (from Geti 2)",
            "--journal", str(tmp_path / "cli.sqlite"), "--progress", "plain",
            "--concurrency", "4"]


def _uploaded(journal: Path) -> int:
    if not journal.exists():
        return 0
    import sqlite3

    conn = sqlite3.connect(str(journal), timeout=30)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM files WHERE state = 'uploaded'")
                   .fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


async def _run_until(args: list[str], env: dict[str, str], journal: Path,
                     uploaded: int) -> asyncio.subprocess.Process:
    """The CLI, started and left running until the journal holds `uploaded` items."""
    proc = await asyncio.create_subprocess_exec(
        *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    for _ in range(3000):                          # bounded: 300 s at most
        if _uploaded(journal) >= uploaded or proc.returncode is not None:
            break
        await asyncio.sleep(0.1)
    assert proc.returncode is None, "the run ended before it could be stopped"
    return proc


def _states(journal: Path) -> dict[str, int]:
    import sqlite3

    conn = sqlite3.connect(str(journal), timeout=30)
    try:
        return dict(conn.execute("SELECT state, COUNT(*) FROM files GROUP BY state").fetchall())
    finally:
        conn.close()


async def test_ctrl_c_then_kill_9_mid_run_then_resume_through_faults(tmp_path):
    """The CLI in a subprocess with faults on both sides: stopped with Ctrl-C (in-flight
    items finish, exit 130), rerun and killed with SIGKILL mid-run, rerun to the end: every
    item once on the target (nothing created twice), bytes and annotations right, the CLI's
    `--verify --sha256` agrees, and the token is never on the command line or in output."""
    token = generate_pat()
    g2 = LocalGeti(ServerConfig(data_dir=tmp_path / "g2", token=token, seed=7,
                                download_faults="reset=0.05,503=0.05"))
    g3 = LocalGeti3(Geti3Config(data_dir=tmp_path / "g3", latency_ms=40, seed=5,
                                faults="stored500=0.08,reset=0.05,locked=0.03", locked_ms=200))
    async with g2:
        await g3.start()
        src = Source2(g2, token, SRC_PROJECT)
        try:
            seeded = await seed_detection(src, 60)
            env = {**os.environ, "GETI_FROM_TOKEN": token}
            args = _cli_args(g2, g3, tmp_path)
            assert token not in " ".join(args)
            journal = tmp_path / "cli.sqlite"
            first = await _run_until(args, env, journal, 5)
            first.send_signal(signal.SIGINT)
            out1, _ = await asyncio.wait_for(first.communicate(), 120)
            assert first.returncode == 130, out1.decode()[-2000:]
            assert "stopping: interrupted (Ctrl-C)" in out1.decode()
            assert "sending" not in _states(journal), "Ctrl-C lets in-flight items finish"
            second = await _run_until(args, env, journal, _uploaded(journal) + 10)
            second.send_signal(signal.SIGKILL)
            out2, _ = await second.communicate()
            done_before = _uploaded(journal)
            assert 15 <= done_before < len(seeded.ids)
            last = await asyncio.create_subprocess_exec(
                *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await last.communicate()
            assert last.returncode == 0, (out.decode()[-2000:], err.decode()[-2000:])
            assert _states(journal) == {"uploaded": len(seeded.ids)}
            assert f"skipped:     {done_before}" in out.decode()
            g2.set_download_faults("")
            g3.set_faults("")
            await check_target(g3, src, seeded, "Vehicles (from Geti 2)")
            shown = out1 + out2 + out + err
            assert token.encode() not in shown
            check = await asyncio.create_subprocess_exec(
                *args, "--verify", "--sha256", "--report", str(tmp_path / "v.jsonl"), env=env,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            vout, verr = await check.communicate()
            assert check.returncode == 0, (vout.decode()[-2000:], verr.decode()[-2000:])
            assert f"{len(seeded.ids)} on the target once and right" in vout.decode()
        finally:
            await src.close()
            await g3.stop()


async def test_verify_compares_the_two_projects_and_finds_what_differs(geti2, geti3, tmp_path):
    src = Source2(geti2, geti2.test_token, SRC_PROJECT)
    try:
        seeded = await seed_detection(src, 6)
        cfg = migrate_cfg(geti2, geti3, tmp_path)
        result = await Migration(cfg, RecordingReporter(), sleep=no_sleep).execute()
        assert result.exit_code == 0
        ok = await verify_migration(cfg, tmp_path / "v1.jsonl", sha256=True)
        assert (ok.exit_code, ok.checked, ok.ok) == (0, len(seeded.ids), len(seeded.ids)), \
            ok.problems
        # the target loses one annotation and gains a second copy of another item
        t = Target3(geti3)
        proj = await t.project("Vehicles (from Geti 2)")
        media = {m["name"]: m for m in await t.media(proj["id"])}
        async with t.session.delete(f"{geti3.base_url}/api/projects/{proj['id']}/dataset/"
                                    f"media/{media['img_0003']['id']}/annotations",
                                    ssl=t.ssl) as r:
            assert r.status == 204
        body, ctype = _form(seeded.data["img_0004.jpg"], "img_0004.jpg")
        async with t.session.post(f"{geti3.base_url}/api/projects/{proj['id']}/dataset/media",
                                  data=body, headers={"Content-Type": ctype}, ssl=t.ssl) as r:
            assert r.status == 201
        await t.close()
        bad = await verify_migration(migrate_cfg(geti2, geti3, tmp_path, journal=None),
                                     tmp_path / "v2.jsonl")
        assert bad.exit_code == 1
        text = "\n".join(bad.problems)
        assert "img_0004" in text and "2 times" in text, text
        assert "img_0003" in text, text
        assert len(bad.problems) == 2, text
    finally:
        await src.close()


def _form(data: bytes, filename: str) -> tuple[bytes, str]:
    from tests.migrate_helpers import _multipart

    return _multipart(data, filename)


async def test_geti3_to_geti3_from_the_same_code(geti2, geti3, tmp_path):
    """A migrated Geti 3 project moved on to a second Geti 3: the same items, bytes and
    annotations (the empty list stays an empty, reviewed list), a video's annotated frames
    found by its `annotated_frame_count`."""
    src = Source2(geti2, geti2.test_token, SRC_PROJECT)
    other = LocalGeti3(Geti3Config(data_dir=tmp_path / "g3b", seed=9))
    await other.start()
    try:
        seeded = await seed_detection(src, 5, tiff=False)
        first = await Migration(migrate_cfg(geti2, geti3, tmp_path), RecordingReporter(),
                                sleep=no_sleep).execute()
        assert first.exit_code == 0
        cfg = MigrateConfig(
            source=Side(host=geti3.base_url, project="Vehicles (from Geti 2)",
                        token=Secret(""), ca_bundle=str(geti3.cert_path)),
            target=Side(host=other.base_url, project=None, token=Secret(""),
                        ca_bundle=str(other.cert_path)),
            create_project="Vehicles, third home", journal=tmp_path / "g3g3.sqlite",
            report=tmp_path / "g3g3.jsonl")
        second = await Migration(cfg, RecordingReporter(), sleep=no_sleep).execute()
        assert (second.exit_code, second.uploaded) == (0, 6), second.fatal
        await check_target(other, src, seeded, "Vehicles, third home")   # the video's frames too
        v = await verify_migration(cfg, tmp_path / "v.jsonl", sha256=True)
        assert (v.exit_code, v.ok) == (0, 6), v.problems
    finally:
        await src.close()
        await other.stop()


async def test_a_target_that_refuses_frame_annotations_gets_them_listed(
        geti2, geti3, tmp_path, monkeypatch):
    """A Geti that answers 501 to frame annotations (this seam stands in for one: the
    client's frame POST answers as such a server would) still gets the video, and the
    run lists the refusal, on this run and on a resume."""
    from geti_bulk.errors import TransientError
    from geti_bulk.geti.v3 import Geti3Client

    async def not_implemented(self: Any, *a: Any, **kw: Any) -> Any:
        raise TransientError("server answered 501 Not Implemented", status=501)

    monkeypatch.setattr(Geti3Client, "post_frame_annotation", not_implemented)
    src = Source2(geti2, geti2.test_token, SRC_PROJECT)
    try:
        seeded = await seed_detection(src, 2, tiff=False)
        rec = RecordingReporter()
        r = await Migration(migrate_cfg(geti2, geti3, tmp_path), rec, sleep=no_sleep).execute()
        assert (r.exit_code, r.uploaded) == (0, len(seeded.ids))
        video = next(e for e in rec.events if isinstance(e, FileDone)
                     and e.path.startswith("video/"))
        assert "2 annotated frame(s) not moved" in video.notes
        told = [e.text for e in rec.events
                if isinstance(e, Notice) and e.text.startswith("refused by the target")]
        assert told == [f"refused by the target: video frame annotations (the target answers "
                        f"501 Not Implemented): 1 item(s) ({video.path})"]
        again = RecordingReporter()
        await Migration(migrate_cfg(geti2, geti3, tmp_path, report=tmp_path / "r2.jsonl"),
                        again, sleep=no_sleep).execute()
        assert told == [e.text for e in again.events if isinstance(e, Notice)
                        and e.text.startswith("refused by the target")]
    finally:
        await src.close()


async def test_a_resumed_item_whose_new_upload_is_stored_then_500_is_adopted(
        geti2, geti3, tmp_path):
    """Items an earlier run failed (every upload cut) are sent again; each new upload is
    stored and then answered 500: found on the target (it lists what this run stored
    besides the earlier runs' items), never sent a third time."""
    src = Source2(geti2, geti2.test_token, SRC_PROJECT)
    try:
        seeded = await seed_detection(src, 6, video=False, tiff=False)
        geti3.set_faults("reset=1.0")
        first = await Migration(migrate_cfg(geti2, geti3, tmp_path, max_attempts=1),
                                RecordingReporter(), sleep=no_sleep).execute()
        assert (first.uploaded, first.failed) == (0, len(seeded.ids))
        import sqlite3

        conn = sqlite3.connect(str(tmp_path / "migrate.sqlite"))   # that run was long ago
        with conn:
            conn.execute("UPDATE files SET updated = updated - 3600")
        conn.close()
        geti3.set_faults("", ["stored500", "ok"] * 20)
        rec = RecordingReporter()
        second = await Migration(migrate_cfg(geti2, geti3, tmp_path, concurrency=1,
                                             report=tmp_path / "r2.jsonl"), rec,
                                 sleep=no_sleep).execute()
        geti3.set_faults("")
        assert (second.uploaded, second.failed) == (len(seeded.ids), 0), second.fatal
        assert sum(1 for e in rec.events if isinstance(e, FileDone) and e.adopted) >= 3
        await check_target(geti3, src, seeded, "Vehicles (from Geti 2)")
    finally:
        await src.close()


async def test_a_wrong_source_token_stops_before_anything_is_sent(geti2, geti3, tmp_path):
    cfg = migrate_cfg(geti2, geti3, tmp_path)
    bad = MigrateConfig(**{**{f: getattr(cfg, f) for f in cfg.__dataclass_fields__},
                           "source": Side(host=geti2.base_url, project=SRC_PROJECT,
                                          token=Secret("geti_pat_" + "x" * 40))})
    r = await Migration(bad, RecordingReporter(), sleep=no_sleep).execute()
    assert r.exit_code == 3
    assert r.fatal is not None and r.fatal.startswith("from: the server re")   # the token
    assert "GETI_FROM_TOKEN" in r.fatal and "x" * 40 not in r.fatal
    t = Target3(geti3)
    _, projects = await t.get("/api/projects")
    await t.close()
    assert not any(p["name"] == "Vehicles (from Geti 2)" for p in projects)


async def test_skip_existing_adopts_what_a_lost_journal_had_moved(geti2, geti3, tmp_path):
    """The journal is lost: `--skip-existing` pairs each source item with the target's item
    of the same name, extension and size, sends no byte again, and puts back an
    annotation the target lost meanwhile."""
    src = Source2(geti2, geti2.test_token, SRC_PROJECT)
    try:
        seeded = await seed_detection(src, 8)
        first = await Migration(migrate_cfg(geti2, geti3, tmp_path), RecordingReporter(),
                                sleep=no_sleep).execute()
        assert first.exit_code == 0
        t = Target3(geti3)
        proj = await t.project("Vehicles (from Geti 2)")
        media = {m["name"]: m for m in await t.media(proj["id"])}
        async with t.session.delete(f"{geti3.base_url}/api/projects/{proj['id']}/dataset/"
                                    f"media/{media['img_0003']['id']}/annotations",
                                    ssl=t.ssl) as r:
            assert r.status == 204
        await t.close()
        rec = RecordingReporter()
        again = await Migration(migrate_cfg(geti2, geti3, tmp_path, skip_existing=True,
                                            journal=tmp_path / "new.sqlite",
                                            report=tmp_path / "r2.jsonl"), rec,
                                sleep=no_sleep).execute()
        assert (again.exit_code, again.uploaded, again.skipped, again.bytes_sent) == (
            0, 0, len(seeded.ids), 0)              # found there, nothing sent: skipped
        from geti_bulk.events import FileSkipped

        assert not [e for e in rec.events if isinstance(e, FileDone)]
        found = [e for e in rec.events if isinstance(e, FileSkipped)]
        assert len(found) == len(seeded.ids) and all(
            e.media_id and e.reason.startswith("already on the target") for e in found)
        lost = next(e for e in found if e.path.endswith("/img_0003.jpg"))
        assert lost.reason.endswith("annotation posted"), lost.reason
        # a rerun with that journal settles every item from it
        third = await Migration(migrate_cfg(geti2, geti3, tmp_path, skip_existing=True,
                                            journal=tmp_path / "new.sqlite",
                                            report=tmp_path / "r3.jsonl"), RecordingReporter(),
                                sleep=no_sleep).execute()
        assert (third.uploaded, third.skipped, third.failed) == (0, len(seeded.ids), 0)
        await check_target(geti3, src, seeded, "Vehicles (from Geti 2)")
    finally:
        await src.close()


async def test_verify_sha256_downloads_retry_cuts_and_a_lost_item_is_one_row(
        geti2, geti3, tmp_path):
    """`--verify --sha256` against a source whose downloads are cut mid-body: each cut
    download is downloaded again (the mover's retry policy), so every item checks out;
    when an item's download never gets through, it is one problem row with its reason
    and the others are still checked (never an ExceptionGroup)."""
    import json

    src = Source2(geti2, geti2.test_token, SRC_PROJECT)
    try:
        seeded = await seed_detection(src, 10)
        cfg = migrate_cfg(geti2, geti3, tmp_path)
        assert (await Migration(cfg, RecordingReporter(), sleep=no_sleep).execute()
                ).exit_code == 0
        geti2.set_download_faults("reset=0.3,503=0.1")
        ok = await verify_migration(cfg, tmp_path / "v1.jsonl", sha256=True, sleep=no_sleep)
        cut = geti2.state.download_faults.counts["reset"]
        geti2.set_download_faults("")
        assert cut > 0, "some source downloads were cut"
        assert (ok.fatal, ok.problems) == (None, []), ok.summary()
        assert ok.ok == ok.checked == len(seeded.ids)
        # every download of one run of the source is cut: every item is one problem row
        geti2.set_download_faults("reset=1.0")
        bad = await verify_migration(migrate_cfg(geti2, geti3, tmp_path, max_attempts=3),
                                     tmp_path / "v2.jsonl", sha256=True, sleep=no_sleep)
        geti2.set_download_faults("")
        assert bad.fatal is None, bad.fatal
        assert (bad.exit_code, bad.checked, len(bad.problems)) == (1, len(seeded.ids),
                                                                   len(seeded.ids))
        assert all("could not be checked: source: the download broke" in p
                   and "gave up after 3 failed tries" in p for p in bad.problems), bad.problems
        rows = [json.loads(x) for x in (tmp_path / "v2.jsonl").read_text().splitlines()]
        assert len(rows) == len(seeded.ids) and all(r["status"] == "problem" for r in rows)
    finally:
        await src.close()


async def test_verify_names_a_duplicate_once_and_a_stranger_apart(geti2, geti3, tmp_path):
    """A second copy of a migrated item is one duplicate (a problem naming the source
    item), an unrelated file is one item not from the source; both are report rows."""
    import json

    from geti_bulk.sampledata import image_bytes

    src = Source2(geti2, geti2.test_token, SRC_PROJECT)
    try:
        seeded = await seed_detection(src, 5, video=False, tiff=False)
        cfg = migrate_cfg(geti2, geti3, tmp_path)
        assert (await Migration(cfg, RecordingReporter(), sleep=no_sleep).execute()
                ).exit_code == 0
        t = Target3(geti3)
        proj = await t.project("Vehicles (from Geti 2)")
        for data, name in ((seeded.data["img_0004.jpg"], "img_0004.jpg"),
                           (image_bytes(30, 30, seed=4242), "stranger.jpg")):
            body, ctype = _form(data, name)
            async with t.session.post(f"{geti3.base_url}/api/projects/{proj['id']}/dataset/"
                                      "media", data=body, headers={"Content-Type": ctype},
                                      ssl=t.ssl) as r:
                assert r.status == 201
        await t.close()
        for journal in (cfg.journal, None):       # paired by the journal, or by name
            v = await verify_migration(migrate_cfg(geti2, geti3, tmp_path, journal=journal),
                                       tmp_path / "v.jsonl")
            assert (v.duplicates, v.extra, v.elsewhere) == (1, 1, 0), v.summary()
            assert (v.checked, v.ok, len(v.problems)) == (5, 4, 1), v.summary()
            assert "img_0004" in v.problems[0] and "2 times" in v.problems[0]
            assert ("1 duplicate(s) on the target (a source item twice); 1 target item(s) "
                    "not from the source") in v.summary()
            rows = [json.loads(x) for x in (tmp_path / "v.jsonl").read_text().splitlines()]
            extra = sorted((r["name"], r["status"]) for r in rows if "target_id" in r)
            assert extra == [("img_0004.jpg", "duplicate"), ("stranger.jpg",
                                                             "not from the source")]
            dup = next(r for r in rows if r.get("status") == "duplicate")
            assert dup["of"] == f"image/{seeded.ids['img_0004.jpg']}/img_0004.jpg"
    finally:
        await src.close()


async def test_create_project_refuses_a_name_the_target_already_has(geti2, geti3, tmp_path):
    """`--create-project NAME` where the target already has a project NAME that another
    migration made (another derived id): one line naming `--to-project`, exit 2, nothing
    created, in a dry run too; this migration's own project is still found on a rerun."""
    other = Source2(geti2, geti2.test_token, "Pets classification")
    src = Source2(geti2, geti2.test_token, SRC_PROJECT)
    try:
        await other.upload("pet.jpg", seeded_image())
        await seed_detection(src, 2, video=False, tiff=False)
        first = MigrateConfig(**{**_fields(migrate_cfg(geti2, geti3, tmp_path,
                                                       create_project="Taken")),
                                 "source": Side(host=geti2.base_url,
                                                project="Pets classification",
                                                token=Secret(geti2.test_token)),
                                 "journal": tmp_path / "pets.sqlite"})
        assert (await Migration(first, RecordingReporter(), sleep=no_sleep).execute()
                ).exit_code == 0
        for dry in (True, False):
            r = await Migration(migrate_cfg(geti2, geti3, tmp_path, create_project="taken",
                                            dry_run=dry), RecordingReporter(),
                                sleep=no_sleep).execute()
            assert r.exit_code == 2, (dry, r.fatal)
            assert r.fatal is not None and "already has a project named 'taken'" in r.fatal
            assert "--to-project 'taken'" in r.fatal and "\n" not in r.fatal
        t = Target3(geti3)
        _, projects = await t.get("/api/projects")
        await t.close()
        names = [p["name"] for p in projects]
        assert names.count("Taken") == 1 and names.count(SRC_PROJECT) == 1, names
        # bare --create-project names it after the source project, which the target has
        bare = await Migration(migrate_cfg(geti2, geti3, tmp_path, create_project=SRC_PROJECT),
                               RecordingReporter(), sleep=no_sleep).execute()
        assert bare.exit_code == 2 and f"--to-project {SRC_PROJECT!r}" in (bare.fatal or "")
        t = Target3(geti3)
        _, projects = await t.get("/api/projects")
        await t.close()
        assert [p["name"] for p in projects] == names
        again = await Migration(first, RecordingReporter(), sleep=no_sleep).execute()
        assert (again.exit_code, again.skipped) == (0, 1), again.fatal   # its own: reused
    finally:
        await src.close()
        await other.close()


def seeded_image() -> bytes:
    from geti_bulk.sampledata import image_bytes

    return image_bytes(48, 40, seed=77)


def _fields(cfg: MigrateConfig) -> dict[str, Any]:
    return {f: getattr(cfg, f) for f in cfg.__dataclass_fields__}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
async def test_a_signal_stops_migrate_as_it_stops_upload(tmp_path, sig):
    """The CLI stopped by SIGINT, SIGTERM or SIGHUP mid-run: items in flight finish, exit
    128 + N, the summary says which signal, and stderr says how to go on, as upload's."""
    token = generate_pat()
    g2 = LocalGeti(ServerConfig(data_dir=tmp_path / "g2", token=token, seed=7))
    g3 = LocalGeti3(Geti3Config(data_dir=tmp_path / "g3", latency_ms=80, seed=5))
    async with g2:
        await g3.start()
        src = Source2(g2, token, SRC_PROJECT)
        try:
            await seed_detection(src, 30, video=False, tiff=False)
            env = {**os.environ, "GETI_FROM_TOKEN": token}
            journal = tmp_path / "cli.sqlite"
            proc = await asyncio.create_subprocess_exec(
                *_cli_args(g2, g3, tmp_path), env=env, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE)
            for _ in range(3000):                   # bounded: 300 s at most
                if _uploaded(journal) >= 3 or proc.returncode is not None:
                    break
                await asyncio.sleep(0.1)
            assert proc.returncode is None, "the run ended before it could be stopped"
            proc.send_signal(sig)
            out, err = await asyncio.wait_for(proc.communicate(), 120)
            name = signal.Signals(sig).name
            how = "Ctrl-C (SIGINT)" if sig == signal.SIGINT else name
            assert proc.returncode == 128 + sig, (out.decode()[-1500:], err.decode())
            assert f"interrupted by {name}" in out.decode(), out.decode()[-1500:]
            assert (f"geti-bulk: stopped by {how}; rerun the same command to resume"
                    in err.decode()), err.decode()
            assert "sending" not in _states(journal), "in-flight items finish"
        finally:
            await src.close()
            await g3.stop()


async def test_tls_messages_name_each_sides_own_flags_once(geti2, geti3, tmp_path):
    """A target whose certificate is not trusted: the advice names --to-ca-bundle and
    --to-insecure (migrate's flags), once; a source written without a scheme (https
    assumed) that speaks plain HTTP gets the http:// hint, no certificate hint."""
    cfg = migrate_cfg(geti2, geti3, tmp_path)
    untrusted = MigrateConfig(**{**_fields(cfg), "target": Side(host=geti3.base_url,
                                                                project=None,
                                                                token=Secret(""))})
    r = await Migration(untrusted, RecordingReporter(), sleep=no_sleep).execute()
    text = r.fatal or ""
    assert r.exit_code == 3 and text.startswith("to: TLS verification failed"), text
    assert text.count("--to-ca-bundle") == 1 and text.count("--to-insecure") == 1, text
    assert " --ca-bundle" not in text and " --insecure" not in text, text
    bare = geti2.base_url.removeprefix("http://")
    plain = MigrateConfig(**{**_fields(cfg), "source": Side(
        host=f"https://{bare}", project=SRC_PROJECT, token=Secret(geti2.test_token))})
    r = await Migration(plain, RecordingReporter(), sleep=no_sleep).execute()
    text = r.fatal or ""
    assert "does not speak TLS on that port" in text and f"http://{bare}" in text, text
    assert "certificate" not in text and "ca-bundle" not in text, text


async def test_shapes_a_label_map_drops_are_counted_in_the_summary(geti2, geti3, tmp_path):
    """`--label-map truck=`: every truck box is dropped and counted (the summary's shapes
    line, as upload's), an item whose only objects were trucks is left unannotated with
    its reason in the report; `--verify --sha256` says the bytes were compared."""
    from geti_bulk.events import RunFinished

    src = Source2(geti2, geti2.test_token, SRC_PROJECT)
    try:
        seeded = await seed_detection(src, 8, tiff=False)
        trucks = sum(1 for anns in seeded.annotations.values() for a in anns
                     if a["labels"][0]["id"] == src.labels["truck"])
        only = [n for n, anns in seeded.annotations.items()
                if anns and all(a["labels"][0]["id"] == src.labels["truck"] for a in anns)]
        assert trucks and only
        cfg = migrate_cfg(geti2, geti3, tmp_path, label_map=("truck=",))
        rec = RecordingReporter()
        r = await Migration(cfg, rec, sleep=no_sleep).execute()
        assert r.exit_code == 0, r.fatal
        finished = next(e for e in rec.events if isinstance(e, RunFinished))
        assert (r.shapes_dropped, finished.shapes_dropped) == (trucks, trucks)
        from geti_bulk.display.summary import FailureGroups, plain_summary

        lines = plain_summary(finished, FailureGroups())
        assert any(f"0 clipped, {trucks} dropped: see the report" in x for x in lines), lines
        done = {e.path.rsplit("/", 1)[-1]: e for e in rec.events if isinstance(e, FileDone)}
        for name in only:
            assert done[name].shapes == 0 and "dropped" in done[name].notes, done[name]
        v = await verify_migration(cfg, tmp_path / "v.jsonl", sha256=True)
        assert v.exit_code == 0, v.problems
        assert "bytes compared (sha256 of both downloads" in v.summary()
        v = await verify_migration(cfg, tmp_path / "v.jsonl")
        assert "bytes not compared" in v.summary()
    finally:
        await src.close()


async def test_an_empty_source_warns_and_creates_nothing(geti2, geti3, tmp_path):
    """An empty source project: `nothing to move`, exit 0, and no target project made."""
    r = await Migration(migrate_cfg(geti2, geti3, tmp_path), RecordingReporter(),
                        sleep=no_sleep).execute()
    assert (r.exit_code, r.uploaded, r.fatal) == (0, 0, None)
    assert any(w.startswith("nothing to move: ") and SRC_PROJECT in w for w in r.warnings), \
        r.warnings
    t = Target3(geti3)
    _, projects = await t.get("/api/projects")
    await t.close()
    assert "Vehicles (from Geti 2)" not in [p["name"] for p in projects]


async def test_migrate_warns_about_an_unused_label_map_entry(geti2, geti3, tmp_path):
    src = Source2(geti2, geti2.test_token, SRC_PROJECT)
    try:
        await seed_detection(src, 2, video=False, tiff=False)
        r = await Migration(migrate_cfg(geti2, geti3, tmp_path,
                                        label_map=("truk=bicycle", "car=car")),
                            RecordingReporter(), sleep=no_sleep).execute()
        assert r.exit_code == 0, r.fatal
        said = [w for w in r.warnings if "--label-map" in w]
        assert len(said) == 1 and "'truk'" in said[0] and "'car'" not in said[0], said
    finally:
        await src.close()


def test_a_side_without_a_host_names_the_config_table():
    from geti_bulk.cli import build_parser
    from geti_bulk.errors import ConfigError
    from geti_bulk.migrate.command import build_config

    with pytest.raises(ConfigError) as e:
        build_config(build_parser().parse_args(["migrate", "--from", "http://x",
                                                "--to-project", "X"]))
    assert str(e.value) == ("to: no host; pass --to URL (or host in the [to] table of "
                            "--config)")
    assert "->" not in str(e.value)


async def test_create_project_on_a_geti2_target_is_one_line_naming_the_flag(geti2, geti3,
                                                                           tmp_path):
    src = Source2(geti2, geti2.test_token, SRC_PROJECT)
    try:
        await seed_detection(src, 1, video=False, tiff=False)
        cfg = migrate_cfg(geti2, geti3, tmp_path)
        to_geti2 = MigrateConfig(**{**_fields(cfg), "target": Side(
            host=geti2.base_url, project=None, token=Secret(geti2.test_token))})
        r = await Migration(to_geti2, RecordingReporter(), sleep=no_sleep).execute()
        assert r.exit_code == 2 and (r.fatal or "").startswith("--create-project: "), r.fatal
        assert "create_project" not in (r.fatal or "")
    finally:
        await src.close()
