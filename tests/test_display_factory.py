"""make_reporter and the small text helpers every reporter shares."""

from __future__ import annotations

import ast
import io
from pathlib import Path

import pytest

from geti_bulk.display import (
    JsonReporter,
    NullReporter,
    PlainReporter,
    RichReporter,
    make_reporter,
)
from geti_bulk.display.tally import MAX_REASONS, OTHER_REASONS, FailureGroups
from geti_bulk.display.text import event_name, format_bytes, format_duration, redact
from geti_bulk.events import FileFailed, RunFinished, RunStarted

DISPLAY = Path(__file__).resolve().parents[1] / "geti_bulk" / "display"


class TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_is_plain_when_not_a_terminal() -> None:
    stream = io.StringIO()
    reporter = make_reporter("auto", stream=stream)
    assert isinstance(reporter, PlainReporter)
    reporter.start()
    reporter.emit(FileFailed("a.jpg", "boom"))
    reporter.stop()
    assert stream.getvalue() == "FAILED a.jpg: boom\n"


def test_auto_is_rich_on_a_terminal() -> None:
    assert isinstance(make_reporter("auto", stream=TTY()), RichReporter)


@pytest.mark.parametrize(("mode", "cls"), [("rich", RichReporter), ("plain", PlainReporter),
                                           ("json", JsonReporter), ("none", NullReporter)])
def test_explicit_modes(mode: str, cls: type) -> None:
    assert isinstance(make_reporter(mode, stream=io.StringIO()), cls)


def test_none_prints_nothing_at_all() -> None:
    stream = io.StringIO()
    reporter = make_reporter("none", stream=stream)
    reporter.start()
    reporter.emit(RunStarted("t", 1))
    reporter.emit(FileFailed("a.jpg", "boom"))
    reporter.emit(RunFinished(0, 0, 1, 0, 1.0))
    reporter.stop()
    assert stream.getvalue() == ""


def test_quiet_and_verbose_reach_the_reporter() -> None:
    reporter = make_reporter("plain", stream=io.StringIO(), quiet=True, verbose=True)
    assert isinstance(reporter, PlainReporter) and reporter.quiet and reporter.verbose


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="auto, rich, plain, json, none"):
        make_reporter("fancy")


def test_display_imports_only_events_of_ours() -> None:
    for source in DISPLAY.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module.startswith("geti_bulk"):
                    assert node.module == "geti_bulk.events", (source.name, node.module)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.startswith("geti_bulk"), (source.name, alias.name)


@pytest.mark.parametrize(("n", "text"), [(0, "0 B"), (999, "999 B"), (1000, "1.0 kB"),
                                         (12_345_678, "12.3 MB"), (-1_500_000, "-1.5 MB"),
                                         (3 * 10**12, "3.0 TB")])
def test_format_bytes(n: int, text: str) -> None:
    assert format_bytes(n) == text


def test_format_duration_and_event_names() -> None:
    assert format_duration(7.4) == "0:00:07"
    assert format_duration(3723) == "1:02:03"
    assert event_name(RunStarted) == "run_started"
    assert event_name(FileFailed) == "file_failed"


def test_redact_leaves_ordinary_reasons_alone() -> None:
    assert redact("HTTP 503: service unavailable") == "HTTP 503: service unavailable"
    assert redact("HTTP 401: token expired") == "HTTP 401: token expired"
    assert redact("x-api-key: s3cr3t") == "x-api-key: ***"
    assert redact("Authorization: Bearer a.b.c; retry") == "Authorization: Bearer *** retry"


def test_failure_reasons_are_capped() -> None:
    groups = FailureGroups()
    for i in range(MAX_REASONS + 10):
        groups.add(f"reason {i}", f"p{i}")
    assert len(groups.groups) == MAX_REASONS + 1
    assert groups.groups[OTHER_REASONS].count == 10
    assert groups.groups[OTHER_REASONS].examples == ["p50", "p51", "p52"]
