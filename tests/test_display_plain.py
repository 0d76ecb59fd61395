"""PlainReporter: exact lines, rate-limited progress, no control codes."""

from __future__ import annotations

import io

from geti_bulk.display import PlainReporter
from geti_bulk.events import (
    BytesSent,
    ConcurrencyChanged,
    FileDone,
    FileFailed,
    FileQueued,
    FileRetrying,
    FileSkipped,
    FileStarted,
    RunFinished,
    RunStarted,
    RunStopping,
    ScanDone,
)

MB = 1_000_000


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run_sequence(reporter: PlainReporter) -> None:
    reporter.emit(RunStarted("geti.local / cats / ds", concurrency=4))
    reporter.emit(FileQueued("cats/a.jpg", 2 * MB))
    reporter.emit(FileQueued("cats/b.jpg", MB))
    reporter.emit(FileQueued("cats/c.jpg", 10))
    reporter.emit(ScanDone(files=3, bytes=3 * MB + 10))
    reporter.emit(FileStarted("cats/a.jpg", 2 * MB, 1))
    reporter.emit(BytesSent("cats/a.jpg", MB))
    reporter.emit(FileRetrying("cats/a.jpg", 1, "503", 0.5))
    reporter.emit(BytesSent("cats/a.jpg", -MB))
    reporter.emit(FileStarted("cats/a.jpg", 2 * MB, 2))
    reporter.emit(BytesSent("cats/a.jpg", 2 * MB))
    reporter.emit(FileDone("cats/a.jpg", 2 * MB, "m-1", attempts=2))
    reporter.emit(FileSkipped("cats/b.jpg", "already uploaded", MB))
    reporter.emit(ConcurrencyChanged(2))
    reporter.emit(FileStarted("cats/c.jpg", 10, 1))
    reporter.emit(FileFailed("cats/c.jpg", "HTTP 415: unsupported media", 10, 415))
    reporter.emit(RunStopping("Ctrl-C"))
    reporter.emit(RunFinished(uploaded=1, skipped=1, failed=1, bytes_sent=2 * MB,
                              elapsed=2.0, retries={"503": 1}, interrupted=True,
                              report_path="/tmp/report.csv"))


SUMMARY = [
    "--- summary ---",
    "status:      interrupted",
    "uploaded:    1",
    "skipped:     1",
    "failed:      1",
    "not started: 0",
    "bytes:       2.0 MB",
    "elapsed:     0:00:02",
    "throughput:  1.0 MB/s, 0.5 files/s",
    "retries:     1 (503: 1)",
    "failures by reason:",
    "  1 x HTTP 415: unsupported media (e.g. cats/c.jpg)",
    "report:      /tmp/report.csv",
]


def test_exact_lines_for_a_run() -> None:
    stream = io.StringIO()
    run_sequence(PlainReporter(stream, clock=Clock()))
    assert stream.getvalue().splitlines() == [
        "start: geti.local / cats / ds (concurrency 4)",
        "scan done: 3 files, 3.0 MB",
        "uploaded cats/a.jpg 2000000 m-1 after 2 attempts",
        "skipped cats/b.jpg: already uploaded",
        "FAILED cats/c.jpg: HTTP 415: unsupported media",
        "stopping: Ctrl-C",
        *SUMMARY,
    ]


def test_verbose_adds_retries_and_concurrency() -> None:
    stream = io.StringIO()
    run_sequence(PlainReporter(stream, clock=Clock(), verbose=True))
    lines = stream.getvalue().splitlines()
    assert "retry 1 cats/a.jpg: 503 (waiting 0.5 s)" in lines
    assert "concurrency: 2" in lines
    assert lines.index("retry 1 cats/a.jpg: 503 (waiting 0.5 s)") < lines.index(
        "uploaded cats/a.jpg 2000000 m-1 after 2 attempts")


def test_quiet_keeps_only_failures_and_the_summary() -> None:
    stream = io.StringIO()
    run_sequence(PlainReporter(stream, clock=Clock(), quiet=True, interval=0))
    assert stream.getvalue().splitlines() == [
        "FAILED cats/c.jpg: HTTP 415: unsupported media", *SUMMARY]


def test_progress_line_is_rate_limited_by_the_clock() -> None:
    clock = Clock()
    stream = io.StringIO()
    reporter = PlainReporter(stream, interval=10.0, clock=clock)
    reporter.emit(RunStarted("t", 4))
    for i in range(2000):
        reporter.emit(FileQueued(f"f{i}.jpg", 100_000))
    for i in range(120):
        clock.now = i * 0.1                     # 0.0 .. 11.9 s
        reporter.emit(FileStarted(f"f{i}.jpg", 100_000, 1))
        reporter.emit(BytesSent(f"f{i}.jpg", 100_000))
        reporter.emit(FileDone(f"f{i}.jpg", 100_000, f"m{i}", 1))
    progress = [line for line in stream.getvalue().splitlines()
                if line.startswith("progress:")]
    # first due at t=10.0 (i=100), on the FileStarted of f100: 100 done, 10 MB sent
    assert progress == ["progress: 100/2000+ files, 10.0 MB, 1.0 MB/s, 0 failed"]
    clock.now = 15.0
    reporter.emit(ScanDone(2000, 200 * MB))
    assert stream.getvalue().splitlines()[-1] == "scan done: 2000 files, 200.0 MB"
    clock.now = 20.0
    reporter.emit(FileFailed("f500.jpg", "boom"))
    assert stream.getvalue().splitlines()[-1] == (
        "progress: 121/2000 files, 12.0 MB, 200.0 kB/s, 1 failed")


def test_no_control_codes_even_for_odd_names() -> None:
    stream = io.StringIO()
    reporter = PlainReporter(stream, clock=Clock())
    reporter.emit(FileFailed("evil\x1b[2Jname\n.jpg", "bad\rreason\x07"))
    reporter.emit(FileSkipped("caf\udce9.jpg", "not an image"))
    reporter.emit(RunFinished(0, 1, 1, 0, 0.0))
    text = stream.getvalue()
    assert "\x1b" not in text and "\r" not in text and "\x07" not in text
    assert "FAILED evil\\x1b[2Jname\\x0a.jpg: bad\\x0dreason\\x07\n" in text
    assert "skipped caf\\udce9.jpg: not an image\n" in text
    text.encode("ascii")   # the summary uses no box drawing or other non-ASCII


def test_summary_groups_failures_with_three_examples() -> None:
    stream = io.StringIO()
    reporter = PlainReporter(stream, clock=Clock())
    for i in range(5):
        reporter.emit(FileFailed(f"x/{i}.png", "HTTP 500: server error"))
    reporter.emit(FileFailed("y.png", "timeout"))
    reporter.emit(RunFinished(0, 0, 6, 0, 3.0, fatal="507 insufficient storage"))
    lines = stream.getvalue().splitlines()
    assert "status:      stopped: 507 insufficient storage" in lines
    assert "  5 x HTTP 500: server error (e.g. x/0.png, x/1.png, x/2.png, ...)" in lines
    assert "  1 x timeout (e.g. y.png)" in lines
    assert not any(line.startswith("report:") for line in lines)


def test_a_stop_before_any_file_prints_no_empty_summary() -> None:
    stream = io.StringIO()
    reporter = PlainReporter(stream, clock=Clock(), interval=0)
    reporter.emit(RunFinished(uploaded=0, skipped=0, failed=0, bytes_sent=0, elapsed=0.3,
                              fatal="the server rejected the token"))
    assert stream.getvalue() == ""          # the CLI's one error line says it all
    stream = io.StringIO()
    reporter = PlainReporter(stream, clock=Clock(), interval=0)
    reporter.emit(RunFinished(uploaded=3, skipped=0, failed=0, bytes_sent=30, elapsed=0.3,
                              fatal="the server has no room for more media"))
    assert "--- summary ---" in stream.getvalue()   # a stop mid-run still sums up
