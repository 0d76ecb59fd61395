"""JsonReporter: every line is JSON with the documented fields; bytes_sent is coalesced."""

from __future__ import annotations

import dataclasses
import io
import json
import re
import typing
from pathlib import Path
from typing import Any

import pytest

from geti_bulk import events
from geti_bulk.display import JsonReporter
from geti_bulk.display import jsonl as jsonl_module
from geti_bulk.events import (
    BytesSent,
    ConcurrencyChanged,
    FileDone,
    FileFailed,
    FileQueued,
    FileRetrying,
    FileSkipped,
    FileStarted,
    JournalSkipped,
    Notice,
    RunFinished,
    RunStarted,
    RunStopping,
    ScanDone,
)

EVENT_CLASSES = typing.get_args(events.Event)
DOCS = Path(__file__).resolve().parents[1] / "docs" / "json-events.md"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def sample(cls: type) -> Any:
    examples: dict[type, Any] = {
        RunStarted: RunStarted("h / p / d", 8, dry_run=True),
        FileQueued: FileQueued("a.jpg", 10),
        ScanDone: ScanDone(1, 10),
        FileStarted: FileStarted("a.jpg", 10, 1),
        BytesSent: BytesSent("a.jpg", 10),
        FileRetrying: FileRetrying("a.jpg", 1, "timeout", 0.25, "read timed out"),
        FileDone: FileDone("a.jpg", 10, "m-1", 2, adopted=True),
        FileFailed: FileFailed("b.jpg", "HTTP 415", 10, 415),
        FileSkipped: FileSkipped("c.jpg", "already uploaded", 10),
        JournalSkipped: JournalSkipped(1000, 123456),
        ConcurrencyChanged: ConcurrencyChanged(4),
        Notice: Notice("format: coco (found annotations/instances_val.json)"),
        RunStopping: RunStopping("Ctrl-C"),
        RunFinished: RunFinished(1, 1, 1, 10, 0.5, {"503": 2}, None, True, 3, "/r.csv"),
    }
    return examples[cls]


def test_every_event_is_one_line_with_name_ts_and_fields() -> None:
    stream = io.StringIO()
    reporter = JsonReporter(stream, wall_clock=lambda: 1718000000.5, clock=Clock())
    for cls in EVENT_CLASSES:
        reporter.emit(sample(cls))
    records = lines(stream)
    assert [r["event"] for r in records] == [
        "run_started", "file_queued", "scan_done", "file_started", "bytes_sent",
        "file_retrying", "file_done", "file_failed", "file_skipped",
        "journal_skipped", "concurrency_changed", "run_stopping", "run_finished", "notice"]
    for cls, record in zip(EVENT_CLASSES, records, strict=True):
        event = sample(cls)
        assert record["ts"] == 1718000000.5
        assert record == {"event": record["event"], "ts": record["ts"],
                          **dataclasses.asdict(event)}


def test_the_schema_is_documented_for_every_event() -> None:
    docs = DOCS.read_text(encoding="utf-8")
    docstring = jsonl_module.__doc__ or ""
    for cls in EVENT_CLASSES:
        name = re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()
        row = next((line for line in docs.splitlines() if line.startswith(f"| `{name}`")),
                   None)
        assert row is not None, name
        doc_line = next((line for line in docstring.splitlines()
                         if line.strip().startswith(name + " ")), None)
        assert doc_line is not None, name
        for f in dataclasses.fields(cls):
            assert f"`{f.name}`" in row, (name, f.name)
            assert f.name in docstring, (name, f.name)


def test_bytes_sent_is_coalesced_per_file() -> None:
    clock = Clock()
    stream = io.StringIO()
    reporter = JsonReporter(stream, clock=clock)
    reporter.emit(FileStarted("a", 1000, 1))
    reporter.emit(FileStarted("b", 1000, 1))
    for t, path, n in [(0.0, "a", 100), (0.1, "a", 100), (0.1, "b", 50), (0.2, "a", 100),
                       (0.55, "a", 100), (0.5, "b", 50), (0.7, "a", 100), (0.8, "a", 100)]:
        clock.now = t
        reporter.emit(BytesSent(path, n))
    sent = [(r["path"], r["n"]) for r in lines(stream) if r["event"] == "bytes_sent"]
    # a: first at once, then 0.1+0.2+0.55 together; b: first at once, 0.5 still pending
    assert sent == [("a", 100), ("b", 50), ("a", 300)]
    clock.now = 0.9
    reporter.emit(FileDone("a", 1000, "m", 1))
    reporter.emit(RunFinished(1, 0, 0, 1000, 1.0))
    tail = [(r["event"], r.get("path"), r.get("n")) for r in lines(stream)][-4:]
    assert tail == [("bytes_sent", "a", 200), ("file_done", "a", None),
                    ("bytes_sent", "b", 50), ("run_finished", None, None)]
    per_path: dict[str, int] = {}
    for r in lines(stream):
        if r["event"] == "bytes_sent":
            per_path[r["path"]] = per_path.get(r["path"], 0) + r["n"]
    assert per_path == {"a": 600, "b": 100}


def test_pending_rewind_is_written_before_the_retry() -> None:
    clock = Clock()
    stream = io.StringIO()
    reporter = JsonReporter(stream, clock=clock)
    reporter.emit(BytesSent("a", 500))
    clock.now = 0.1
    reporter.emit(BytesSent("a", 200))
    reporter.emit(FileRetrying("a", 1, "503", 1.0))
    reporter.emit(BytesSent("a", -700))    # 0 s since the last line: stays pending
    reporter.emit(FileFailed("a", "gave up"))
    assert [(r["event"], r.get("n")) for r in lines(stream)] == [
        ("bytes_sent", 500), ("bytes_sent", 200), ("file_retrying", None),
        ("bytes_sent", -700), ("file_failed", None)]


def test_each_line_is_flushed() -> None:
    class Recording(io.StringIO):
        flushed: list[str] = []

        def flush(self) -> None:
            self.flushed.append(self.getvalue())

    stream = Recording()
    reporter = JsonReporter(stream)
    reporter.emit(RunStarted("t", 1))
    assert stream.flushed and stream.flushed[-1].endswith("\n")


@pytest.mark.parametrize("reason", ["Authorization: Bearer abc.def.ghi",
                                    "bad token=abc.def.ghi", "key geti_pat_abc.def.ghi"])
def test_credentials_are_masked(reason: str) -> None:
    stream = io.StringIO()
    JsonReporter(stream).emit(FileFailed("a.jpg", reason))
    assert "abc" not in stream.getvalue()
    assert "***" in lines(stream)[0]["reason"]


def test_quiet_keeps_only_failures_and_the_end() -> None:
    stream = io.StringIO()
    reporter = JsonReporter(stream, quiet=True)
    for cls in EVENT_CLASSES:
        reporter.emit(sample(cls))
    assert [r["event"] for r in lines(stream)] == ["file_failed", "run_finished"]
