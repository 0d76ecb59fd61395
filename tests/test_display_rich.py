"""RichReporter rendered into an in-memory console at chosen moments, with a fake clock."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from geti_bulk.display import RichReporter, make_reporter
from geti_bulk.events import (
    BytesSent,
    ConcurrencyChanged,
    FileDone,
    FileFailed,
    FileQueued,
    FileRetrying,
    FileStarted,
    RunFinished,
    RunStarted,
    RunStopping,
    ScanDone,
)

MB = 1_000_000


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def plain_console() -> Console:
    return Console(file=io.StringIO(), width=100, force_terminal=False, color_system=None)


def captured(console: Console) -> str:
    file = console.file
    assert isinstance(file, io.StringIO)
    return file.getvalue()


def render(reporter: RichReporter) -> str:
    console = plain_console()
    console.print(reporter.renderable())
    return captured(console)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def out() -> Console:
    return plain_console()


@pytest.fixture
def rep(out: Console, clock: Clock) -> RichReporter:
    reporter = RichReporter(out, clock=clock, auto_refresh=False)
    reporter.emit(RunStarted("geti.local / cats / ds", concurrency=8))
    return reporter


def row_figure(text: str, path: str) -> str:
    line = next(line for line in text.splitlines() if path in line)
    match = re.search(r"(\S+ [kMG]?B)/2\.0 MB", line)
    assert match, line
    return match.group(1)


def test_started_file_gets_a_row_with_its_bytes(rep: RichReporter) -> None:
    assert "cats/001.jpg" not in render(rep)
    rep.emit(FileStarted("cats/001.jpg", 2 * MB, 1))
    rep.emit(BytesSent("cats/001.jpg", 500_000))
    assert row_figure(render(rep), "cats/001.jpg") == "500.0 kB"


def test_negative_bytes_sent_rewinds_the_row(rep: RichReporter) -> None:
    rep.emit(FileStarted("cats/001.jpg", 2 * MB, 1))
    rep.emit(BytesSent("cats/001.jpg", 1_500_000))
    assert row_figure(render(rep), "cats/001.jpg") == "1.5 MB"
    rep.emit(FileRetrying("cats/001.jpg", 1, "503", 1.3))
    rep.emit(BytesSent("cats/001.jpg", -1_500_000))
    shown = render(rep)
    assert row_figure(shown, "cats/001.jpg") == "0 B"
    assert "waiting: 503, retry in 1.3 s" in shown
    rep.emit(FileStarted("cats/001.jpg", 2 * MB, 2))
    rep.emit(BytesSent("cats/001.jpg", 300_000))
    shown = render(rep)
    assert row_figure(shown, "cats/001.jpg") == "300.0 kB"
    assert "attempt 2" in shown


def test_failure_is_printed_above_the_live_area(out: Console, clock: Clock) -> None:
    with RichReporter(out, clock=clock, auto_refresh=False) as reporter:
        reporter.emit(RunStarted("geti.local / cats / ds", concurrency=4))
        reporter.emit(FileStarted("cats/bad.jpg", 10, 1))
        reporter.emit(FileFailed("cats/bad.jpg", "HTTP 415: unsupported media", 10, 415))
    text = captured(out)
    assert "FAILED cats/bad.jpg: HTTP 415: unsupported media" in text
    # the live area's final frame comes after (below) the printed failure
    assert text.index("FAILED") < text.index("uploaded 0 · skipped 0 · failed 1")


def test_lines_above_keep_their_order_while_live_runs(out: Console, clock: Clock) -> None:
    reporter = RichReporter(out, clock=clock, auto_refresh=False, verbose=True)
    reporter.start()
    reporter.emit(FileRetrying("a.jpg", 1, "timeout", 2.0))
    reporter.emit(FileFailed("b.jpg", "first"))
    reporter.emit(FileFailed("c.jpg", "second"))
    reporter.stop()
    lines = captured(out).splitlines()
    assert lines[:3] == ["retry 1 a.jpg: timeout (waiting 2.0 s)", "FAILED b.jpg: first",
                         "FAILED c.jpg: second"]


def test_retries_are_printed_only_when_verbose(out: Console, clock: Clock) -> None:
    quiet_out = plain_console()
    RichReporter(quiet_out, clock=clock, auto_refresh=False).emit(
        FileRetrying("a.jpg", 2, "503", 1.25))
    RichReporter(out, clock=clock, auto_refresh=False, verbose=True).emit(
        FileRetrying("a.jpg", 2, "503", 1.25))
    assert captured(quiet_out) == ""
    assert "retry 2 a.jpg: 503 (waiting 1.2 s)" in captured(out)


def test_thousand_files_in_flight_keep_the_screen_bounded(rep: RichReporter) -> None:
    for i in range(1000):
        rep.emit(FileStarted(f"big/{i:04}.jpg", MB, 1))
    shown = render(rep)
    assert len(shown.splitlines()) <= 12
    assert "… and 992 more in flight" in shown
    assert "big/0007.jpg" in shown and "big/0008.jpg" not in shown


def test_a_finished_row_is_taken_by_a_waiting_file(rep: RichReporter) -> None:
    for i in range(10):
        rep.emit(FileStarted(f"f{i}.jpg", MB, 1))
    rep.emit(FileDone("f3.jpg", MB, "m3", 1))
    shown = render(rep)
    assert "f3.jpg" not in shown and "f8.jpg" in shown and "f9.jpg" not in shown
    assert "and 1 more in flight" in shown
    rep.emit(FileDone("f0.jpg", MB, "m0", 1))
    rep.emit(FileDone("f1.jpg", MB, "m1", 1))
    shown = render(rep)
    assert "f9.jpg" in shown and "more in flight" not in shown


def test_scan_total_grows_until_scan_done(rep: RichReporter) -> None:
    for i in range(3):
        rep.emit(FileQueued(f"q{i}.jpg", MB))
    shown = render(rep)
    assert "scanning…" in shown and "0/3+ files" in shown and "3.0 MB+" in shown
    rep.emit(FileQueued("q3.jpg", 2 * MB))
    assert "0/4+ files" in render(rep)
    rep.emit(ScanDone(files=4, bytes=5 * MB))
    shown = render(rep)
    assert "scanning" not in shown and "0/4 files" in shown and "0 B/5.0 MB" in shown


def test_throughput_and_eta_use_the_clock(rep: RichReporter, clock: Clock) -> None:
    rep.emit(FileQueued("a.bin", 10 * MB))
    rep.emit(ScanDone(files=1, bytes=10 * MB))
    rep.emit(FileStarted("a.bin", 10 * MB, 1))
    clock.now += 1
    rep.emit(BytesSent("a.bin", 2 * MB))
    clock.now += 1
    shown = render(rep)
    assert "1.0 MB/s" in shown          # 2 MB in the 2 s since the reporter began
    assert "ETA 0:00:08" in shown       # 8 MB left at 1 MB/s


def test_concurrency_shown_follows_changes(rep: RichReporter) -> None:
    assert "concurrency 8" in render(rep)
    rep.emit(ConcurrencyChanged(3))
    shown = render(rep)
    assert "concurrency 3" in shown and "concurrency 8" not in shown


def test_stopping_line_appears_after_run_stopping(rep: RichReporter) -> None:
    assert "stopping" not in render(rep)
    rep.emit(RunStopping("Ctrl-C"))
    assert ("stopping: Ctrl-C — finishing in-flight uploads (Ctrl-C again to cancel)"
            in render(rep))


def test_summary_has_counts_retries_and_grouped_failures(rep: RichReporter,
                                                         out: Console) -> None:
    for i in range(4):
        rep.emit(FileFailed(f"bad/{i}.jpg", "HTTP 415: unsupported media", 10, 415))
    rep.emit(FileFailed("odd.jpg", "file vanished", 10))
    rep.emit(RunFinished(uploaded=120, skipped=3, failed=5, bytes_sent=12 * MB,
                         elapsed=4.0, retries={"503": 3, "timeout": 1}, not_started=7,
                         interrupted=True, report_path="/tmp/run/report.csv"))
    text = captured(out)
    summary = text[text.index("Summary"):]
    for label, value in [("uploaded", "120"), ("skipped", "3"), ("failed", "5"),
                         ("not started", "7"), ("status", "interrupted"),
                         ("bytes", "12.0 MB"), ("throughput", "3.0 MB/s, 30.0 files/s"),
                         ("retries", "4 (503: 3, timeout: 1)")]:
        assert re.search(rf"{label}\s+│ {re.escape(value)}", summary), label
    assert re.search(r"│\s+4 │ HTTP 415: unsupported media", summary)
    assert re.search(r"│\s+1 │ file vanished", summary)
    assert "bad/0.jpg, bad/1.jpg, bad/2.jpg, …" in summary
    assert "bad/3.jpg" not in summary
    assert "report: /tmp/run/report.csv" in summary


def test_fatal_stop_is_named_in_the_summary(rep: RichReporter, out: Console) -> None:
    rep.emit(RunFinished(2, 0, 0, 10, 1.0, fatal="507 not_enough_space: the disk is full"))
    assert "stopped: 507 not_enough_space: the disk is full" in captured(out)


def test_a_stop_before_any_file_prints_no_empty_summary(rep: RichReporter,
                                                        out: Console) -> None:
    rep.emit(RunFinished(0, 0, 0, 0, 1.0, fatal="401 Unauthorized: check the token"))
    assert "stopped" not in captured(out) and "uploaded" not in captured(out)


def test_odd_names_cannot_inject_markup_or_control_codes(rep: RichReporter,
                                                        out: Console) -> None:
    path = "[bold]x[/bold]\x1b[31m.jpg"
    rep.emit(FileStarted(path, MB, 1))
    rep.emit(FileFailed(path, "Bearer abc.def.ghi rejected", MB))
    text = captured(out) + render(rep)
    assert "\x1b" not in text
    assert "[bold]x[/bold]\\x1b[31m.jpg" in text
    assert "abc.def.ghi" not in text and "Bearer ***" in text


@pytest.mark.parametrize("no_color", [False, True])
def test_no_color_is_respected(monkeypatch: pytest.MonkeyPatch, no_color: bool) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.delenv("NO_COLOR", raising=False)
    if no_color:
        monkeypatch.setenv("NO_COLOR", "1")
    stream = io.StringIO()
    reporter = make_reporter("rich", stream=stream)
    reporter.emit(FileFailed("a.jpg", "boom"))
    coloured = re.search(r"\x1b\[[0-9;]*3[0-9]m", stream.getvalue()) is not None
    assert coloured is not no_color


def test_quiet_rich_never_starts_the_live_area(out: Console, clock: Clock) -> None:
    reporter = RichReporter(out, clock=clock, auto_refresh=False, quiet=True)
    reporter.start()
    reporter.emit(RunStarted("t", 2))
    reporter.emit(FileStarted("a.jpg", MB, 1))
    reporter.emit(FileFailed("a.jpg", "boom", MB))
    reporter.stop()
    assert captured(out) == "FAILED a.jpg: boom\n"


def test_auto_refresh_thread_starts_and_stops(clock: Clock) -> None:
    console = Console(file=io.StringIO(), width=100, force_terminal=True, color_system=None)
    reporter = RichReporter(console, refresh_per_second=50)
    with reporter:
        reporter.emit(RunStarted("t", 2))
        reporter.emit(FileStarted("a.jpg", MB, 1))
        reporter.emit(BytesSent("a.jpg", MB // 2))
    assert "a.jpg" in captured(console)


def test_a_narrow_terminal_crops_each_line_rather_than_wrapping_it(rep: RichReporter) -> None:
    rep.emit(FileStarted("cats/a-long-directory-name/with/many/parts/001.jpg", 2 * MB, 2))
    rep.emit(BytesSent("cats/a-long-directory-name/with/many/parts/001.jpg", 700_000))
    console = Console(file=io.StringIO(), width=50, force_terminal=False, color_system=None)
    console.print(rep.renderable())
    lines = captured(console).splitlines()
    # title, overall bar, counters, one row: four lines, none wider than the terminal
    assert len(lines) == 4, lines
    assert all(len(line) <= 50 for line in lines), lines
    assert lines[3].startswith("…") and lines[3].endswith("…")
