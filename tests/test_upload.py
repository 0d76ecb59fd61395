"""The main job end to end: the real uploader against the real local server."""

from __future__ import annotations

import json
import os

import pytest

from geti_bulk.events import FileDone, FileFailed, FileQueued, FileSkipped, RunFinished
from geti_bulk.sampledata import image_bytes, make_labelled_tree
from tests.conftest import label_ids, make_cfg, project_info, sha256, stored_by_sha, upload


async def test_folder_labels_single_label_classification(server, token, tmp_path):
    data = tmp_path / "data"
    paths = make_labelled_tree(data, ["cat", "dog", "horse"], 24, seed=1)
    result, rec = await upload(make_cfg(server, token, tmp_path, (data,)))
    assert (result.uploaded, result.failed, result.skipped, result.exit_code) == (24, 0, 0, 0)
    ids = label_ids(server, "Pets classification")
    by_sha = stored_by_sha(server)
    training = next(d["id"] for d in project_info(server, "Pets classification")["datasets"]
                    if d["use_for_training"])
    for p in paths:
        [record] = by_sha[sha256(p)]          # stored once, byte for byte
        assert record.label_ids == (ids[p.parent.name],)
        assert record.name == p.stem
        assert record.dataset_id == training
    assert server.store.duplicate_groups() == []
    done = {e.path for e in rec.events if isinstance(e, FileDone)}
    assert done == {os.path.realpath(p) for p in paths}     # each file's identity


async def test_subset_folders_are_not_labels(server, token, tmp_path):
    data = tmp_path / "data"
    make_labelled_tree(data / "train", ["cat"], 2, seed=2)
    make_labelled_tree(data / "val", ["dog"], 2, seed=3)
    result, _ = await upload(make_cfg(server, token, tmp_path, (data,)))
    ids = label_ids(server, "Pets classification")
    assert result.uploaded == 4
    labels = sorted(r.label_ids for r in server.store.list_media())
    assert labels == sorted([(ids["cat"],)] * 2 + [(ids["dog"],)] * 2)


async def test_anomaly_project_takes_normal_and_anomalous(server, token, tmp_path):
    data = tmp_path / "data"
    make_labelled_tree(data, ["Normal", "Anomalous"], 6, seed=4)
    result, _ = await upload(make_cfg(server, token, tmp_path, (data,),
                                      project="Anomaly inspection"))
    assert result.uploaded == 6 and result.failed == 0
    ids = label_ids(server, "Anomaly inspection")
    assert {r.label_ids for r in server.store.list_media()} == {(ids["Normal"],), (ids["Anomalous"],)}


async def test_multi_label_manifest_csv_and_jsonl(server, token, tmp_path):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i in range(4):
        (imgs / f"m{i}.jpg").write_bytes(image_bytes(64, 64, seed=i))
    csv = tmp_path / "labels.csv"
    csv.write_text("path,labels\nimgs/m0.jpg,indoor;person\nimgs/m1.jpg,outdoor\n")
    jl = tmp_path / "more.jsonl"
    jl.write_text(json.dumps({"path": "imgs/m2.jpg", "labels": ["outdoor", "person"]}) + "\n"
                  + json.dumps({"path": str(imgs / "m3.jpg"), "labels": []}) + "\n")
    result, _ = await upload(make_cfg(server, token, tmp_path, manifests=(csv, jl),
                                      project="Attributes multi-label"))
    assert (result.uploaded, result.failed) == (4, 0)
    ids = label_ids(server, "Attributes multi-label")
    got = {r.name: set(r.label_ids) for r in server.store.list_media()}
    assert got == {"m0": {ids["indoor"], ids["person"]}, "m1": {ids["outdoor"]},
                   "m2": {ids["outdoor"], ids["person"]}, "m3": set()}


async def test_exclusive_labels_in_manifest_fail_that_row_only(server, token, tmp_path):
    (tmp_path / "a.jpg").write_bytes(image_bytes(64, 64, seed=1))
    (tmp_path / "b.jpg").write_bytes(image_bytes(64, 64, seed=2))
    m = tmp_path / "m.csv"
    m.write_text("path,labels\na.jpg,cat|dog\nb.jpg,dog\n,cat\n")
    result, rec = await upload(make_cfg(server, token, tmp_path, manifests=(m,)))
    assert (result.uploaded, result.failed, result.exit_code) == (1, 2, 1)
    reasons = {e.path: e.reason for e in rec.events if isinstance(e, FileFailed)}
    assert "mutually exclusive" in reasons[os.path.realpath(tmp_path / "a.jpg")]
    # the row's line is its path in the report
    assert reasons[f"{os.path.realpath(m)}:4"] == "empty path"


async def test_unknown_labels_listed_all_at_once_before_any_upload(server, token, tmp_path):
    data = tmp_path / "data"
    make_labelled_tree(data, ["cat", "zebra", "unicorn"], 6)
    result, rec = await upload(make_cfg(server, token, tmp_path, (data,)))
    assert result.exit_code == 3
    assert "unicorn" in result.fatal and "zebra" in result.fatal and "cat, dog, horse" in result.fatal
    assert server.store.count() == 0
    assert not [e for e in rec.events if isinstance(e, FileQueued)]


@pytest.mark.parametrize("project", ["Vehicle detection", "Detection then classification"])
async def test_labels_on_detection_stop_unless_labels_none(server, token, tmp_path, project):
    data = tmp_path / "data"
    make_labelled_tree(data, ["car", "truck"], 4)
    result, _ = await upload(make_cfg(server, token, tmp_path, (data,), project=project))
    assert result.exit_code == 3 and "--labels none" in result.fatal
    assert server.store.count() == 0
    result, _ = await upload(make_cfg(server, token, tmp_path, (data,), project=project,
                                      labels="none"))
    assert (result.uploaded, result.exit_code) == (4, 0)
    assert all(r.label_ids == () for r in server.store.list_media())


async def test_bad_inputs_fail_per_file_and_the_rest_uploads(server, token, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    good = data / "good.jpg"
    good.write_bytes(image_bytes(64, 64))
    (data / "empty.jpg").write_bytes(b"")
    (data / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    (data / "text.jpg").write_bytes(b"this is not an image at all")
    (data / "tiny.jpg").write_bytes(image_bytes(16, 16))
    (data / "notes.txt").write_text("readme")                   # not media: ignored
    (data / "anim.gif").write_bytes(b"GIF89a" + b"\0" * 64)       # media Geti refuses
    (data / "clip.mp4").write_bytes(b"not a video container")
    (data / ".hidden.jpg").write_bytes(image_bytes(64, 64))     # dot-files are skipped
    result, rec = await upload(make_cfg(server, token, tmp_path, (data,)))
    reasons = {e.path.split("/")[-1]: e.reason for e in rec.events if isinstance(e, FileFailed)}
    assert set(reasons) == {"empty.jpg", "corrupt.png", "text.jpg", "tiny.jpg", "anim.gif", "clip.mp4"}
    assert "empty" in reasons["empty.jpg"]
    assert "16x16" in reasons["tiny.jpg"] and "32" in reasons["tiny.jpg"]
    assert "unsupported file type .gif" in reasons["anim.gif"] and result.ignored == 1
    assert "not a readable image" in reasons["text.jpg"]
    assert ".mp4" in reasons["clip.mp4"]
    assert (result.uploaded, result.failed, result.exit_code) == (1, 6, 1)
    assert [r.sha256 for r in server.store.list_media()] == [sha256(good)]
    report = [json.loads(x) for x in (tmp_path / "report.jsonl").read_text().splitlines()]
    assert sorted(r["status"] for r in report) == ["failed"] * 6 + ["uploaded"]


async def test_include_exclude_globs(server, token, tmp_path):
    data = tmp_path / "data"
    make_labelled_tree(data, ["cat", "dog"], 8, png_every=3)
    result, _ = await upload(make_cfg(server, token, tmp_path, (data,), include=("*.jpg",),
                                      exclude=("dog/*",)))
    assert result.uploaded == 3   # cat_0, cat_4, cat_6: the cat jpgs only
    assert {r.original_filename.split(".")[-1] for r in server.store.list_media()} == {"jpg"}
    assert all(r.name.startswith("cat") for r in server.store.list_media())


@pytest.mark.skipif(os.name != "posix", reason="symlinks")
async def test_symlinks_skipped_or_followed_without_looping(server, token, tmp_path):
    data = tmp_path / "data"
    make_labelled_tree(data, ["cat"], 2)
    outside = tmp_path / "outside"
    make_labelled_tree(outside, ["dog"], 3)
    (data / "dog").symlink_to(outside / "dog")
    (data / "cat" / "loop").symlink_to(data)                 # a loop back to the root
    (data / "cat" / "broken.jpg").symlink_to(tmp_path / "nowhere.jpg")
    result, _ = await upload(make_cfg(server, token, tmp_path, (data,)))
    assert (result.uploaded, result.failed) == (2, 0)        # links skipped by default
    result, rec = await upload(make_cfg(server, token, tmp_path, (data,), follow_symlinks=True,
                                        journal=tmp_path / "j2.sqlite"))
    fails = {e.path: e.reason for e in rec.events if isinstance(e, FileFailed)}
    assert result.uploaded == 5                              # 2 cats + 3 dogs via the link
    assert any("broken symlink" in r for r in fails.values())
    assert any("symlink loop" in r for r in fails.values())


async def test_dry_run_sends_nothing(server, token, tmp_path):
    data = tmp_path / "data"
    make_labelled_tree(data, ["cat", "dog"], 4)
    result, rec = await upload(make_cfg(server, token, tmp_path, (data,), dry_run=True))
    assert result.exit_code == 0 and server.store.count() == 0
    skipped = [e for e in rec.events if isinstance(e, FileSkipped)]
    assert len(skipped) == 4 and all(e.reason.startswith("dry run: would upload") for e in skipped)
    assert not (tmp_path / "journal.sqlite").exists()
    assert isinstance(rec.events[-1], RunFinished)


async def test_dataset_and_project_by_id_and_name(server, token, tmp_path):
    data = tmp_path / "data"
    make_labelled_tree(data, ["cat"], 2)
    info = project_info(server, "Pets classification")
    holdout = next(d for d in info["datasets"] if d["name"] == "Holdout")
    result, _ = await upload(make_cfg(server, token, tmp_path, (data,), project=info["id"],
                                      dataset="Holdout"))
    assert result.uploaded == 2
    assert {r.dataset_id for r in server.store.list_media()} == {holdout["id"]}
    result, _ = await upload(make_cfg(server, token, tmp_path, (data,), project="No such project",
                                      journal=tmp_path / "j2"))
    assert result.exit_code == 3 and "no project named 'No such project'" in result.fatal
    assert "Pets classification" in result.fatal
    result, _ = await upload(make_cfg(server, token, tmp_path, (data,), dataset="Nope",
                                      journal=tmp_path / "j3"))
    assert result.exit_code == 3 and "'Dataset'" in result.fatal and "'Holdout'" in result.fatal


async def test_every_byte_matches_for_a_mixed_tree_with_video(server, token, tmp_path):
    from geti_bulk.server.samples import avi_bytes  # a real MJPEG AVI

    data = tmp_path / "data"
    make_labelled_tree(data, ["cat", "dog"], 10, png_every=3)
    (data / "cat" / "clip.avi").write_bytes(avi_bytes())
    result, _ = await upload(make_cfg(server, token, tmp_path, (data,)))
    assert (result.uploaded, result.failed) == (11, 0)
    local = {sha256(p) for p in data.rglob("*") if p.is_file()}
    assert set(stored_by_sha(server)) == local
    assert {r.type for r in server.store.list_media()} == {"image", "video"}
