"""Pre-labelled datasets end on the server once, each with its annotation, through
faults on both steps and kills between them. Expected shapes are computed by the test
(tests/datasets.py), and read back over the server's public REST API."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from geti_bulk.sampledata import make_labelled_tree
from tests.conftest import admin_stats, label_ids, make_cfg, project_info, upload
from tests.datasets import (
    Img,
    sample_images,
    write_coco,
    write_datumaro,
    write_voc,
    write_yolo,
)

DETECTION = "Vehicle detection"
LABELS = ("car", "truck")


def dataset_path(server, project: str, dataset: str | None = None) -> str:
    info = project_info(server, project)
    ds = next(d for d in info["datasets"] if dataset in (None, d["name"]) and
              (dataset is not None or d["use_for_training"]))
    return (f"/api/v1/organizations/{server.info['organization_id']}/workspaces/"
            f"{server.info['workspace_id']}/projects/{info['id']}/datasets/{ds['id']}")


async def latest(server, token: str, project: str, media_id: str,
                 dataset: str | None = None) -> list[dict[str, Any]] | None:
    url = f"{server.base_url}{dataset_path(server, project, dataset)}/media/images/" \
          f"{media_id}/annotations/latest"
    async with aiohttp.ClientSession() as s, s.get(url, headers={"x-api-key": token}) as r:
        if r.status == 204:
            assert await r.read() == b""
            return None
        assert r.status == 200, await r.text()
        return list((await r.json())["annotations"])


def stored_by_name(server) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for rec in server.store.list_media():
        out.setdefault(rec.name, []).append(rec)
    return out


def boxes_of(annotations: list[dict[str, Any]], names: dict[str, str]) -> list[tuple]:
    out = []
    for a in annotations:
        s = a["shape"]
        assert s["type"] == "RECTANGLE"
        [lab] = [names[x["id"]] for x in a["labels"]]
        out.append((lab, s["x"], s["y"], s["width"], s["height"]))
    return sorted(out)


def close(a: list[tuple], b: list[tuple]) -> bool:
    return len(a) == len(b) and all(
        x[0] == y[0] and all(abs(p - q) <= 1 for p, q in zip(x[1:], y[1:], strict=True))
        for x, y in zip(a, b, strict=True))


async def assert_all_annotated(server, token: str, imgs: list[Img], project: str = DETECTION,
                               dataset_of=lambda im: None) -> None:
    """Every image stored exactly once, and its latest annotation is the source's."""
    by_name = stored_by_name(server)
    ids = label_ids(server, project)
    names = {v: k for k, v in ids.items()}
    assert server.store.duplicate_groups() == []
    for im in imgs:
        stem = Path(im.name).stem
        assert len(by_name.get(stem, [])) == 1, f"{im.name} stored {len(by_name.get(stem, []))}x"
        [rec] = by_name[stem]
        got = await latest(server, token, project, rec.id, dataset_of(im))
        assert got is not None, f"{im.name}: no annotation on the server"
        want = im.expected_boxes()
        if not want:      # no objects: the empty label, as one full box
            assert boxes_of(got, names) == [("No object", 0, 0, im.width, im.height)], im.name
        else:
            assert close(boxes_of(got, names), want), (im.name, boxes_of(got, names), want)


WRITERS = {
    "coco": lambda root, imgs: write_coco(root, imgs, LABELS),
    "yolo": lambda root, imgs: write_yolo(root, imgs, LABELS),
    "voc": lambda root, imgs: write_voc(root, imgs),
    "datumaro": lambda root, imgs: write_datumaro(root, imgs, LABELS),
}


@pytest.mark.parametrize("fmt", sorted(WRITERS))
async def test_each_format_round_trips_into_detection_through_faults(server, token, tmp_path,
                                                                     fmt):
    imgs = sample_images(24)
    root = tmp_path / fmt
    WRITERS[fmt](root, imgs)
    server.set_faults(spec="stored500=0.15,reset=0.1,503=0.1")
    server.set_annotation_faults(spec="stored500=0.15,reset=0.1,503=0.1")
    result, rec = await upload(make_cfg(server, token, tmp_path, (root,), project=DETECTION))
    assert (result.uploaded, result.failed, result.exit_code) == (len(imgs), 0, 0), \
        [getattr(e, "reason", "") for e in rec.events if type(e).__name__ == "FileFailed"]
    await assert_all_annotated(server, token, imgs)
    stats = await admin_stats(server)
    assert stats["faults"], "the faults must have been injected to test anything"


async def test_clipped_and_empty_shapes_are_counted_in_the_report(server, token, tmp_path):
    imgs = sample_images(10)
    write_coco(tmp_path / "coco", imgs, LABELS)
    result, _ = await upload(make_cfg(server, token, tmp_path, (tmp_path / "coco",),
                                      project=DETECTION))
    assert result.exit_code == 0
    rows = {Path(r["path"]).name: r for r in map(json.loads,
                                                  (tmp_path / "report.jsonl").read_text().splitlines())}
    clipped = [im.name for im in imgs if any(o.box[0] + o.box[2] > im.width for o in im.objects)]
    assert clipped
    for name in clipped:
        assert "clip" in rows[name].get("notes", ""), rows[name]
    assert rows[imgs[0].name]["shapes"] == 1            # the empty label, one full box


async def test_stored_then_500_uploads_keep_their_labels(server, token, tmp_path):
    """The measured label loss: media stored, then a 500 before the labels were applied;
    reconciliation adopts the media and must now also post its labels."""
    data = tmp_path / "data"
    make_labelled_tree(data, ["cat", "dog"], 40, size=(48, 40))
    server.set_faults(spec="stored500=0.3")
    result, rec = await upload(make_cfg(server, token, tmp_path, (data,)))
    assert (result.uploaded, result.exit_code) == (40, 0)
    adopted = [e for e in rec.events if type(e).__name__ == "FileDone" and e.adopted]
    assert len(adopted) >= 5, "the fault must have hit to test anything"
    ids = label_ids(server, "Pets classification")
    for path in sorted(data.rglob("*.jpg")):
        [stored] = stored_by_name(server)[path.stem]
        got = await latest(server, token, "Pets classification", stored.id)
        assert got is not None, f"{path} stored without its label"
        assert [x["id"] for x in got[0]["labels"]] == [ids[path.parent.name]]
        from PIL import Image

        with Image.open(path) as im:
            w, h = im.size
        assert got[0]["shape"] == {"type": "RECTANGLE", "x": 0, "y": 0, "width": w,
                                   "height": h}


async def test_unknown_categories_stop_before_anything_is_sent(server, token, tmp_path):
    imgs = sample_images(6, labels=("car", "bicycle", "tram"))
    write_coco(tmp_path / "coco", imgs, ("car", "bicycle", "tram"))
    result, _ = await upload(make_cfg(server, token, tmp_path, (tmp_path / "coco",),
                                      project=DETECTION))
    assert result.exit_code == 3
    assert "bicycle" in result.fatal and "tram" in result.fatal and "--label-map" in result.fatal
    assert server.store.count() == 0
    # mapped, and the rest skipped and counted: it goes through
    cfg = make_cfg(server, token, tmp_path, (tmp_path / "coco",), project=DETECTION,
                   label_map=("bicycle=truck",), skip_unknown_labels=True)
    result, _ = await upload(cfg)
    assert (result.uploaded, result.exit_code) == (6, 0)


async def test_auto_training_is_off_while_posting_and_restored(server, token, tmp_path):
    imgs = sample_images(14)
    write_yolo(tmp_path / "yolo", imgs, LABELS)
    result, _ = await upload(make_cfg(server, token, tmp_path, (tmp_path / "yolo",),
                                      project=DETECTION))
    assert result.exit_code == 0
    stats = await admin_stats(server)
    assert stats["annotations"]["posted_with_auto_training_on"] == 0
    info = project_info(server, DETECTION)
    path = (f"/api/v1/organizations/{server.info['organization_id']}/workspaces/"
            f"{server.info['workspace_id']}/projects/{info['id']}/project_configuration")
    async with aiohttp.ClientSession() as s, s.get(server.base_url + path,
                                                   headers={"x-api-key": token}) as r:
        conf = await r.json()
    enabled = [p["value"] for t in conf["task_configs"] for p in t["auto_training"]
               if p["key"] == "enable"]
    assert enabled and all(enabled), "auto-training is back on, as it was before the run"


def _cli(server, root: Path, tmp_path: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "geti_bulk.cli", "upload", str(root), "--host",
            server.base_url, "--project", DETECTION, "--journal",
            str(tmp_path / "journal.sqlite"), "--progress", "plain", "--concurrency", "4",
            *extra]


def _states(journal: Path) -> dict[str, int]:
    if not journal.exists():
        return {}
    try:
        with sqlite3.connect(journal) as c:
            return dict(c.execute("SELECT state, COUNT(*) FROM files GROUP BY state").fetchall())
    except sqlite3.OperationalError:    # created, its tables not yet
        return {}


async def test_kill_between_the_two_steps_then_rerun_finishes_annotations(server, token,
                                                                          tmp_path):
    imgs = sample_images(30)
    write_coco(tmp_path / "coco", imgs, LABELS)
    server.set_annotation_faults(spec="slow=1.0")       # annotations wait slow_ms each
    env = {**os.environ, "GETI_TOKEN": token}
    proc = await asyncio.create_subprocess_exec(
        *_cli(server, tmp_path / "coco", tmp_path), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    journal = tmp_path / "journal.sqlite"
    for _ in range(300):                                # media stored, annotations pending
        if _states(journal).get("media", 0) >= 4:
            break
        await asyncio.sleep(0.05)
    proc.kill()
    await asyncio.wait_for(proc.communicate(), 30)
    assert _states(journal).get("media", 0) >= 4, _states(journal)
    media_before = server.store.count()
    server.set_annotation_faults(spec="stored500=0.2,503=0.1")
    proc = await asyncio.create_subprocess_exec(
        *_cli(server, tmp_path / "coco", tmp_path), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 0, out.decode()[-2000:]
    assert server.store.count() == len(imgs) and media_before <= len(imgs)
    assert _states(journal) == {"uploaded": len(imgs)}
    await assert_all_annotated(server, token, imgs)


async def test_verify_finds_a_changed_annotation_and_a_missing_file(server, token, tmp_path):
    imgs = sample_images(8)
    write_voc(tmp_path / "voc", imgs)
    result, _ = await upload(make_cfg(server, token, tmp_path, (tmp_path / "voc",),
                                      project=DETECTION))
    assert result.exit_code == 0
    cmd = [sys.executable, "-m", "geti_bulk.cli", "verify", str(tmp_path / "voc"), "--host",
           server.base_url, "--project", DETECTION, "--report", str(tmp_path / "v.jsonl")]
    env = {**os.environ, "GETI_TOKEN": token}
    proc = await asyncio.create_subprocess_exec(*cmd, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, out.decode()
    assert f"verify: {len(imgs)} match" in out.decode()
    # someone moves a box by 5 px on the server, and another image is deleted
    victim = next(im for im in imgs if im.expected_boxes())
    [rec] = stored_by_name(server)[Path(victim.name).stem]
    ids = label_ids(server, DETECTION)
    label, x, y, w, h = victim.expected_boxes()[0]
    body = {"annotations": [{"labels": [{"id": ids[label]}],
                             "shape": {"type": "RECTANGLE", "x": x + 5, "y": y, "width": w,
                                       "height": h}}]}
    url = f"{server.base_url}{dataset_path(server, DETECTION)}/media/images/{rec.id}/annotations"
    async with aiohttp.ClientSession() as s, s.post(url, json=body,
                                                    headers={"x-api-key": token}) as r:
        assert r.status == 200, await r.text()
    [gone] = stored_by_name(server)[Path(imgs[-1].name).stem]
    async with aiohttp.ClientSession() as s, s.delete(
            f"{server.base_url}{dataset_path(server, DETECTION)}/media/images/{gone.id}",
            headers={"x-api-key": token}) as r:
        assert r.status == 200, await r.text()
    proc = await asyncio.create_subprocess_exec(*cmd, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    text = out.decode()
    assert proc.returncode == 1, text
    assert "1 missing" in text and "1 with a different annotation" in text, text
    rows = {Path(r["path"]).name: r for r in map(json.loads,
                                                  (tmp_path / "v.jsonl").read_text().splitlines())}
    assert rows[victim.name]["status"] == "annotation_differs"
    assert rows[imgs[-1].name]["status"] == "missing"


async def test_dry_run_counts_subsets_and_labels_reads_the_journal_and_writes_a_report(
        server, token, tmp_path):
    from geti_bulk.events import Notice

    imgs = sample_images(12)
    write_coco(tmp_path / "coco", imgs, LABELS)
    cfg = make_cfg(server, token, tmp_path, (tmp_path / "coco",), project=DETECTION,
                   dry_run=True)
    result, rec = await upload(cfg)
    assert result.exit_code == 0 and server.store.count() == 0
    texts = [e.text for e in rec.events if isinstance(e, Notice)]
    n_val = sum(im.subset == "val" for im in imgs)
    assert f"dry run: files per subset: train {len(imgs) - n_val}, val {n_val}" in texts
    cars = sum(o.label == "car" for im in imgs for o in im.objects)
    empty = sum(not im.objects for im in imgs)
    assert any(f"car {cars}" in t and f"{empty} image(s) with no objects" in t
               for t in texts), texts
    rows = (tmp_path / "report.jsonl").read_text().splitlines()
    assert len(rows) == len(imgs) and all("dry run" in json.loads(r)["reason"] for r in rows)
    real, _ = await upload(make_cfg(server, token, tmp_path, (tmp_path / "coco",),
                                    project=DETECTION))
    assert real.uploaded == len(imgs)
    again, rec = await upload(cfg)
    assert again.skipped == len(imgs) and server.store.count() == len(imgs)
    assert all(json.loads(r)["reason"] == "already uploaded (journal)"
               for r in (tmp_path / "report.jsonl").read_text().splitlines())


def polygon_images(n: int) -> list[Img]:
    """Images with triangles and quads (COCO `segmentation`), labels bolt / nut."""
    from tests.datasets import Obj

    imgs = []
    for i in range(n):
        objs = []
        for k in range(1 + i % 3):
            x, y = 6 + 20 * k, 5 + 7 * k
            pts = [(x, y), (x + 15.4, y + 1.2), (x + 9.6, y + 14.7)]
            if k % 2:
                pts.append((x + 0.5, y + 12.2))
            xs, ys = [p[0] for p in pts], [p[1] for p in pts]
            objs.append(Obj(("bolt", "nut")[(i + k) % 2],
                            (min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)), pts))
        imgs.append(Img(f"part_{i:03d}.jpg", 96, 72, objs))
    return imgs


async def test_coco_polygons_round_trip_into_instance_segmentation(server, token, tmp_path):
    project = "Parts instance segmentation"
    imgs = polygon_images(12)
    write_coco(tmp_path / "coco", imgs, ("bolt", "nut"))
    server.set_annotation_faults(spec="stored500=0.2,503=0.1")
    result, _ = await upload(make_cfg(server, token, tmp_path, (tmp_path / "coco",),
                                      project=project))
    assert (result.uploaded, result.exit_code) == (len(imgs), 0)
    names = {v: k for k, v in label_ids(server, project).items()}
    for im in imgs:
        [rec] = stored_by_name(server)[Path(im.name).stem]
        got = await latest(server, token, project, rec.id)
        assert got is not None
        shapes = sorted((names[a["labels"][0]["id"]],
                         [(p["x"], p["y"]) for p in a["shape"]["points"]]) for a in got
                        if a["shape"]["type"] == "POLYGON")
        want = sorted((o.label, o.polygon) for o in im.objects)
        assert len(shapes) == len(want) == len(got), (im.name, got)
        for (gl, gp), (wl, wp) in zip(shapes, want, strict=True):
            assert gl == wl and len(gp) == len(wp)
            assert all(abs(a - round(c)) <= 1 and abs(b - round(d)) <= 1
                       for (a, b), (c, d) in zip(gp, wp, strict=True)), (im.name, gp, wp)


async def test_boxes_into_rotated_detection_and_a_detection_classification_chain(
        server, token, tmp_path):
    imgs = [im for im in sample_images(10) if im.objects]
    write_coco(tmp_path / "coco", imgs, LABELS)
    # rotated detection: every box a ROTATED_RECTANGLE at its true centre, angle 0
    result, _ = await upload(make_cfg(server, token, tmp_path, (tmp_path / "coco",),
                                      project="Ship rotated detection",
                                      label_map=("car=ship", "truck=ship")))
    assert result.exit_code == 0
    for im in imgs:
        [rec] = stored_by_name(server)[Path(im.name).stem]
        got = await latest(server, token, "Ship rotated detection", rec.id)
        assert got is not None
        centres = sorted((a["shape"]["x"], a["shape"]["y"]) for a in got)
        want = sorted((x + w / 2, y + h / 2) for _, x, y, w, h in im.expected_boxes())
        assert all(a["shape"]["type"] == "ROTATED_RECTANGLE" for a in got)
        assert len(centres) == len(want) and all(
            abs(a - c) <= 1 and abs(b - d) <= 1
            for (a, b), (c, d) in zip(centres, want, strict=True)), (im.name, centres, want)
    # detection -> classification: each box holds the detection label and the class label
    chain = "Detection then classification"
    cfg = make_cfg(server, token, tmp_path, (tmp_path / "coco",), project=chain,
                   label_map=("car=object,red", "truck=object,blue"),
                   journal=tmp_path / "chain.sqlite")
    result, _ = await upload(cfg)
    assert result.exit_code == 0, result.fatal
    ids = label_ids(server, chain)
    names = {v: k for k, v in ids.items()}
    for im in imgs:
        recs = stored_by_name(server)[Path(im.name).stem]
        rec = next(r for r in recs if r.project_id == project_info(server, chain)["id"])
        got = await latest(server, token, chain, rec.id)
        assert got is not None
        pairs = sorted(tuple(sorted(names[x["id"]] for x in a["labels"])) for a in got)
        colour = {"car": "red", "truck": "blue"}
        assert pairs == sorted(tuple(sorted(("object", colour[lab])))
                               for lab, *_ in im.expected_boxes()), (im.name, pairs)


async def test_subsets_go_to_the_datasets_named_and_verify_follows_them(server, token,
                                                                        tmp_path):
    data = tmp_path / "data"
    make_labelled_tree(data / "train", ["cat", "dog"], 8, size=(48, 40))
    for p in make_labelled_tree(data / "val", ["cat", "dog"], 4, size=(48, 40), seed=4):
        p.rename(p.with_name("v" + p.name))
    result, _ = await upload(make_cfg(server, token, tmp_path, (data,),
                                      subset_dataset=(("val", "Holdout"),)))
    assert (result.uploaded, result.exit_code) == (12, 0)
    info = project_info(server, "Pets classification")
    holdout = next(d["id"] for d in info["datasets"] if d["name"] == "Holdout")
    where = {r.name: r.dataset_id for r in server.store.list_media()}
    assert {n for n, d in where.items() if d == holdout} == {p.stem for p in
                                                             (data / "val").rglob("*.*")}
    cmd = [sys.executable, "-m", "geti_bulk.cli", "verify", str(data), "--host",
           server.base_url, "--project", "Pets classification", "--subset-dataset",
           "val=Holdout", "--report", str(tmp_path / "v.jsonl")]
    proc = await asyncio.create_subprocess_exec(
        *cmd, env={**os.environ, "GETI_TOKEN": token}, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0 and "verify: 12 match" in out.decode(), out.decode()


async def test_annotations_known_only_later_are_posted_in_a_second_phase(server, token,
                                                                          tmp_path, monkeypatch):
    """A COCO file whose index is not ready while its images upload (a 1 GB file): media
    first, then every annotation from the journal's `media` rows, in the same run."""
    import dataclasses

    import geti_bulk.datasets as ds
    from geti_bulk.events import FileDone

    imgs = sample_images(20)
    write_coco(tmp_path / "coco", imgs, LABELS)
    real_job, real_ready = ds._job, ds.Sources.annotations_ready
    monkeypatch.setattr(ds, "_job", lambda *a: dataclasses.replace(
        real_job(*a), annotation=None, deferred=True))
    calls = {"n": 0}

    def ready(self: ds.Sources) -> bool:
        calls["n"] += 1
        return calls["n"] > len(imgs) and real_ready(self)

    monkeypatch.setattr(ds.Sources, "annotations_ready", ready)
    server.set_annotation_faults(spec="stored500=0.2")
    result, rec = await upload(make_cfg(server, token, tmp_path, (tmp_path / "coco",),
                                        project=DETECTION))
    assert (result.uploaded, result.failed, result.not_started, result.exit_code) == \
        (len(imgs), 0, 0, 0), result.fatal
    done = [e for e in rec.events if isinstance(e, FileDone)]
    assert len(done) == len(imgs) and not any(e.adopted for e in done)
    assert _states(tmp_path / "journal.sqlite") == {"uploaded": len(imgs)}
    await assert_all_annotated(server, token, imgs)


async def test_an_unused_label_map_entry_is_warned_about(server, token, tmp_path):
    """`--label-map truk=truck` (a typo: the source has no `truk`) would do nothing: one
    warning line names it; the entries that are used are not named."""
    imgs = sample_images(4, labels=("car", "bicycle"))
    write_coco(tmp_path / "coco", imgs, ("car", "bicycle"))
    cfg = make_cfg(server, token, tmp_path, (tmp_path / "coco",), project=DETECTION,
                   label_map=("bicycle=truck", "truk=truck"))
    result, _ = await upload(cfg)
    assert (result.uploaded, result.exit_code) == (4, 0), result.fatal
    said = [w for w in result.warnings if "--label-map" in w]
    assert len(said) == 1 and "'truk'" in said[0] and "bicycle'" not in said[0], said
    cfg = make_cfg(server, token, tmp_path, (tmp_path / "coco",), project=DETECTION,
                   label_map=("bicycle=truck",), journal=tmp_path / "j2.sqlite")
    result, _ = await upload(cfg)
    assert not [w for w in result.warnings if "--label-map" in w], result.warnings
