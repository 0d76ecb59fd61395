"""Small files read ahead in batches and marked `sending` a batch at a time: every file is
still durable as `sending` before its first byte, a graceful stop takes back the marks of
the files it did not send, and every file still gets its final row."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from geti_bulk.attempts import Head, read_heads
from geti_bulk.events import Event, FileDone, FileStarted, RecordingReporter
from geti_bulk.jobs import FileJob
from geti_bulk.journal import Journal
from geti_bulk.pipeline import PREFETCH_BATCH, Run
from geti_bulk.sampledata import make_labelled_tree
from geti_bulk.server import LocalGeti, ServerConfig
from tests.conftest import make_cfg, sha256, stored_by_sha, upload


def _states(path: Path) -> dict[str, str]:
    with sqlite3.connect(path) as c:
        return dict(c.execute("SELECT key, state FROM files"))


class JournalAtStart(RecordingReporter):
    """Reads the journal (its own connection, as another process would after a kill) when
    each upload starts: the file's committed state, and how many rows are `sending`."""

    def __init__(self, journal: Path) -> None:
        super().__init__()
        self.journal = journal
        self.at_start: dict[str, str | None] = {}
        self.sending_at_first = 0

    def emit(self, event: Event) -> None:
        super().emit(event)
        if isinstance(event, FileStarted):
            states = _states(self.journal)
            if not self.at_start:
                self.sending_at_first = sum(1 for s in states.values() if s == "sending")
            self.at_start[event.path] = states.get(event.path)


def test_read_heads_reads_wanted_files_whole_and_keeps_each_files_error(tmp_path):
    small = tmp_path / "a.jpg"
    small.write_bytes(b"x" * 1000)
    big = tmp_path / "b.jpg"
    big.write_bytes(b"y" * 5000)
    jobs = [FileJob(path=str(small), key="a", size=1000, kind="image"),
            FileJob(path=str(tmp_path / "gone.jpg"), key="g", size=10, kind="image"),
            FileJob(path=str(big), key="b", size=5000, kind="image")]
    heads = read_heads(jobs, lambda j: j.key != "b")
    assert heads[2] is None                              # not wanted: not read
    first, gone = heads[0], heads[1]
    assert isinstance(first, Head) and isinstance(gone, Head)
    data, size, mtime_ns = first.result()
    assert (data, size, mtime_ns) == (b"x" * 1000, 1000, small.stat().st_mtime_ns)
    assert isinstance(gone.error, FileNotFoundError)     # raised where its worker reads it
    try:
        gone.result()
    except FileNotFoundError:
        pass
    else:
        raise AssertionError("a failed read must raise")


async def test_forget_sending_takes_back_only_this_runs_mark_of_a_fresh_file(tmp_path):
    path = tmp_path / "j.sqlite"
    journal = Journal(path)
    journal.start()
    fresh = FileJob(path="/d/fresh.jpg", key="/d/fresh.jpg", size=3, kind="image")
    killed = FileJob(path="/d/killed.jpg", key="/d/killed.jpg", size=3, kind="image",
                     prior_state="sending")
    done = FileJob(path="/d/done.jpg", key="/d/done.jpg", size=3, kind="image")
    await asyncio.gather(journal.mark_sending_soon(fresh), journal.mark_sending_soon(killed),
                         journal.mark_sending_soon(done))
    assert _states(path) == {fresh.key: "sending", killed.key: "sending", done.key: "sending"}
    journal.record_uploaded(done, "m1", 1)
    for job in (fresh, killed, done):
        journal.forget_sending(job)
    await journal.close()
    # the fresh file has no row again; a killed run's `sending` row stays (its upload may
    # be on the server); a row that moved on is never deleted
    assert _states(path) == {killed.key: "sending", done.key: "uploaded"}


async def test_every_file_is_sending_in_the_journal_before_its_upload_starts(server, token,
                                                                              tmp_path):
    data = tmp_path / "data"
    files = make_labelled_tree(data, ["cat", "dog"], 60, size=(40, 32))
    assert len(files) == 60
    cfg = make_cfg(server, token, tmp_path, (data,), concurrency=2, adaptive=False)
    rec = JournalAtStart(cfg.journal)
    result = await Run(cfg, rec).execute()
    assert (result.uploaded, result.failed, result.exit_code) == (60, 0, 0)
    assert len(rec.at_start) == 60 and set(rec.at_start.values()) == {"sending"}
    # marked a batch at a time: more files than the two in flight were durable at once
    assert rec.sending_at_first > 2
    assert set(_states(cfg.journal).values()) == {"uploaded"}        # every final row
    by_sha = stored_by_sha(server)
    assert sorted(len(by_sha.get(sha256(f), [])) for f in files) == [1] * len(files)
    rows = (tmp_path / "report.jsonl").read_text().splitlines()
    assert len(rows) == 60


async def test_a_graceful_stop_leaves_no_mark_of_the_files_it_did_not_send(tmp_path, token):
    data = tmp_path / "data"
    files = make_labelled_tree(data, ["cat"], 3 * PREFETCH_BATCH, size=(40, 32))
    srv = LocalGeti(ServerConfig(data_dir=tmp_path / "srv", token=token, latency_ms=60))
    async with srv:
        cfg = make_cfg(srv, token, tmp_path, (data,), concurrency=2, adaptive=False)

        class StopAtFirst(JournalAtStart):
            run: Run | None = None

            def emit(self, event: Event) -> None:
                super().emit(event)
                if isinstance(event, FileDone) and self.run is not None:
                    self.run.request_stop("test: stop")

        rec = StopAtFirst(cfg.journal)
        run = rec.run = Run(cfg, rec)
        result = await run.execute()
        assert result.uploaded >= 1 and result.not_started > 0
        assert rec.sending_at_first > 2      # marked ahead: the stop had marks to take back
        states = _states(cfg.journal)
        assert set(states.values()) == {"uploaded"} and len(states) == result.uploaded
        second, _ = await upload(cfg)
        assert second.exit_code == 0 and second.uploaded == len(files) - result.uploaded
        by_sha = stored_by_sha(srv)
        assert sorted(len(by_sha.get(sha256(f), [])) for f in files) == [1] * len(files)
