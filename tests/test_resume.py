"""Resumable, exactly-once runs: the journal, reconciliation, kill -9 and Ctrl-C."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Any

from geti_bulk.events import FileDone, FileSkipped, JournalSkipped
from geti_bulk.journal import Journal
from geti_bulk.sampledata import make_labelled_tree
from tests.conftest import admin_stats, make_cfg, sha256, stored_by_sha, upload


async def until_stored(srv: Any, more_than: int) -> None:
    """Until the server holds more than `more_than` media (a started CLI is uploading):
    a bounded wait instead of a fixed sleep, which a loaded machine outlasts."""
    for _ in range(1200):
        if srv.store.count() > more_than:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the uploader stored nothing within 60 s")


def journal_states(path: Path) -> dict[str, tuple[str, str | None]]:
    with sqlite3.connect(path) as c:
        return {k: (s, m) for k, s, m in c.execute("SELECT key, state, media_id FROM files")}


async def test_rerun_skips_uploaded_without_asking_the_server(server, token, tmp_path):
    data = tmp_path / "data"
    make_labelled_tree(data, ["cat", "dog"], 12)
    cfg = make_cfg(server, token, tmp_path, (data,))
    first, _ = await upload(cfg)
    assert first.uploaded == 12
    before = (await admin_stats(server))["requests"]
    second, rec = await upload(cfg)
    assert (second.uploaded, second.skipped, second.exit_code) == (0, 12, 0)
    assert not [e for e in rec.events if isinstance(e, FileSkipped)]   # counted in bulk:
    assert sum(e.files for e in rec.events if isinstance(e, JournalSkipped)) == 12
    # target resolution only (token org, workspaces, project list + detail): no per-file calls
    assert (await admin_stats(server))["requests"] - before <= 6
    assert server.store.count() == 12


async def test_changed_file_is_reported_not_silently_reuploaded(server, token, tmp_path):
    from geti_bulk.sampledata import image_bytes

    data = tmp_path / "data"
    make_labelled_tree(data, ["cat"], 3)
    cfg = make_cfg(server, token, tmp_path, (data,))
    await upload(cfg)
    target = sorted((data / "cat").iterdir())[0]
    target.write_bytes(image_bytes(100, 90, seed=99))
    result, rec = await upload(cfg)
    [changed] = [e for e in rec.events if isinstance(e, FileSkipped) and "changed" in e.reason]
    assert changed.path.endswith(target.name) and "--reupload-changed" in changed.reason
    assert server.store.count() == 3
    from dataclasses import replace
    result, _ = await upload(replace(cfg, reupload_changed=True))
    assert result.uploaded == 1 and server.store.count() == 4
    assert sha256(target) in stored_by_sha(server)


async def test_in_flight_file_from_a_killed_run_is_reconciled_not_resent(server, token, tmp_path):
    """A journal row left `sending` whose media the server stored: adopt, don't resend."""
    data = tmp_path / "data"
    make_labelled_tree(data, ["cat"], 2)
    cfg = make_cfg(server, token, tmp_path, (data,), journal=tmp_path / "scratch.sqlite")
    result, _ = await upload(cfg)          # the server now holds both files
    assert server.store.count() == 2
    # a journal as a killed run leaves it: both files marked `sending`, no result
    j = Journal(tmp_path / "journal.sqlite")
    from geti_bulk.jobs import FileJob
    for p in sorted((data / "cat").iterdir()):
        st = p.stat()
        job = FileJob(str(p), f"data/cat/{p.name}", st.st_size, st.st_mtime_ns, "image", ("cat",))
        j._conn.execute("INSERT INTO files (key, path, size, mtime_ns, state, uncertain, "
                        "attempts, updated) VALUES (?,?,?,?, 'sending', 1, 0, 0)",
                        (job.key, job.path, job.size, job.mtime_ns))
    j._conn.close()
    result, rec = await upload(make_cfg(server, token, tmp_path, (data,)))
    done = [e for e in rec.events if isinstance(e, FileDone)]
    assert len(done) == 2 and all(e.adopted for e in done)
    assert server.store.count() == 2 and server.store.duplicate_groups() == []
    assert {s for s, _ in journal_states(tmp_path / "journal.sqlite").values()} == {"uploaded"}


async def test_same_name_in_two_folders_reconciles_to_distinct_media(server, token, tmp_path):
    """ImageNet trees repeat basenames across label folders; adoption must not double-claim."""
    from geti_bulk.sampledata import image_bytes

    data = tmp_path / "data"
    for label in ("cat", "dog"):
        (data / label).mkdir(parents=True)
        (data / label / "0001.jpg").write_bytes(image_bytes(64, 64, seed=5))  # same bytes
    server.set_faults(script=["stored500", "stored500"])
    result, rec = await upload(make_cfg(server, token, tmp_path, (data,), concurrency=1))
    done = [e for e in rec.events if isinstance(e, FileDone)]
    assert result.uploaded == 2 and len({e.media_id for e in done}) == 2
    assert server.store.count() == 2


async def test_skip_existing_pages_through_the_dataset(server, token, tmp_path):
    data = tmp_path / "data"
    make_labelled_tree(data, ["cat", "dog"], 10)
    await upload(make_cfg(server, token, tmp_path, (data,), journal=tmp_path / "other.sqlite"))
    assert server.store.count() == 10
    make_labelled_tree(data, ["cat", "dog"], 14)   # 4 new files, same names for the first 10
    result, _ = await upload(make_cfg(server, token, tmp_path, (data,), skip_existing=True))
    assert (result.uploaded, result.skipped) == (4, 10)
    assert server.store.count() == 14 and server.store.duplicate_groups() == []


# --- the uploader as a real process: kill -9 and Ctrl-C ------------------------------

def _cli(server, data: Path, tmp_path: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "geti_bulk.cli", "upload", str(data), "--host", server.base_url,
            "--project", "Pets classification", "--journal", str(tmp_path / "journal.sqlite"),
            "--progress", "plain", "--concurrency", "4", *extra]


async def _spawn(cmd: list[str], token: str, report: Path) -> asyncio.subprocess.Process:
    env = {**os.environ, "GETI_TOKEN": token}
    return await asyncio.create_subprocess_exec(
        *cmd, "--report", str(report), env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)


async def _until_uploading(proc: asyncio.subprocess.Process) -> bytes:
    """Output up to the first `uploaded` line (a bounded wait, not a guess of how long
    start-up takes on a loaded machine)."""
    assert proc.stdout is not None
    head = b""

    async def read() -> None:
        nonlocal head
        while raw := await proc.stdout.readline():   # type: ignore[union-attr]
            head += raw
            if raw.startswith(b"uploaded "):
                return

    await asyncio.wait_for(read(), 60)
    return head


def _verify_exactly_once(server, data: Path, journal: Path, report: Path) -> None:
    local = {os.path.realpath(p): sha256(p) for p in data.rglob("*.jpg")}
    local.update({os.path.realpath(p): sha256(p) for p in data.rglob("*.png")})
    by_sha = stored_by_sha(server)
    assert server.store.duplicate_groups() == [], "a file was stored twice"
    assert set(by_sha) == set(local.values()), "every file stored, byte for byte"
    assert all(len(v) == 1 for v in by_sha.values())
    states = journal_states(journal)
    rows = [json.loads(x) for x in report.read_text().splitlines()]
    per_file = [r for r in rows if "path" in r]
    # files the journal settled are one summary row (README: "A rerun's report")
    settled = sum(r["files"] for r in rows if "files" in r)
    assert len(per_file) + settled == len(local) and {r["path"] for r in per_file} <= set(local)
    for r in per_file:
        [record] = by_sha[local[r["path"]]]
        assert r["media_id"] == record.id                  # the report names the stored media
    for path, digest in local.items():
        [record] = by_sha[digest]
        assert states[path] == ("uploaded", record.id)     # and so does the journal


async def test_sigkill_at_random_points_then_rerun_is_exactly_once(server, token, tmp_path):
    data = tmp_path / "data"
    await asyncio.to_thread(make_labelled_tree, data, ["cat", "dog", "horse"], 2500,
                            size=(48, 40), noise=0.3)
    server.set_faults(spec="stored500=0.03,reset=0.03,503=0.03")
    rng = random.Random(11)
    cmd = _cli(server, data, tmp_path)
    killed = 0
    for i in range(4):
        proc = await _spawn(cmd, token, tmp_path / f"report-{i}.jsonl")
        await asyncio.sleep(rng.uniform(0.8, 2.0))
        if proc.returncode is None:
            proc.kill()                                    # SIGKILL: no cleanup at all
            killed += 1
        await asyncio.wait_for(proc.communicate(), 30)
    assert killed >= 3, "the kills must land mid-run to test anything"
    assert 0 < server.store.count() < 2500
    final = tmp_path / "report-final.jsonl"
    proc = await _spawn(cmd, token, final)
    out, _ = await asyncio.wait_for(proc.communicate(), 110)
    assert proc.returncode == 0, out.decode()[-2000:]
    _verify_exactly_once(server, data, tmp_path / "journal.sqlite", final)


async def test_ctrl_c_finishes_in_flight_then_rerun_completes(tmp_path, token):
    from geti_bulk.server import LocalGeti, ServerConfig

    data = tmp_path / "data"
    await asyncio.to_thread(make_labelled_tree, data, ["cat", "dog"], 300, size=(48, 40))
    srv = LocalGeti(ServerConfig(data_dir=tmp_path / "srv", token=token, latency_ms=30))
    async with srv:
        cmd = _cli(srv, data, tmp_path)
        proc = await _spawn(cmd, token, tmp_path / "r1.jsonl")
        head = await _until_uploading(proc)
        proc.send_signal(signal.SIGINT)
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        text = (head + out).decode()
        assert proc.returncode == 130, text[-2000:]
        assert "stopping: interrupted (Ctrl-C)" in text
        assert "status:      interrupted" in text
        # a graceful stop leaves nothing in flight: every started file has its answer
        states = journal_states(tmp_path / "journal.sqlite")
        assert states and {s for s, _ in states.values()} == {"uploaded"}
        assert len(states) < 300
        # two Ctrl-C: in-flight uploads are cancelled; the next run still ends exactly once
        proc = await _spawn(cmd, token, tmp_path / "r2.jsonl")
        await _until_uploading(proc)
        proc.send_signal(signal.SIGINT)
        await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 130, out.decode()[-2000:]
        proc = await _spawn(cmd, token, tmp_path / "r3.jsonl")
        out, _ = await asyncio.wait_for(proc.communicate(), 100)
        assert proc.returncode == 0, out.decode()[-2000:]
        _verify_exactly_once(srv, data, tmp_path / "journal.sqlite", tmp_path / "r3.jsonl")


async def test_hash_recognises_same_content_under_a_new_mtime(server, token, tmp_path):
    from dataclasses import replace

    from geti_bulk.sampledata import image_bytes

    data = tmp_path / "data"
    make_labelled_tree(data, ["cat"], 3)
    cfg = make_cfg(server, token, tmp_path, (data,), hash_content=True)
    await upload(cfg)
    states = journal_states(tmp_path / "journal.sqlite")
    with sqlite3.connect(tmp_path / "journal.sqlite") as c:
        hashes = dict(c.execute("SELECT key, sha256 FROM files"))
    files = sorted((data / "cat").iterdir())
    assert all(hashes[os.path.realpath(p)] == sha256(p) for p in files)
    same, changed = files[0], files[1]
    os.utime(same, ns=(same.stat().st_atime_ns, same.stat().st_mtime_ns + 10**9))
    changed.write_bytes(image_bytes(64, 64, seed=1234))
    result, rec = await upload(cfg)
    reasons = {e.path.split("/")[-1]: e.reason for e in rec.events if isinstance(e, FileSkipped)}
    assert reasons[same.name] == "already uploaded (journal; same content, new mtime)"
    assert "changed since it was uploaded" in reasons[changed.name]
    assert server.store.count() == 3 and result.exit_code == 0
    # the new mtime was remembered: the third run skips it on size and mtime alone
    third, rec = await upload(replace(cfg, hash_content=False))
    reasons = {e.path.split("/")[-1]: e.reason for e in rec.events if isinstance(e, FileSkipped)}
    assert same.name not in reasons          # settled in bulk by the journal, not one by one
    assert sum(e.files for e in rec.events if isinstance(e, JournalSkipped)) == 2
    assert "changed since it was uploaded" in reasons[changed.name] and third.skipped == 3
    assert states  # the first run's rows existed before the changes


async def test_ctrl_c_while_still_resolving_the_target_stops_at_once(tmp_path, token):
    from geti_bulk.server import LocalGeti, ServerConfig

    data = tmp_path / "data"
    make_labelled_tree(data, ["cat"], 3)
    srv = LocalGeti(ServerConfig(data_dir=tmp_path / "srv", token=token, latency_ms=3000))
    async with srv:
        proc = await _spawn(_cli(srv, data, tmp_path), token, tmp_path / "r.jsonl")
        await asyncio.sleep(1.0)
        t0 = asyncio.get_running_loop().time()
        proc.send_signal(signal.SIGINT)
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 130, out.decode()[-1500:]
        assert asyncio.get_running_loop().time() - t0 < 2.5   # not after the 3 s answer
        assert srv.store.count() == 0


async def test_double_ctrl_c_counts_what_was_not_started(tmp_path, token):
    from geti_bulk.server import LocalGeti, ServerConfig

    data = tmp_path / "data"
    await asyncio.to_thread(make_labelled_tree, data, ["cat", "dog"], 200, size=(48, 40))
    srv = LocalGeti(ServerConfig(data_dir=tmp_path / "srv", token=token, latency_ms=50))
    async with srv:
        proc = await _spawn(_cli(srv, data, tmp_path), token, tmp_path / "r.jsonl")
        head = await _until_uploading(proc)
        proc.send_signal(signal.SIGINT)
        await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        text = (head + out).decode()
        assert proc.returncode == 130
        line = next(ln for ln in text.splitlines() if ln.startswith("not started:"))
        uploaded = int(next(ln for ln in text.splitlines() if ln.startswith("uploaded:")).split()[1])
        assert 0 < int(line.split()[-1]) and uploaded < 200


async def test_default_report_sits_next_to_a_custom_journal_and_is_unique(server, token, tmp_path):
    data = tmp_path / "data"
    make_labelled_tree(data, ["cat"], 2)
    jdir = tmp_path / "jdir"
    jdir.mkdir()
    cfg = make_cfg(server, token, tmp_path, (data,), journal=jdir / "j.sqlite", report=None)
    first, _ = await upload(cfg)
    second, _ = await upload(cfg)
    assert first.report_path.parent == jdir and second.report_path.parent == jdir
    assert first.report_path != second.report_path
    assert first.report_path.name.startswith("j-report-")
