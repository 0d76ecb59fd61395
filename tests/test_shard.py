"""`--shard K/N`: shards are disjoint and together complete, over folders and datasets,
wherever the tree is mounted; each shard keeps its own journal, a journal refuses another
shard, `status` merges shards, and four shard processes share an overloaded server."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from geti_bulk.config import build
from geti_bulk.errors import ConfigError
from geti_bulk.sampledata import image_bytes
from geti_bulk.scan import ScanOptions, iter_jobs
from geti_bulk.shard import Shard, parse_shard, shard_of
from tests.conftest import admin_stats, make_cfg, upload
from tests.datasets import sample_images, write_coco
from tests.test_annotations import DETECTION, LABELS, assert_all_annotated
from tests.test_cli import run_cli

N = 4


def make_tree(root: Path, files: int) -> list[str]:
    """A classification tree of real images, nested at several depths, with a train/val
    level, a deeper folder and a non-ASCII name: the relative paths it holds."""
    rels = []
    for i in range(files):
        label = ("cat", "dog", "horse")[i % 3]
        sub = ("train", "val")[i % 2]
        deep = f"/batch{i % 5}" if i % 4 == 0 else ""
        name = f"{label}_{i:04d}.jpg" if i % 17 else f"{label}_é{i:04d}.jpg"
        rel = f"{sub}/{label}{deep}/{name}"
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(image_bytes(40, 36, seed=i))
        rels.append(rel)
    return rels


def scan_rels(root: Path, shard: Shard | None) -> list[str]:
    """The paths (relative to `root`) of the files a scan of this shard yields."""
    jobs = iter_jobs([root], [], ScanOptions(shard=shard))
    return [j.rel for j in jobs]


def rel_in(row_path: str, root: Path) -> str:
    """A report row's file, relative to the source argument `root` (the row names it by
    its journal key: "<root name>/<rel>", or its absolute path)."""
    if os.path.isabs(row_path):
        return Path(row_path).relative_to(root.resolve()).as_posix()
    return row_path.split("/", 1)[1]


# --- the split itself ---------------------------------------------------------------

def test_shard_spec_is_zero_based_and_errors_name_the_key():
    assert parse_shard("0/4") == Shard(0, 4) and parse_shard(" 3 / 4 ") == Shard(3, 4)
    assert parse_shard("") is None
    with pytest.raises(ConfigError, match=r"upload -> shard: .*4/4 is out of range; the last "
                                          r"of 4 is 3/4"):
        parse_shard("4/4")
    with pytest.raises(ConfigError, match="expected K/N"):
        parse_shard("1of4")
    with pytest.raises(ConfigError, match="N must be at least 1"):
        parse_shard("0/0")
    # env (GETI_BULK_SHARD) < flag, as for the other options
    env = {"GETI_TOKEN": "t", "GETI_HOST": "http://h", "GETI_BULK_SHARD": "2/4"}
    cfg = build({"target.project": "p"}, env, sources=(Path("."),))
    assert cfg.shard == Shard(2, 4)
    cfg = build({"target.project": "p", "upload.shard": "1/4"}, env, sources=(Path("."),))
    assert cfg.shard == Shard(1, 4)
    # N shards share the default ceiling of one run (64 adaptive, 8 fixed), never below 2
    # each; an explicit --concurrency, GETI_BULK_CONCURRENCY or config value is kept as it is
    assert cfg.concurrency == 16 and cfg.concurrency_auto
    assert build({"target.project": "p", "upload.shard": "0/3"}, env,
                 sources=(Path("."),)).concurrency == 22
    assert build({"target.project": "p", "upload.adaptive": False}, env,
                 sources=(Path("."),)).concurrency == 2
    assert build({"target.project": "p", "upload.shard": "0/5", "upload.adaptive": False},
                 env, sources=(Path("."),)).concurrency == 2
    assert build({"target.project": "p"}, {**env, "GETI_BULK_SHARD": ""},
                 sources=(Path("."),)).concurrency == 64
    assert build({"target.project": "p", "upload.concurrency": 8}, env,
                 sources=(Path("."),)).concurrency == 8
    assert build({"target.project": "p"}, {**env, "GETI_BULK_CONCURRENCY": "6"},
                 sources=(Path("."),)).concurrency == 6


# shard of each path among 7, as rclone v1.75.2 computed it:
# `rclone lsf -R --files-only --hash-filter K/7 DIR` for K = 0 … 6
RCLONE_7 = {"crème/2.jpg": 0, "UPPER/ÄÖÜ.jpg": 2, "café/1.jpg": 2, "a.png": 3,
            "JPEGImages/2007_000027.jpg": 3, "deep/a/b/c/d.jpg": 3,
            "images/train/000000000139.jpg": 3, "train/Cat/B.JPG": 3, "val/dog/x y.png": 5,
            "cat/a.jpg": 6}


def test_the_split_is_rclones_hash_filter():
    import hashlib
    import unicodedata

    for rel, k in RCLONE_7.items():
        assert shard_of(rel, 7) == k, rel
        assert shard_of(unicodedata.normalize("NFD", rel), 7) == k    # macOS spelling
        assert shard_of("./" + rel, 7) == k                           # as a manifest may write it
    # and the rule, spelled out: NFC, lower case, md5, first 8 bytes little-endian, mod N
    for rel in RCLONE_7:
        name = unicodedata.normalize("NFC", rel).lower().encode()
        assert shard_of(rel, 5) == int.from_bytes(hashlib.md5(name).digest()[:8], "little") % 5


@pytest.mark.skipif(not shutil.which(os.environ.get("GETI_BULK_RCLONE", "rclone")),
                    reason="rclone (v1.70+, with --hash-filter) is not installed")
def test_each_shard_lists_what_rclone_hash_filter_lists(tmp_path):
    import subprocess

    rclone = shutil.which(os.environ.get("GETI_BULK_RCLONE", "rclone")) or "rclone"
    root = tmp_path / "tree"
    make_tree(root, 120)
    for k in range(N):
        out = subprocess.run([rclone, "lsf", "-R", "--files-only", "--hash-filter", f"{k}/{N}",
                              str(root)], capture_output=True, text=True, check=True).stdout
        assert sorted(out.splitlines()) == sorted(scan_rels(root, Shard(k, N)))


def test_folder_shards_are_disjoint_complete_and_mount_independent(tmp_path):
    rels = make_tree(tmp_path / "a" / "train_set", 300)
    whole = scan_rels(tmp_path / "a" / "train_set", None)
    assert sorted(whole) == sorted(rels)
    parts = [scan_rels(tmp_path / "a" / "train_set", Shard(k, N)) for k in range(N)]
    union = Counter(r for p in parts for r in p)
    assert set(union) == set(rels) and max(union.values()) == 1      # complete, disjoint
    assert all(40 <= len(p) <= 110 for p in parts), [len(p) for p in parts]   # ~75 each
    # the same tree elsewhere, under another folder name, and through a symlink
    other = tmp_path / "mnt" / "elsewhere" / "copy"
    shutil.copytree(tmp_path / "a" / "train_set", other)
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "a" / "train_set")
    for moved in (other, link):
        assert [sorted(scan_rels(moved, Shard(k, N))) for k in range(N)] == \
            [sorted(p) for p in parts]


def test_problem_rows_belong_to_exactly_one_shard(tmp_path):
    """A file that cannot be read (here a dangling symlink, followed) is one failed row
    in its own shard, and in no other."""
    root = tmp_path / "tree"
    root.mkdir()
    for i in range(40):
        (root / f"gone_{i}.jpg").symlink_to(tmp_path / "nowhere" / f"{i}.jpg")
    jobs = [list(iter_jobs([root], [], ScanOptions(follow_symlinks=True, shard=Shard(k, N))))
            for k in range(N)]
    keys = Counter(j.key for part in jobs for j in part)
    assert len(keys) == 40 and max(keys.values()) == 1
    assert all(j.problem == "broken symlink" for part in jobs for j in part)


# --- real runs against the local server -----------------------------------------------

async def test_shards_over_a_folder_tree_upload_everything_once(server, token, tmp_path):
    """Shards 0 and 1 run on the tree where it is; shards 2 and 3 on a copy mounted
    elsewhere under another name, as on another machine: together, every file once."""
    data = tmp_path / "tree"
    rels = make_tree(data, 160)
    elsewhere = tmp_path / "mnt" / "nfs" / "dataset-copy"
    shutil.copytree(data, elsewhere)
    keys: list[str] = []
    for k in range(N):
        src = data if k < 2 else elsewhere
        cfg = make_cfg(server, token, tmp_path, (src,), shard=Shard(k, N),
                       journal=tmp_path / f"j{k}.sqlite", report=tmp_path / f"r{k}.jsonl")
        result, _ = await upload(cfg)
        assert result.exit_code == 0 and result.failed == 0
        rows = [json.loads(x) for x in (tmp_path / f"r{k}.jsonl").read_text().splitlines()]
        assert {r["status"] for r in rows} == {"uploaded"}
        assert all(shard_of(rel_in(r["path"], src), N) == k for r in rows)
        keys += [rel_in(r["path"], src) for r in rows]
    assert Counter(keys) == Counter(rels)
    assert server.store.count() == len(rels) and server.store.duplicate_groups() == []
    # a rerun of one shard finds its files in its journal and sends nothing
    before = (await admin_stats(server))["media_total"]
    result, _ = await upload(make_cfg(server, token, tmp_path, (elsewhere,), shard=Shard(2, N),
                                      journal=tmp_path / "j2.sqlite"))
    assert result.uploaded == 0 and result.skipped > 0
    assert (await admin_stats(server))["media_total"] == before


async def test_shards_over_a_coco_dataset_store_each_image_once_with_its_boxes(
        server, token, tmp_path):
    imgs = sample_images(40)
    root = tmp_path / "coco"
    write_coco(root, imgs, LABELS)
    done = 0
    for k in range(N):
        cfg = make_cfg(server, token, tmp_path, (root,), project=DETECTION, shard=Shard(k, N),
                       journal=tmp_path / f"j{k}.sqlite", report=tmp_path / f"r{k}.jsonl")
        result, _ = await upload(cfg)
        assert result.exit_code == 0, result.fatal
        rows = [json.loads(x) for x in (tmp_path / f"r{k}.jsonl").read_text().splitlines()]
        # the path inside the dataset (images/<subset>/<name>) decides the shard
        assert all(shard_of(rel_in(r["path"], root), N) == k for r in rows)
        assert 0 < result.uploaded < len(imgs)
        done += result.uploaded
    assert done == len(imgs)
    await assert_all_annotated(server, token, imgs)


def _files(server) -> Counter[str]:
    return Counter(r.name for r in server.store.list_media())


async def test_a_journal_refuses_another_shard_with_one_line(server, token, tmp_path):
    data = tmp_path / "tree"
    make_tree(data, 24)
    j = tmp_path / "j.sqlite"
    base = ["upload", str(data), "--host", server.base_url, "--project", "Pets classification",
            "--journal", str(j), "--progress", "none"]
    code, _, err = await run_cli(*base, "--shard", "0/2", token=token)
    assert code == 0, err
    stored = _files(server)
    conn = sqlite3.connect(j)
    meta = dict(conn.execute("SELECT k, v FROM meta"))
    conn.close()
    assert meta["shard"] == "0/2" and meta["shard_rule"].startswith("rclone hash-filter")
    for other in (["--shard", "1/2"], ["--shard", "0/3"], [], ["--shard", "1/2", "--dry-run"]):
        code, out, err = await run_cli(*base, *other, token=token)
        assert code == 2, (other, out, err)
        [line] = err.strip().splitlines()
        assert line.startswith(f"geti-bulk: error: journal: {j} belongs to --shard 0/2")
        assert "each shard keeps its own journal" in line and "Traceback" not in err
    # the same with GETI_BULK_SHARD, as the Kubernetes recipe passes it
    code, _, err = await run_cli(*base, token=token, env_extra={"GETI_BULK_SHARD": "1/2"})
    assert code == 2 and "this run is --shard 1/2" in err
    assert _files(server) == stored                 # none of them sent anything
    # a journal split by another rule (another geti-bulk) is not resumed with this one
    conn = sqlite3.connect(j)
    conn.execute("UPDATE meta SET v = 'sha1 v0' WHERE k = 'shard_rule'")
    conn.commit()
    conn.close()
    code, _, err = await run_cli(*base, "--shard", "0/2", token=token)
    assert code == 2 and "split by another rule (sha1 v0)" in err
    assert _files(server) == stored
    # an unsharded journal refuses a shard too
    j2 = tmp_path / "plain.sqlite"
    base2 = [*base[:-4], "--journal", str(j2), "--progress", "none"]
    code, _, err = await run_cli(*base2, token=token)
    assert code == 0, err
    code, _, err = await run_cli(*base2, "--shard", "0/2", token=token)
    assert code == 2 and "belongs to an unsharded run, and this run is --shard 0/2" in err


async def test_default_journals_are_per_shard_and_status_merges_them(server, token, tmp_path):
    data = tmp_path / "tree"
    rels = make_tree(data, 60)
    broken = data / "train" / "cat" / "zz_broken.jpg"
    broken.write_bytes(b"not an image")
    state = tmp_path / "state"
    env = {"XDG_STATE_HOME": str(state)}
    base = ["upload", str(data), "--host", server.base_url, "--project", "Pets classification",
            "--progress", "none"]
    # dry run first: it names the shard and counts only its files
    code, out, err = await run_cli(*base, "--shard", "1/4", "--dry-run", "--progress", "plain",
                                   token=token, env_extra=env)
    assert code in (0, 1), err
    mine = sum(1 for r in [*rels, "train/cat/zz_broken.jpg"] if shard_of(r, 4) == 1)
    assert "shard 1/4: only the files whose path" in out
    assert f"scan done: {mine} files" in out
    codes = []
    for k in range(4):
        code, _, err = await run_cli(*base, "--shard", f"{k}/4", token=token, env_extra=env)
        codes.append(code)
    broken_shard = shard_of("train/cat/zz_broken.jpg", 4)
    assert codes == [1 if k == broken_shard else 0 for k in range(4)]
    journals = sorted((state / "geti-bulk" / "journals").glob("*.sqlite"))
    assert [p.name.rsplit("-shard-", 1)[1] for p in journals] == \
        [f"{k}-of-4.sqlite" for k in range(4)]
    code, out, err = await run_cli("status", *map(str, journals), env_extra=env)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "4 journals: shards 0/4, 1/4, 2/4, 3/4"
    assert f"  {len(rels) + 1} files: {len(rels)} uploaded, 0 skipped, 1 failed, 0 sending" \
        in lines
    per_shard = [ln for ln in lines if ln.startswith("  shard ")]
    assert len(per_shard) == 4
    assert sum(int(ln.split()[2]) for ln in per_shard) == len(rels) + 1
    [failed] = [ln for ln in lines if "FAILED" in ln]
    assert failed.startswith(f"  FAILED [shard {broken_shard}/4] ")
    assert failed.split(": ", 1)[0].endswith("tree/train/cat/zz_broken.jpg")
    assert "warning" not in out
    # two of the four: the rest are named as missing
    code, out, _ = await run_cli("status", str(journals[0]), str(journals[2]), env_extra=env)
    assert code == 0
    assert "warning: 2 of 4 shards have no journal here: 1/4, 3/4" in out
    # one journal named twice (once through a symlink) is counted once
    link = tmp_path / "again.sqlite"
    link.symlink_to(journals[0])
    _, once, _ = await run_cli("status", str(journals[0]), env_extra=env)
    code, out, _ = await run_cli("status", str(journals[0]), str(link), env_extra=env)
    assert code == 0 and out.splitlines()[:-1] == once.splitlines()
    assert "1 journal path(s) named a journal already given" in out.splitlines()[-1]
    # one that is not a journal: one line, exit 2
    (tmp_path / "x.txt").write_text("hello")
    code, _, err = await run_cli("status", str(journals[0]), str(tmp_path / "x.txt"))
    assert code == 2 and err.strip().endswith("x.txt: not a geti-bulk journal")


# --- four shard processes at once against one overloaded server ---------------------------

async def test_four_shard_processes_share_an_oom_prone_server(tmp_path, token):
    """An upload service of 4 workers (20 ms each, 20 ms away) that holds 12 uploads and is
    OOM-killed by a 13th. Four shard processes start together with their defaults (each
    adaptive under a quarter of one run's ceiling, with no slow start or trials, a
    quarter of the thresholds and of the additive step: together they grow as one run):
    every file lands exactly once and the service is never knocked over (it was in 1 run
    of 3 with whole steps, and 3 of 4 with this session's limiter before that change). (With --concurrency 8 each, 32 in all,
    their four limiters do knock it over: benchmarks/shards.py measures both.)"""
    from geti_bulk.server import LocalGeti, ServerConfig

    data = tmp_path / "tree"
    rels = make_tree(data, 320)
    srv = LocalGeti(ServerConfig(data_dir=tmp_path / "srv", token=token, max_inflight=12,
                                 workers=4, service_ms=20, restart_ms=500, latency_ms=20,
                                 decode_images=False))
    async with srv:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GETI_")}
        env["GETI_TOKEN"] = token
        procs = []
        for k in range(N):
            procs.append(await asyncio.create_subprocess_exec(
                sys.executable, "-m", "geti_bulk.cli", "upload", str(data), "--host",
                srv.base_url, "--project", "Pets classification", "--shard", f"{k}/{N}",
                "--journal", str(tmp_path / f"j{k}.sqlite"), "--progress", "none",
                env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE))
        outs = [await asyncio.wait_for(p.communicate(), 300) for p in procs]
        assert [p.returncode for p in procs] == [0] * N, [o[1].decode()[-500:] for o in outs]
        names = Counter(f"{r.name}" for r in srv.store.list_media())
        assert srv.store.count() == len(rels)
        assert srv.store.duplicate_groups() == []
        assert max(names.values()) == 1
        assert srv.state.service.restarts == 0, "an OOM kill: the shards overloaded the server"
        # they did run at once: one process holds at most 2
        assert 2 < srv.state.service.peak_inflight <= 12
        stats = await admin_stats(srv)
        assert stats["duplicates"] == 0 and stats.get("restarts", 0) == 0


@pytest.mark.parametrize("fmt", ["coco", "yolo", "voc", "datumaro"])
def test_each_dataset_reader_lists_only_its_shards_items(tmp_path, fmt):
    """The readers drop other shards' items by their path in the dataset before reading
    their annotation (YOLO's label file, VOC's XML, Datumaro's item): the shards are
    disjoint and complete, and a shard's reader counts only its own items."""
    from geti_bulk.sources.detect import open_reader
    from tests.test_annotations import WRITERS

    root = tmp_path / fmt
    WRITERS[fmt](root, sample_images(30))

    def listed(shard: Shard | None) -> tuple[list[str], int]:
        reader = open_reader(root, fmt, tmp_path / "index")
        try:
            reader.wanted = shard.wants if shard is not None else None
            rels = [item.rel for item in reader.items()]
            return rels, reader.stats.images
        finally:
            reader.close()

    whole, _ = listed(None)
    assert len(whole) == 30
    parts = [listed(Shard(k, N)) for k in range(N)]
    union = Counter(r for rels, _ in parts for r in rels)
    assert set(union) == set(whole) and max(union.values()) == 1
    assert all(shard_of(r, N) == k for k, (rels, _) in enumerate(parts) for r in rels)
    if fmt != "coco":     # COCO counts its images while indexing the whole file
        assert [n for _, n in parts] == [len(rels) for rels, _ in parts]


def test_manifest_rows_split_like_the_tree_they_name(tmp_path):
    """A manifest's rows split by the path as written; a manifest at the tree's root
    names each file by the same relative path a walk finds, so both split alike. A bad
    row is one failed row in exactly one shard."""
    root = tmp_path / "tree"
    rels = make_tree(root, 80)
    manifest = root / "files.csv"
    manifest.write_text("path,labels\n" + "".join(f"./{r},cat\n" for r in rels) + ",\n")
    for k in range(N):
        jobs = list(iter_jobs([], [manifest], ScanOptions(shard=Shard(k, N))))
        good = sorted(j.rel.removeprefix("./") for j in jobs if not j.problem)
        assert good == sorted(r for r in scan_rels(root, Shard(k, N)) if r != "files.csv")
    bad = [j for k in range(N) for j in iter_jobs([], [manifest], ScanOptions(shard=Shard(k, N)))
           if j.problem]
    assert len(bad) == 1 and "empty path" in (bad[0].problem or "")


def test_merged_status_names_what_keeps_journals_from_being_one_split(tmp_path):
    from geti_bulk.status import JournalView, merged

    def view(name: str, shard: str, target: str = "h / p / d", **counts: int) -> JournalView:
        return JournalView(tmp_path / name, target, shard, counts)

    lines = merged([view("a", "0/2", uploaded=3), view("b", "1/2", uploaded=2, failed=1)])
    assert lines[:3] == ["2 journals: shards 0/2, 1/2", "  target: h / p / d",
                         "  6 files: 5 uploaded, 0 skipped, 1 failed, 0 sending"]
    assert not any("warning" in ln for ln in lines)
    lines = merged([view("a", "0/2"), view("b", "0/2"), view("c", "1/2", target="other")])
    assert any("warning: the journals are for different targets" in ln for ln in lines)
    assert any("shard 0/2 appears 2 times" in ln for ln in lines)
    lines = merged([view("a", "0/2"), view("b", "1/4")])
    assert any("different numbers of shards (2, 4)" in ln for ln in lines)
    # an unsharded journal beside shards: a split into 1
    lines = merged([view("a", "0/1"), view("b", "0/2")])
    assert any("different numbers of shards (1, 2)" in ln for ln in lines)


# --- auto-training is shared by the shards: the last to finish puts it back ----------------

async def test_shards_leave_auto_training_off_until_the_last_one_finishes(tmp_path, token):
    """Three shard processes post annotations into one project at once. The project's
    auto-training is one setting, so the first shard to finish must not switch it back on
    while the others still post: no annotation may arrive while it is on, and once all
    three are done it is on again, as it was."""
    import aiohttp

    from geti_bulk.server import LocalGeti, ServerConfig
    from tests.datasets import write_yolo

    imgs = sample_images(90)
    write_yolo(tmp_path / "yolo", imgs, LABELS)
    srv = LocalGeti(ServerConfig(data_dir=tmp_path / "srv", token=token, latency_ms=60))
    async with srv:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GETI_")}
        env["GETI_TOKEN"] = token
        def spawn(k: int, *extra: str) -> Any:
            return asyncio.create_subprocess_exec(
                sys.executable, "-m", "geti_bulk.cli", "upload", str(tmp_path / "yolo"),
                "--host", srv.base_url, "--project", DETECTION, "--shard", f"{k}/3",
                "--journal", str(tmp_path / f"run-shard-{k}-of-3.sqlite"),
                "--progress", "plain", *extra,
                env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)

        # shard 0 switches auto-training off first and is the first to finish; shards 1
        # and 2 start once it posts and send one file at a time, so they post after it ends
        procs = [await spawn(0)]
        for _ in range(600):
            if (await admin_stats(srv))["annotations"]["posts"] or \
                    procs[0].returncode is not None:
                break
            await asyncio.sleep(0.02)
        procs += [await spawn(k, "--concurrency", "1") for k in (1, 2)]
        outs = [await asyncio.wait_for(p.communicate(), 300) for p in procs]
        assert [p.returncode for p in procs] == [0] * 3, [o[1].decode()[-500:] for o in outs]
        texts = [o[0].decode() for o in outs]
        stats = await admin_stats(srv)
        assert stats["annotations"]["posted_with_auto_training_on"] == 0
        assert sum("auto-training: left off (shard(s)" in t for t in texts) >= 1, texts
        info = next(p for p in srv.info["projects"] if p["name"] == DETECTION)
        path = (f"/api/v1/organizations/{srv.info['organization_id']}/workspaces/"
                f"{srv.info['workspace_id']}/projects/{info['id']}/project_configuration")
        async with aiohttp.ClientSession() as s, s.get(srv.base_url + path,
                                                       headers={"x-api-key": token}) as r:
            conf = await r.json()
        enabled = [p["value"] for t in conf["task_configs"] for p in t["auto_training"]
                   if p["key"] == "enable"]
        assert enabled and all(enabled), "the last shard put auto-training back on"
    assert not any("switch it back on in Geti" in t for t in texts)
