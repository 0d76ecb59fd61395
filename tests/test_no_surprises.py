"""No silent surprises: what a run passes over or changes is said, through the real CLI
against the real local server. Skipped symlinks name --follow-symlinks, an empty source
warns (exit 0), files beside the media that are not media are ignored and counted (a VOC
or YOLO tree uploaded as plain folders exits 0), unsupported media such as .gif stay
failures, files a classification project gets without a label are counted, clipped and
dropped shapes are counted in the summary, and -q means only failures and the summary."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from geti_bulk.config import KEYS, env_name
from geti_bulk.errors import TransientError
from geti_bulk.outage import outage_text
from geti_bulk.sampledata import image_bytes, make_labelled_tree
from tests.datasets import Obj, sample_images, write_coco, write_voc, write_yolo


async def cli(*args: str, token: str | None = None,
              env_extra: dict[str, str] | None = None) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GETI_")}
    if token:
        env["GETI_TOKEN"] = token
    env.update(env_extra or {})
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "geti_bulk.cli", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def up(server, source: Path, tmp_path: Path, *extra: str,
       project: str = "Pets classification") -> list[str]:
    return ["upload", str(source), "--host", server.base_url, "--project", project,
            "--journal", str(tmp_path / "j.sqlite"), "--report", str(tmp_path / "r.jsonl"),
            "--progress", "plain", *extra]


def summary(out: str) -> dict[str, str]:
    lines = out.splitlines()
    rows = {}
    for ln in lines[lines.index("--- summary ---") + 1:]:
        if ":" in ln and not ln.startswith(" "):
            k, _, v = ln.partition(":")
            rows[k] = v.strip()
    return rows


async def test_a_folder_of_symlinks_says_it_skipped_them_and_names_follow_symlinks(
        server, token, tmp_path):
    real = tmp_path / "real"
    files = make_labelled_tree(real, ["cat"], 3)
    links = tmp_path / "links" / "cat"
    links.mkdir(parents=True)
    for f in files:
        (links / f.name).symlink_to(f)
    code, out, err = await cli(*up(server, links.parent, tmp_path), token=token)
    assert code == 0, err
    assert summary(out)["symlinks"] == "3 skipped (not followed; pass --follow-symlinks)"
    assert err.splitlines() == [
        f"geti-bulk: warning: nothing to upload: no image or video found in {links.parent} "
        "(3 symlink(s) not followed: pass --follow-symlinks)"]
    assert server.store.count() == 0
    code, out, err = await cli(*up(server, links.parent, tmp_path, "--follow-symlinks"),
                               token=token)
    assert code == 0 and err == "", err
    assert server.store.count() == 3 and "symlinks" not in summary(out)
    code, out, _ = await cli("upload", "--help")
    help_text = " ".join(out.split())
    assert ("--follow-symlinks upload the files symlinks point to (folder loops are "
            "detected); without it symlinks are skipped and counted in the summary") in help_text


async def test_an_empty_source_warns_and_exits_0(server, token, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out, err = await cli(*up(server, empty, tmp_path), token=token)
    assert code == 0
    assert err.splitlines() == [
        f"geti-bulk: warning: nothing to upload: no image or video found in {empty}"]
    data = tmp_path / "data"
    make_labelled_tree(data, ["cat", "dog"], 4)
    code, out, err = await cli(*up(server, data, tmp_path, "--include", "*.tiff"), token=token)
    assert code == 0
    assert err.splitlines() == [
        f"geti-bulk: warning: nothing to upload: no image or video found in {data} "
        "(4 left out by --include/--exclude)"]
    assert server.store.count() == 0


async def test_a_voc_tree_uploaded_as_plain_folders_ignores_its_xml_and_txt(
        server, token, tmp_path):
    imgs = sample_images(6)
    root = tmp_path / "voc"
    write_voc(root, imgs)
    (root / "README.md").write_text("a dataset\n")
    code, out, err = await cli(*up(server, root, tmp_path, "--format", "folders", "--labels",
                                   "none", project="Vehicle detection"), token=token)
    assert code == 0, out + err
    ignored = len(imgs) + len(list((root / "ImageSets" / "Main").iterdir())) + 1
    assert summary(out)["ignored"] == f"{ignored} (not media)"
    assert summary(out)["failed"] == "0" and server.store.count() == len(imgs)
    rows = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert {r["status"] for r in rows} == {"uploaded"} and len(rows) == len(imgs)


async def test_a_yolo_tree_as_folders_exits_0_but_a_gif_beside_it_still_fails(
        server, token, tmp_path):
    imgs = sample_images(4)
    root = tmp_path / "yolo"
    write_yolo(root, imgs, ("car", "truck"))
    (root / "labels.json").write_text("{}")
    (root / "images" / "train" / "anim.gif").write_bytes(b"GIF89a" + b"\0" * 64)
    code, out, err = await cli(*up(server, root, tmp_path, "--format", "folders", "--labels",
                                   "none", project="Vehicle detection"), token=token)
    assert code == 1, out + err                 # the .gif: media Geti refuses
    rows = summary(out)
    assert rows["ignored"] == f"{len(imgs) + 2} (not media)"    # the .txt, data.yaml, .json
    assert rows["failed"] == "1" and rows["uploaded"] == str(len(imgs))
    gif = os.path.realpath(root / "images" / "train" / "anim.gif")    # its identity
    assert f"FAILED {gif}: unsupported file type .gif" in out


async def test_files_a_classification_project_gets_without_a_label_are_counted(
        server, token, tmp_path):
    data = tmp_path / "data"
    make_labelled_tree(data, ["cat", "dog"], 4)
    (data / "loose_1.jpg").write_bytes(image_bytes(64, 64, seed=1))
    (data / "loose_2.png").write_bytes(image_bytes(64, 64, "PNG", seed=2))
    code, out, err = await cli(*up(server, data, tmp_path), token=token)
    assert code == 0, err
    assert summary(out)["no label"] == "2 uploaded without a label"
    # a detection project takes no labels at upload: nothing to count there
    code, out, err = await cli(*up(server, data, tmp_path / "det", "--labels", "none",
                                   project="Vehicle detection"), token=token)
    assert code == 0, err
    assert "no label" not in summary(out)


async def test_clipped_and_dropped_shapes_are_counted_in_the_summary(server, token, tmp_path):
    imgs = sample_images(10)       # images 4 and 9 have a box past the right edge
    imgs[1].objects.append(Obj("car", (imgs[1].width + 5, 10, 10, 10)))   # wholly outside
    write_coco(tmp_path / "coco", imgs, ("car", "truck"))
    code, out, err = await cli(*up(server, tmp_path / "coco", tmp_path,
                                   project="Vehicle detection"), token=token)
    assert code == 0, out + err
    assert summary(out)["shapes"] == "2 clipped, 1 dropped: see the report"
    assert (f"format: {tmp_path / 'coco'} is a COCO dataset: found "
            "annotations/instances_train.json") in out


async def test_quiet_prints_only_failures_and_the_summary(server, token, tmp_path):
    data = tmp_path / "data"
    make_labelled_tree(data, ["cat", "dog"], 6)
    (data / "cat" / "broken.jpg").write_bytes(b"nope")
    args = up(server, data, tmp_path, "-q")
    for attempt in ("first", "resume"):
        code, out, err = await cli(*args, token=token)
        assert code == 1, err
        lines = out.splitlines()
        start = lines.index("--- summary ---")
        [failed] = lines[:start]                # nothing else before the summary
        broken = os.path.realpath(data / "cat" / "broken.jpg")
        assert failed.startswith(f"FAILED {broken}: not a readable image"), attempt
        assert err == "", err
    assert summary(out)["skipped"] == "6"


async def test_every_option_with_a_config_key_names_its_environment_variable(
        server, token, tmp_path):
    code, out, _ = await cli("upload", "--help")
    assert code == 0
    text = " ".join(out.split())
    flagged = {k for k in KEYS if f"--{k.split('.', 1)[1].replace('_', '-')} " in text}
    assert len(flagged) >= 25
    for key in flagged:
        assert f"[env {env_name(key)}" in text, key
    assert "target.NAME is GETI_NAME" in text and "GETI_BULK_NAME" in text
    # and the rule is true: a switch, a list and a duration from the environment
    real = tmp_path / "real"
    files = make_labelled_tree(real, ["cat"], 4)
    links = tmp_path / "links" / "cat"
    links.mkdir(parents=True)
    for f in files:
        (links / f.name).symlink_to(f)
    code, out, err = await cli(*up(server, links.parent, tmp_path), token=token, env_extra={
        "GETI_BULK_FOLLOW_SYMLINKS": "yes", "GETI_BULK_EXCLUDE": "*_00001.*;*_00002.*",
        "GETI_BULK_MAX_OUTAGE": "30s"})
    assert code == 0, err
    assert server.store.count() == 2
    code, _, err = await cli(*up(server, links.parent, tmp_path), token=token,
                             env_extra={"GETI_BULK_HASH": "maybe"})
    assert code == 2 and err.splitlines() == [
        "geti-bulk: error: GETI_BULK_HASH: must be 1/0, true/false or yes/no, not 'maybe'"]


def test_outage_lines_read_as_sentences():
    gateway = TransientError("server answered 503 upstream connect error or disconnect/reset "
                             "before headers. reset reason: overflow", status=503)
    assert outage_text(gateway) == (
        "the server's gateway answers 503 for every upload (upstream connect error or "
        "disconnect/reset before headers. reset reason: overflow)")
    refused = TransientError("cannot connect to http://h:1: Connection refused", cause="connect")
    assert outage_text(refused) == ("the server cannot be reached (cannot connect to "
                                    "http://h:1: Connection refused)")
