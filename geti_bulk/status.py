"""`geti-bulk status`: what one journal holds, or several shards' journals as one view.

Read-only: a journal is read while a run may hold it (WAL), and never locked. With
several journals (`status J0 J1 J2 J3`, the shards of one migration) the counts are
added up, each journal gets a line with its shard, failures are listed with their
shard, and a split that is missing a shard, repeats one, mixes different N or
different targets says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from geti_bulk.journal import JournalReader
from geti_bulk.shard import UNSHARDED

STATES = ("uploaded", "skipped", "failed", "sending")
FAILURES_SHOWN = 50


@dataclass(slots=True)
class JournalView:
    path: Path
    target: str
    shard: str                      # "K/N", or "0/1" for an unsharded run
    counts: dict[str, int]
    failures: list[tuple[str, str]] = field(default_factory=list)
    running: bool = False           # a run holds the journal's lock now

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def read_view(path: Path, failures: int = FAILURES_SHOWN) -> JournalView:
    reader = JournalReader(path)
    try:
        meta = reader.meta()
        from geti_bulk.journal_lock import is_held

        return JournalView(path, meta.get("target", "?"), meta.get("shard", UNSHARDED),
                           reader.counts(), reader.failures(failures), is_held(path))
    finally:
        reader.close()


def count_line(counts: dict[str, int]) -> str:
    total = sum(counts.values())
    parts = ", ".join(f"{counts.get(s, 0)} {s}" for s in STATES)
    if counts.get("media"):
        parts += f", {counts['media']} stored with their annotation still to post"
    return f"{total} files: {parts}"


def one_journal(view: JournalView, *, brief: bool) -> list[str]:
    lines = [str(view.path), f"  target: {view.target}"]
    if view.shard != UNSHARDED:
        lines.append(f"  shard: {view.shard}")
    lines.append(f"  {count_line(view.counts)}")
    if view.running:
        lines.append("  a run is going on this journal now: 'sending' files are on their "
                     "way, and the counts move")
    elif view.counts.get("sending"):
        lines.append("  'sending' files were in flight when a run stopped; the next run "
                     "checks the server for them before sending again")
    if not brief:
        lines += [f"  FAILED {key}: {reason}" for key, reason in view.failures]
        lines += _more_failures(view.counts.get("failed", 0), len(view.failures), [view.path])
    return lines


def merged(views: list[JournalView]) -> list[str]:
    """Several journals (normally the shards of one split) as one view."""
    total: dict[str, int] = {}
    for v in views:
        for state, n in v.counts.items():
            total[state] = total.get(state, 0) + n
    targets = sorted({v.target for v in views})
    lines = [f"{len(views)} journals: {split_line(views)}",
             f"  target: {targets[0]}" if len(targets) == 1 else
             "  warning: the journals are for different targets: " + " | ".join(targets),
             f"  {count_line(total)}"]
    lines += [f"  warning: {w}" for w in split_warnings(views)]
    width = max(len(v.shard) for v in views)
    for v in sorted(views, key=_shard_order):
        lines.append(f"  shard {v.shard:<{width}}  {count_line(v.counts)}  ({v.path})")
    going = [v.shard for v in views if v.running]
    if going:
        lines.append(f"  runs are going now on shard(s) {', '.join(going)}: their counts move")
    if any(v.counts.get("sending") and not v.running for v in views):
        lines.append("  'sending' files of a stopped shard were in flight when its run "
                     "stopped; its next run checks the server for them before sending again")
    failures = sorted(((key, v.shard, reason) for v in views for key, reason in v.failures),
                      key=lambda f: f[0])
    for key, shard, reason in failures[:FAILURES_SHOWN]:
        lines.append(f"  FAILED [shard {shard}] {key}: {reason}")
    shown = min(len(failures), FAILURES_SHOWN)
    lines += _more_failures(total.get("failed", 0), shown, [v.path for v in views])
    return lines


def split_line(views: list[JournalView]) -> str:
    return "shards " + ", ".join(v.shard for v in sorted(views, key=_shard_order))


def split_warnings(views: list[JournalView]) -> list[str]:
    """What keeps these journals from being one complete split."""
    out: list[str] = []
    counts = sorted({_parse(v.shard)[1] for v in views})
    if len(counts) > 1:
        out.append("these journals come from splits into different numbers of shards "
                   f"({', '.join(map(str, counts))}): they do not add up to one tree")
        return out
    n = counts[0]
    seen: dict[str, list[Path]] = {}
    for v in views:
        seen.setdefault(v.shard, []).append(v.path)
    for shard, paths in sorted(seen.items()):
        if len(paths) > 1:
            out.append(f"shard {shard} appears {len(paths)} times: "
                       + ", ".join(map(str, paths)))
    missing = [f"{k}/{n}" for k in range(n) if f"{k}/{n}" not in seen]
    if missing:
        out.append(f"{len(missing)} of {n} shards have no journal here: {', '.join(missing)}"
                   " (not started, or their journals are elsewhere)")
    return out


def _more_failures(failed: int, shown: int, paths: list[Path]) -> list[str]:
    if failed <= shown:
        return []
    return [f"  … and {failed - shown} more failures (every row is in the journal: "
            f"sqlite3 {paths[0]} \"SELECT key, reason FROM files WHERE state='failed'\")"]


def _shard_order(v: JournalView) -> tuple[int, int, str]:
    k, n = _parse(v.shard)
    return (n, k, str(v.path))


def _parse(shard: str) -> tuple[int, int]:
    """`K/N` as recorded in a journal's meta → (K, N); anything else counts as 0/1."""
    k, _, n = shard.partition("/")
    return (int(k), int(n)) if k.isdigit() and n.isdigit() and int(n) > 0 else (0, 1)


def status_lines(paths: list[Path], check: Callable[[Path], None]) -> list[str]:
    """`check` raises for a file that is not a journal (before anything is read)."""
    for p in paths:
        check(p)
    unique: dict[Path, Path] = {}      # one journal named twice (or by two paths) counts once
    for p in paths:
        unique.setdefault(p.resolve(), p)
    notes = [f"note: {len(paths) - len(unique)} journal path(s) named a journal already "
             "given; each journal is counted once"] if len(unique) < len(paths) else []
    views = [read_view(p) for p in unique.values()]
    if len(views) == 1:
        return one_journal(views[0], brief=False) + notes
    return merged(views) + notes
