"""One run per journal: a second run is refused at once with who holds it; a killed
holder never blocks the next run; `status` reads a locked journal; `status` on a file
that is not a journal says so. Real processes, real CLI, the local server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import re
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pytest

from geti_bulk.errors import ConfigError
from geti_bulk.journal_lock import JournalBusyError, JournalLock, lock_path
from geti_bulk.sampledata import make_labelled_tree
from geti_bulk.server import LocalGeti, ServerConfig
from tests.conftest import admin_stats, make_cfg, sha256, stored_by_sha, upload

WAIT = 15.0   # seconds any single step may take before the test fails

# a run in another process: takes the lock (and, with a 2nd argument, opens the journal
# for writing as a run does), says so, then holds both until its stdin closes
HOLDER = """
import sys
from pathlib import Path
from geti_bulk.journal_lock import JournalLock
lock = JournalLock.acquire(Path(sys.argv[1]))
if len(sys.argv) > 2:
    from geti_bulk.journal import Journal
    journal = Journal(Path(sys.argv[1]), target="held")
print("held", flush=True)
sys.stdin.read()
"""

# a process caught between taking the lock and writing who it is
BARE_FLOCK = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
print("held", flush=True)
sys.stdin.read()
"""

LINE = re.compile(r"journal (?P<path>.+) is in use by another geti-bulk run "
                  r"\(pid (?P<pid>\d+) on (?P<host>.+), started "
                  r"(?P<started>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\); "
                  r"wait for it to finish, or pass another --journal")


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("GETI_")}


@contextmanager
def holding(*args: str, script: str = HOLDER) -> Iterator[subprocess.Popen[str]]:
    p = subprocess.Popen([sys.executable, "-c", script, *args], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        assert p.stdout is not None
        ready, _, _ = select.select([p.stdout], [], [], WAIT)
        assert ready, "the holder did not take the lock in time"
        line = p.stdout.readline()
        assert line == "held\n", (line, p.stderr.read() if p.stderr else "")
        yield p
    finally:
        if p.poll() is None:
            p.kill()
        p.wait(WAIT)
        for f in (p.stdin, p.stdout, p.stderr):
            if f is not None:
                f.close()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "geti_bulk.cli", *args], capture_output=True,
                          text=True, env=_env(), timeout=60)


# --- the lock itself -------------------------------------------------------------------


def test_a_second_process_is_refused_with_one_line_naming_pid_host_and_start(tmp_path):
    journal = tmp_path / "state" / "j.sqlite"     # the folder does not exist yet
    before = datetime.now().replace(microsecond=0)
    with holding(str(journal)) as holder:
        t0 = time.monotonic()
        with pytest.raises(JournalBusyError) as ei:
            JournalLock.acquire(journal)
        assert time.monotonic() - t0 < 1.0                 # refused at once, not waited
        msg = str(ei.value)
        m = LINE.fullmatch(msg)
        assert m, msg
        assert m["path"] == str(journal)
        assert int(m["pid"]) == holder.pid and m["host"] == socket.gethostname()
        started = datetime.strptime(m["started"], "%Y-%m-%d %H:%M:%S")
        assert before <= started <= datetime.now()
        assert "\n" not in msg and isinstance(ei.value, ConfigError)
        assert lock_path(journal) == tmp_path / "state" / "j.sqlite.lock"
        assert not journal.exists()           # the lock never touches the SQLite file
        assert holder.stdin is not None
        holder.stdin.close()                  # the holder ends its run
        holder.wait(WAIT)
    with JournalLock.acquire(journal) as lock:
        assert lock.held
        assert json.loads(lock_path(journal).read_text())["pid"] == os.getpid()
    assert not lock.held
    with JournalLock.acquire(journal):        # released: the same process takes it again
        pass


def test_a_lock_taken_but_not_yet_described_gives_the_line_without_details(tmp_path):
    journal = tmp_path / "j.sqlite"
    with holding(str(lock_path(journal)), script=BARE_FLOCK):
        with pytest.raises(JournalBusyError) as ei:
            JournalLock.acquire(journal)
    assert str(ei.value) == (f"journal {journal} is in use by another geti-bulk run; "
                             "wait for it to finish, or pass another --journal")


def test_a_holder_killed_with_sigkill_never_blocks_the_next_run(tmp_path):
    journal = tmp_path / "j.sqlite"
    with holding(str(journal), "open-journal") as holder:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(WAIT)
        assert holder.returncode == -signal.SIGKILL
        stale = json.loads(lock_path(journal).read_text())
        assert stale["pid"] == holder.pid          # the file stayed, with the dead pid
        t0 = time.monotonic()
        lock = JournalLock.acquire(journal)
        assert time.monotonic() - t0 < 1.0
    try:
        assert json.loads(lock_path(journal).read_text())["pid"] == os.getpid()
    finally:
        lock.release()


# --- status ----------------------------------------------------------------------------


async def test_status_reads_a_journal_while_a_run_holds_it(server, token, tmp_path):
    data = tmp_path / "data"
    make_labelled_tree(data, ["cat", "dog"], 6)
    result, _ = await upload(make_cfg(server, token, tmp_path, (data,)))
    assert result.exit_code == 0
    journal = tmp_path / "journal.sqlite"
    with holding(str(journal), "open-journal"):
        with pytest.raises(JournalBusyError):
            JournalLock.acquire(journal)           # it really is held
        done = await asyncio.to_thread(_cli, "status", str(journal))
    assert done.returncode == 0, done.stderr
    assert "6 files: 6 uploaded, 0 skipped, 0 failed, 0 sending" in done.stdout
    assert "a run is going on this journal now" in done.stdout
    assert done.stderr == ""
    after = await asyncio.to_thread(_cli, "status", str(journal))   # the run is over
    assert after.returncode == 0 and "a run is going" not in after.stdout


def _sqlite_without_files(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO photos (name) VALUES ('a')")
    conn.commit()
    conn.close()


@pytest.mark.parametrize("kind", ["text", "empty", "sqlite-without-files"])
def test_status_on_a_file_that_is_not_a_journal_exits_2_with_one_line(tmp_path, kind):
    path = tmp_path / f"{kind}.sqlite"
    if kind == "text":
        path.write_text("these are my notes, not a journal\n")
    elif kind == "empty":
        path.write_bytes(b"")
    else:
        _sqlite_without_files(path)
    before = path.read_bytes()
    done = _cli("status", str(path))
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr == f"geti-bulk: error: {path}: not a geti-bulk journal\n"
    assert done.stdout == ""
    assert path.read_bytes() == before                  # status changed nothing
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


# --- end to end: two identical uploads on one journal -------------------------------------


@pytest.fixture
async def slow_server(tmp_path: Path, token: str) -> AsyncIterator[LocalGeti]:
    srv = LocalGeti(ServerConfig(data_dir=tmp_path / "server", token=token, seed=3,
                                 latency_ms=120))
    async with srv:
        yield srv


async def _drain(stream: asyncio.StreamReader, lines: list[str], started: asyncio.Event) -> None:
    while raw := await stream.readline():
        lines.append(raw.decode())
        if raw.startswith(b"start: "):
            started.set()


async def test_a_second_identical_upload_is_refused_and_every_file_is_stored_once(
        slow_server, token, tmp_path):
    data = tmp_path / "data"
    files = make_labelled_tree(data, ["cat", "dog"], 60)
    journal = tmp_path / "j.sqlite"
    args = ("-m", "geti_bulk.cli", "upload", str(data), "--host", slow_server.base_url,
            "--project", "Pets classification", "--journal", str(journal),
            "--report", str(tmp_path / "r.jsonl"), "--concurrency", "2", "--fixed-concurrency",
            "--progress", "plain")
    env = {**_env(), "GETI_TOKEN": token}
    first = await asyncio.create_subprocess_exec(
        sys.executable, *args, env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    try:
        assert first.stdout is not None and first.stderr is not None
        lines: list[str] = []
        started = asyncio.Event()
        drain = asyncio.create_task(_drain(first.stdout, lines, started))
        first_err = asyncio.create_task(first.stderr.read())
        await asyncio.wait_for(started.wait(), WAIT)       # the first holds the journal

        second = await asyncio.create_subprocess_exec(
            sys.executable, *args, env=env, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(second.communicate(), WAIT)
        assert first.returncode is None, "the first run ended before the second was refused"
        assert second.returncode == 2, (out, err)
        assert "Traceback" not in err.decode() + out.decode()
        # it stopped before its run started: nothing sent (other lines, e.g. what the
        # scan found, may come before)
        assert not [ln for ln in out.decode().splitlines()
                    if ln.startswith(("start: ", "uploaded ", "--- summary"))], out
        [line] = err.decode().splitlines()
        assert line.startswith("geti-bulk: error: ")
        m = LINE.fullmatch(line.removeprefix("geti-bulk: error: "))
        assert m, line
        assert m["path"] == str(journal) and int(m["pid"]) == first.pid
        assert m["host"] == socket.gethostname()

        # status reads the journal the first run is writing
        st = await asyncio.to_thread(_cli, "status", str(journal))
        assert st.returncode == 0 and " files: " in st.stdout, st.stderr
        assert first.returncode is None

        code = await asyncio.wait_for(first.wait(), 90)
        await asyncio.wait_for(drain, WAIT)
        err_first = await asyncio.wait_for(first_err, WAIT)
    finally:
        if first.returncode is None:
            first.kill()
            await first.wait()
    assert code == 0, (err_first.decode(), "".join(lines[-5:]))
    stats = await admin_stats(slow_server)
    assert stats["duplicates"] == 0 and stats["duplicate_groups"] == []
    assert stats["media_total"] == len(files)
    stored = stored_by_sha(slow_server)
    assert sorted(stored) == sorted(sha256(f) for f in files)
    assert all(len(copies) == 1 for copies in stored.values())
    assert sum(ln.startswith("uploaded ") for ln in lines) == len(files)


async def test_two_runs_in_one_process_on_one_journal_one_is_refused(slow_server, token,
                                                                      tmp_path):
    data = tmp_path / "data"
    files = make_labelled_tree(data, ["cat", "dog"], 30)
    cfg = make_cfg(slow_server, token, tmp_path, (data,), concurrency=2, adaptive=False)
    (a, _), (b, _) = await asyncio.wait_for(asyncio.gather(upload(cfg), upload(cfg)), 90)
    refused, ran = (a, b) if a.fatal else (b, a)
    assert ran.fatal is None and ran.exit_code == 0 and ran.uploaded == len(files)
    assert refused.exit_code == 2 and refused.uploaded == 0
    assert refused.fatal is not None and LINE.fullmatch(refused.fatal), refused.fatal
    assert (await admin_stats(slow_server))["duplicates"] == 0
    again, _ = await asyncio.wait_for(upload(cfg), 90)    # the finished run let go of it
    assert again.exit_code == 0 and again.skipped == len(files)
