"""The end-of-run summary: one model, two renderings (rich table, plain ASCII lines).

Counts, bytes and timing come from `RunFinished`; failures grouped by reason come from
the `FileFailed` events the reporter collected itself (`FailureGroups`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from geti_bulk.events import RunFinished

from .tally import FailureGroups

if TYPE_CHECKING:
    from rich.console import RenderableType
from .text import format_bytes, format_duration, format_rate, printable, safe

MAX_GROUPS_SHOWN = 20


def status(finished: RunFinished) -> str:
    """`completed`, `interrupted[ by <signal>]` or `stopped: <fatal reason>`."""
    if finished.fatal:
        return f"stopped: {safe(finished.fatal)}"
    if finished.interrupted:
        return f"interrupted by {finished.signal}" if finished.signal else "interrupted"
    return "completed"


def throughput(finished: RunFinished) -> str:
    if finished.elapsed <= 0:
        return "-"
    files_per_s = finished.uploaded / finished.elapsed
    return f"{format_rate(finished.bytes_sent / finished.elapsed)}, {files_per_s:.1f} files/s"


def retries_text(retries: dict[str, int]) -> str:
    if not retries:
        return "0"
    causes = ", ".join(f"{safe(cause)}: {n}" for cause, n in
                       sorted(retries.items(), key=lambda item: -item[1]))
    return f"{sum(retries.values())} ({causes})"


def _rows(finished: RunFinished) -> list[tuple[str, str]]:
    return [
        ("status", status(finished)),
        ("uploaded", str(finished.uploaded)),
        ("skipped", str(finished.skipped)),
        ("failed", str(finished.failed)),
        ("not started", str(finished.not_started)),
        *_notes(finished),
        ("bytes", format_bytes(finished.bytes_sent)),
        ("elapsed", format_duration(finished.elapsed)),
        ("throughput", throughput(finished)),
        ("retries", retries_text(finished.retries)),
    ]


def _notes(finished: RunFinished) -> list[tuple[str, str]]:
    """Rows only when there is something to say: what the run passed over or changed."""
    out = []
    if finished.ignored:
        out.append(("ignored", f"{finished.ignored} (not media)"))
    if finished.symlinks_skipped:
        out.append(("symlinks", f"{finished.symlinks_skipped} skipped (not followed; pass "
                                "--follow-symlinks)"))
    if finished.unlabelled:
        out.append(("no label", f"{finished.unlabelled} uploaded without a label"))
    if finished.shapes_clipped or finished.shapes_dropped:
        out.append(("shapes", f"{finished.shapes_clipped} clipped, {finished.shapes_dropped} "
                              "dropped: see the report"))
    return out


def _failure_lines(failures: FailureGroups) -> list[tuple[int, str, str]]:
    """(count, reason, example paths) for the most common reasons."""
    return [(group.count, safe(reason), ", ".join(printable(p) for p in group.examples)
             + (", …" if group.count > len(group.examples) else ""))
            for reason, group in failures.most_common()[:MAX_GROUPS_SHOWN]]


def stopped_before_anything(finished: RunFinished) -> bool:
    """A fatal stop before any file was settled (wrong token, missing project): the one
    error line says it all, and an all-zero summary next to it is noise."""
    return bool(finished.fatal) and not (finished.uploaded or finished.skipped
                                         or finished.failed or finished.bytes_sent)


def plain_summary(finished: RunFinished, failures: FailureGroups) -> list[str]:
    """ASCII only, no colour, no box drawing: safe for CI logs and `| tee`."""
    lines = ["--- summary ---"]
    lines += [f"{label + ':':<13}{value}".replace("…", "...") for label, value in _rows(finished)]
    groups = _failure_lines(failures)
    if groups:
        lines.append("failures by reason:")
        lines += [f"  {count} x {reason} (e.g. {examples})".replace("…", "...")
                  for count, reason, examples in groups]
        hidden = len(failures.groups) - len(groups)
        if hidden > 0:
            lines.append(f"  ... and {hidden} more reasons")
    if finished.report_path:
        lines.append(f"{'report:':<13}{printable(finished.report_path)}")
    return lines


def rich_summary(finished: RunFinished, failures: FailureGroups) -> RenderableType:
    """A counts table, then failures grouped by reason, then the report path."""
    from rich.console import Group  # rich only for the rich display (start-up time)
    from rich.table import Table
    from rich.text import Text

    counts = Table(title="Summary", show_header=False, title_justify="left")
    counts.add_column(style="bold")
    counts.add_column()
    for label, value in _rows(finished):
        counts.add_row(label, Text(value))
    parts: list[RenderableType] = [counts]
    groups = _failure_lines(failures)
    if groups:
        table = Table(title="Failures by reason", title_justify="left")
        table.add_column("count", justify="right")
        table.add_column("reason", style="red")
        table.add_column("examples")
        for count, reason, examples in groups:
            table.add_row(str(count), Text(reason), Text(examples))
        parts.append(table)
    if finished.report_path:
        parts.append(Text(f"report: {printable(finished.report_path)}"))
    return Group(*parts)
