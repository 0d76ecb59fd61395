"""A file's identity in the journal (README "Which file is which"): its resolved path.

Each case runs the real CLI against the local server and counts what the server holds:
every file once, nothing missing. The three cases of issue 12, then a symlink, a parent
folder or another argument order in one run, a moved tree and a journal of the older
"<folder name>/<relative path>" keys.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

from geti_bulk.sampledata import make_labelled_tree
from tests.conftest import sha256, stored_by_sha
from tests.test_cli import run_cli

N = 8   # files per tree


def tree(base: Path, rel: str, seed: int) -> list[Path]:
    """`base/<rel>/{cat,dog}/<label>_0000n.jpg`: every tree has the same file names."""
    return make_labelled_tree(base / rel, ["cat", "dog"], N, seed=seed, size=(48, 40))


def args(server, tmp_path: Path, *sources: str, report: str = "r.jsonl") -> list[str]:
    return ["upload", *sources, "--host", server.base_url, "--project", "Pets classification",
            "--journal", str(tmp_path / "j.sqlite"), "--report", str(tmp_path / report),
            "--progress", "plain"]


def assert_exactly_once(server, files: list[Path]) -> None:
    """The server holds each of `files` once, byte for byte, and nothing else."""
    by_sha = stored_by_sha(server)
    assert server.store.duplicate_groups() == [], "a file was stored twice"
    assert sorted(by_sha) == sorted({sha256(p) for p in files}), "a file is missing or extra"
    assert server.store.count() == len(files)


def summary(out: str) -> dict[str, int]:
    got = {}
    for line in out.splitlines():
        for word in ("uploaded", "skipped", "failed"):
            if line.startswith(f"{word}:"):
                got[word] = int(line.split()[1])
    return got


def report_rows(path: Path) -> list[dict[str, object]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def journal_keys(tmp_path: Path) -> dict[str, str]:
    with sqlite3.connect(tmp_path / "j.sqlite") as c:
        return dict(c.execute("SELECT key, state FROM files"))


async def test_a_parent_folder_after_its_subfolder_sends_nothing_again(server, token, tmp_path):
    """Issue 12: `./imagenet/train` then `./imagenet` re-sent everything."""
    files = tree(tmp_path, "imagenet/train", seed=1)
    code, out, err = await run_cli(*args(server, tmp_path, "./imagenet/train"), token=token,
                                   cwd=tmp_path)
    assert code == 0, err
    assert summary(out)["uploaded"] == N
    code, out, err = await run_cli(*args(server, tmp_path, "./imagenet", "--dry-run",
                                         report="dry.jsonl"), token=token, cwd=tmp_path)
    assert code == 0, err
    assert "would upload" not in out and summary(out)["skipped"] == N   # dry run: same rule
    code, out, err = await run_cli(*args(server, tmp_path, "./imagenet"), token=token,
                                   cwd=tmp_path)
    assert code == 0, err
    assert summary(out) == {"uploaded": 0, "skipped": N, "failed": 0}
    assert_exactly_once(server, files)
    # the journal's keys are the files' resolved paths
    assert set(journal_keys(tmp_path)) == {os.path.realpath(p) for p in files}


async def test_a_tree_whose_folder_has_the_same_name_is_uploaded(server, token, tmp_path):
    """Issue 12: `./site2/train` after `./imagenet/train` was skipped as 'changed'."""
    first = tree(tmp_path, "imagenet/train", seed=1)
    second = tree(tmp_path, "site2/train", seed=2)       # same names, other images
    code, _, err = await run_cli(*args(server, tmp_path, "./imagenet/train"), token=token,
                                 cwd=tmp_path)
    assert code == 0, err
    code, out, err = await run_cli(*args(server, tmp_path, "./site2/train"), token=token,
                                   cwd=tmp_path)
    assert code == 0, err
    assert "changed since it was uploaded" not in out
    assert summary(out)["uploaded"] == N
    assert_exactly_once(server, first + second)


async def test_both_trees_in_one_run_have_distinct_rows_and_reruns_add_nothing(
        server, token, tmp_path):
    """Issue 12: both trees in one run gave two report rows with the same path, and each
    rerun with --reupload-changed added duplicates."""
    files = tree(tmp_path, "imagenet/train", seed=1) + tree(tmp_path, "site2/train", seed=2)
    code, out, err = await run_cli(*args(server, tmp_path, "./imagenet/train", "./site2/train"),
                                   token=token, cwd=tmp_path)
    assert code == 0, err
    rows = report_rows(tmp_path / "r.jsonl")
    paths = [r["path"] for r in rows]
    assert len(paths) == 2 * N and len(set(paths)) == 2 * N        # one row per file
    assert set(paths) == {os.path.realpath(p) for p in files}      # readable: the real path
    for _ in range(2):
        code, out, err = await run_cli(*args(server, tmp_path, "./imagenet/train",
                                             "./site2/train", "--reupload-changed"),
                                       token=token, cwd=tmp_path)
        assert code == 0, err
        assert summary(out) == {"uploaded": 0, "skipped": 2 * N, "failed": 0}
    assert_exactly_once(server, files)


async def test_a_symlink_to_a_folder_already_uploaded_sends_nothing(server, token, tmp_path):
    files = tree(tmp_path, "imagenet/train", seed=1)
    (tmp_path / "cats").symlink_to(tmp_path / "imagenet" / "train" / "cat")
    code, _, err = await run_cli(*args(server, tmp_path, "./imagenet/train"), token=token,
                                 cwd=tmp_path)
    assert code == 0, err
    code, out, err = await run_cli(*args(server, tmp_path, "./cats", "--labels", "none"),
                                   token=token, cwd=tmp_path)
    assert code == 0, err
    assert summary(out) == {"uploaded": 0, "skipped": N // 2, "failed": 0}
    assert_exactly_once(server, files)


async def test_a_folder_and_its_parent_in_one_run_in_either_order_upload_once(
        server, token, tmp_path):
    files = tree(tmp_path, "imagenet/train", seed=1)
    code, out, err = await run_cli(*args(server, tmp_path, "./imagenet/train/cat",
                                         "./imagenet/train"), token=token, cwd=tmp_path)
    assert code == 0, err
    assert summary(out) == {"uploaded": N, "skipped": 0, "failed": 0}
    assert_exactly_once(server, files)
    assert "walked once" in out
    # the other order, and the same folder twice: nothing new either
    code, out, err = await run_cli(*args(server, tmp_path, "./imagenet/train", "imagenet/train/",
                                         "./imagenet/train/cat"), token=token, cwd=tmp_path)
    assert code == 0, err
    assert summary(out) == {"uploaded": 0, "skipped": N, "failed": 0}
    assert_exactly_once(server, files)


async def test_a_followed_symlink_to_a_file_of_the_same_run_uploads_it_once(
        server, token, tmp_path):
    files = tree(tmp_path, "imagenet/train", seed=1)
    (tmp_path / "imagenet" / "train" / "dog" / "alias.jpg").symlink_to(files[0])
    code, out, err = await run_cli(*args(server, tmp_path, "./imagenet/train",
                                         "--follow-symlinks"), token=token, cwd=tmp_path)
    assert code == 0, err
    assert summary(out) == {"uploaded": N, "skipped": 1, "failed": 0}
    assert "reached twice in this run" in out
    assert_exactly_once(server, files)


async def test_a_moved_and_renamed_tree_adopts_its_journal_rows(server, token, tmp_path):
    """The old path is gone and a file of the same name, size and mtime is found: the
    same file, moved. Its row takes the new identity; nothing is sent."""
    tree(tmp_path, "imagenet/train", seed=1)
    code, _, err = await run_cli(*args(server, tmp_path, "./imagenet/train"), token=token,
                                 cwd=tmp_path)
    assert code == 0, err
    before = journal_keys(tmp_path)
    shutil.move(tmp_path / "imagenet", tmp_path / "moved")
    (tmp_path / "moved" / "train").rename(tmp_path / "moved" / "training")
    moved = sorted((tmp_path / "moved" / "training").rglob("*.*"))
    # and a copy elsewhere, same names and bytes but new mtimes, that is a different file
    shutil.copytree(tmp_path / "moved", tmp_path / "copy", copy_function=shutil.copyfile)
    code, out, err = await run_cli(*args(server, tmp_path, "./moved/training"), token=token,
                                   cwd=tmp_path)
    assert code == 0, err
    assert summary(out) == {"uploaded": 0, "skipped": N, "failed": 0}
    after = journal_keys(tmp_path)
    assert len(after) == len(before) == N
    assert set(after) == {os.path.realpath(p) for p in moved}     # re-keyed, not added
    assert set(after.values()) == {"uploaded"}
    code, out, err = await run_cli("status", str(tmp_path / "j.sqlite"), "--list", "done")
    assert code == 0, err
    listed = [ln.split("\t")[1] for ln in out.splitlines() if ln.startswith("uploaded\t")]
    assert sorted(listed) == sorted(after)
    assert_exactly_once(server, moved)
    # a second run finds them under their new identity at once
    code, out, err = await run_cli(*args(server, tmp_path, "./moved/training"), token=token,
                                   cwd=tmp_path)
    assert code == 0 and summary(out)["skipped"] == N, err


# the journal of geti-bulk before file identities (keys "<folder name>/<relative path>")
OLD_SCHEMA = """
CREATE TABLE files (
    key TEXT PRIMARY KEY, path TEXT NOT NULL, size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL, state TEXT NOT NULL, media_id TEXT, reason TEXT,
    uncertain INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0,
    updated REAL NOT NULL, sha256 TEXT, width INTEGER, height INTEGER, dataset_id TEXT,
    run_id TEXT);
CREATE INDEX files_media ON files(media_id);
CREATE INDEX files_pending ON files(state, run_id);
CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
"""


async def test_a_journal_with_the_older_keys_is_migrated_not_resent(server, token, tmp_path):
    """A journal written by an older geti-bulk (`./imagenet/train`, keys `train/...`), then
    the parent folder with this one: every row is adopted and re-keyed, nothing sent."""
    files = tree(tmp_path, "imagenet/train", seed=1)
    code, _, err = await run_cli(*args(server, tmp_path, "./imagenet/train"), token=token,
                                 cwd=tmp_path)
    assert code == 0, err
    new = tmp_path / "j.sqlite"
    with sqlite3.connect(new) as c:
        rows = list(c.execute("SELECT path, size, mtime_ns, media_id FROM files"))
        target = c.execute("SELECT v FROM meta WHERE k='target'").fetchone()[0]
    new.unlink()
    for extra in ("-wal", "-shm"):
        Path(str(new) + extra).unlink(missing_ok=True)
    root = (tmp_path / "imagenet" / "train").resolve()
    with sqlite3.connect(new) as c:
        c.executescript(OLD_SCHEMA)
        c.execute("INSERT INTO meta VALUES ('target', ?)", (target,))
        for path, size, mtime_ns, media_id in rows:
            rel = os.path.relpath(path, root)
            # as the older scanner wrote them: the path as walked, relative to the cwd
            c.execute("INSERT INTO files (key, path, size, mtime_ns, state, media_id, "
                      "uncertain, attempts, updated) VALUES (?, ?, ?, ?, 'uploaded', ?, 0, 1, 0)",
                      (f"train/{rel}", f"imagenet/train/{rel}", size, mtime_ns, media_id))
    code, out, err = await run_cli(*args(server, tmp_path, "./imagenet"), token=token,
                                   cwd=tmp_path)
    assert code == 0, err
    assert summary(out) == {"uploaded": 0, "skipped": N, "failed": 0}
    assert_exactly_once(server, files)
    with sqlite3.connect(new) as c:
        keys = {k for (k,) in c.execute("SELECT key FROM files")}
        meta = dict(c.execute("SELECT k, v FROM meta"))
    assert keys == {os.path.realpath(p) for p in files}
    assert meta["identity"] == "resolved-path"


async def test_a_coco_dataset_moved_and_renamed_is_not_sent_again_and_verifies(
        server, token, tmp_path):
    """Dataset readers use the same identity: a COCO dataset uploaded, then moved to a
    folder of another name, sends nothing (media or annotations), and `verify` names
    each file by its identity."""
    from tests.datasets import sample_images, write_coco

    imgs = sample_images(6)
    write_coco(tmp_path / "coco", imgs, ("car", "truck"))
    detection = ["--project", "Vehicle detection"]
    base = args(server, tmp_path, "./coco")
    base[base.index("--project") + 1] = "Vehicle detection"
    code, out, err = await run_cli(*base, token=token, cwd=tmp_path)
    assert code == 0, err
    assert summary(out)["uploaded"] == len(imgs)
    stored = server.store.count()
    scenes = server.store.scenes.count()
    shutil.move(tmp_path / "coco", tmp_path / "coco-2017")
    moved = [a if a != "./coco" else "./coco-2017" for a in base]
    code, out, err = await run_cli(*moved, token=token, cwd=tmp_path)
    assert code == 0, err
    assert summary(out) == {"uploaded": 0, "skipped": len(imgs), "failed": 0}
    assert server.store.count() == stored == len(imgs) and server.store.duplicate_groups() == []
    assert server.store.scenes.count() == scenes          # no annotation posted again
    images = sorted(os.path.realpath(p) for p in (tmp_path / "coco-2017" / "images").rglob("*.*"))
    assert sorted(journal_keys(tmp_path)) == images
    code, out, err = await run_cli("verify", "./coco-2017", "--host", server.base_url,
                                   *detection, "--report", str(tmp_path / "v.jsonl"),
                                   token=token, cwd=tmp_path)
    assert code == 0, out + err
    rows = report_rows(tmp_path / "v.jsonl")
    assert sorted(r["path"] for r in rows) == images and {r["status"] for r in rows} == {"ok"}


def test_the_lookups_per_file_use_an_index(tmp_path):
    """A new file's look-up by name, size and mtime, and a resume's settle query, each
    search an index (they run once per file of a million-file tree)."""
    import asyncio

    from geti_bulk.journal import NAME_OF_KEY, Journal

    path = tmp_path / "j.sqlite"
    asyncio.run(Journal(path).close())
    with sqlite3.connect(path) as c:
        moved = c.execute(f"EXPLAIN QUERY PLAN SELECT key FROM files WHERE size = 1 AND "
                          f"mtime_ns = 2 AND {NAME_OF_KEY} = 'a.jpg'").fetchall()
        assert "USING INDEX files_moved" in str(moved)
        assert c.execute(f"SELECT {NAME_OF_KEY} FROM (SELECT '/x/y/a.jpg' AS key)"
                         ).fetchone() == ("a.jpg",)
    from geti_bulk.journal import SETTLED_SQL, JournalReader

    reader = JournalReader(path)
    plan = reader._c().execute("EXPLAIN QUERY PLAN " + SETTLED_SQL.format(marks="?, ?"),
                               ("a", "b", "r")).fetchall()
    reader.close()
    assert "USING INDEX sqlite_autoindex_files_1 (key=?)" in str(plan)
