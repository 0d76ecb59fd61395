"""Auto-training off while annotations are posted, and put back exactly as it was.

Geti trains after every 12 new annotations by default (GETI_ANNOTATIONS.md §8); a bulk
import would start dozens of trainings. Each task's setting is read first and kept in
the journal *before* it is switched off, so a run stopped by Ctrl-C or a fatal error
restores it on the way out, and the next run restores it after a `kill -9` (§13: the
SDK sets a fixed value instead and skips the step when the import raised).

The shards of one `--shard` split share the project's setting, so the first shard to
finish must not switch it back on while the others still post annotations. A sharded run
marks its journal `auto_training_posting` while it posts, under a short lock shared by
the split, and at its end puts the setting back only when no sibling journal (found beside
its own by the `shard-K-of-N` in its name) is held by a run that is posting; the original
is what any shard read before switching off. Otherwise it leaves it off and says so: the
last shard to finish puts it back.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from geti_bulk.errors import FatalError, GetiBulkError, TargetNotFoundError, TransientError
from geti_bulk.events import Notice, Reporter
from geti_bulk.geti.client import GetiClient, Target
from geti_bulk.journal import Journal, JournalReader
from geti_bulk.journal_lock import SplitLock, is_held
from geti_bulk.shard import Shard

META_KEY = "auto_training_restore"
POSTING_KEY = "auto_training_posting"


class AutoTraining:
    def __init__(self, client: GetiClient, target: Target, journal: Journal | None,
                 reporter: Reporter, shard: Shard | None = None) -> None:
        self.client = client
        self.shard = shard if shard is not None and shard.count > 1 else None
        self.target = target
        self.journal = journal
        self.reporter = reporter
        self.original: dict[str, bool] = {}
        self._lock: Any = None
        self._done = False

    def take_over(self) -> None:
        """What a killed run left to restore is restored at the end of this one."""
        self.original = self._saved()

    async def ensure_off(self) -> None:
        """Before the first annotation of the run (a rerun with nothing left to annotate
        never touches the setting); once."""
        if self._lock is None:
            import anyio

            self._lock = anyio.Lock()
        async with self._lock:
            if not self._done:
                await self.switch_off()
                self._done = True

    async def switch_off(self) -> None:
        """Remember each task's setting (a previous, killed run's memory wins), then off."""
        split = self._split()
        if split is None:
            await self._switch_off()
            return
        assert self.journal is not None
        async with SplitLock(split[1]):
            self.journal.set_meta(POSTING_KEY, "1")
            await self.journal.flush()
            await self._switch_off()

    async def _switch_off(self) -> None:
        saved = self._saved()
        try:
            current = await self.client.auto_training(self.target)
        except TargetNotFoundError as e:   # a Geti before 2.12: no project_configuration
            self.reporter.emit(Notice(f"auto-training: left as it is ({e})"))
            return
        except FatalError:
            raise
        except GetiBulkError as e:
            self.reporter.emit(Notice(f"auto-training: left as it is ({e})"))
            return
        self.original = {**current, **saved}
        if self.journal is not None:
            self.journal.set_meta(META_KEY, json.dumps(self.original))
            await self.journal.flush()
        if any(current.values()):
            await self.client.set_auto_training(self.target, {t: False for t in current})
            names = ", ".join(t for t, on in self.original.items() if on)
            self.reporter.emit(Notice(f"auto-training: off while annotations are posted "
                                      f"(task {names}); restored at the end"))

    async def restore(self) -> None:
        """Put back what was read; on failure the journal keeps it for the next run."""
        if self.shard is None:
            await self._restore()
            return
        if not self._done and not self.original:
            return     # this shard never switched it off and has nothing of a killed run's
        split = self._split()
        if split is None:
            self.reporter.emit(Notice(
                "auto-training: left off, since the other shards' journals cannot be found "
                "beside this one (their names must differ only in shard-K-of-N, as the "
                "default journals and k8s-manifest's do); switch it back on in Geti when "
                "every shard is done"))
            return
        siblings, lock_file = split
        assert self.journal is not None
        async with SplitLock(lock_file):
            self.journal.set_meta(POSTING_KEY, None)
            await self.journal.flush()
            missing = [str(i) for i, p in siblings if not p.exists()]
            posting = [str(i) for i, p in siblings if p.exists() and _posting(p)]
            if missing or posting:
                why = []
                if posting:
                    why.append("shard(s) " + ", ".join(posting) + " still posting")
                if missing:
                    why.append("shard(s) " + ", ".join(missing) + " not started here")
                self.reporter.emit(Notice(
                    f"auto-training: left off ({'; '.join(why)}): the last shard of "
                    f"{self.shard.count} to finish switches it back on"))
                return
            for _i, p in siblings:
                for task, on in _saved_in(p).items():
                    self.original[task] = self.original.get(task, False) or on
            await self._restore()

    async def _restore(self) -> None:
        if not self.original:
            return
        try:
            if any(self.original.values()):
                await self.client.set_auto_training(self.target, self.original)
        except (TransientError, GetiBulkError) as e:
            self.reporter.emit(Notice(f"auto-training: could not be restored ({e}); the next "
                                      "run restores it"))
            return
        if self.journal is not None:
            self.journal.set_meta(META_KEY, None)
        self.original = {}

    def _saved(self) -> dict[str, bool]:
        return {} if self.journal is None else _saved_in(self.journal.path)

    def _split(self) -> tuple[list[tuple[int, Path]], Path] | None:
        """The sibling shards' journals and the split's lock file, from this journal's
        name; None when unsharded or the name has no `shard-K-of-N`."""
        if self.shard is None or self.journal is None:
            return None
        name = self.journal.path.name
        tag = f"shard-{self.shard.index}-of-{self.shard.count}"
        if name.count(tag) != 1:
            return None
        siblings = [(i, self.journal.path.with_name(
                        name.replace(tag, f"shard-{i}-of-{self.shard.count}")))
                    for i in range(self.shard.count) if i != self.shard.index]
        lock = self.journal.path.with_name(
            name.replace(tag, f"shards-of-{self.shard.count}") + ".autotrain.lock")
        return siblings, lock


def _meta(path: Path) -> dict[str, str]:
    try:
        reader = JournalReader(path)
    except (OSError, sqlite3.Error):
        return {}
    try:
        return reader.meta()
    except sqlite3.Error:    # created, its tables not made yet
        return {}
    finally:
        reader.close()


def _saved_in(path: Path) -> dict[str, bool]:
    raw = _meta(path).get(META_KEY)
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    return {str(k): bool(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _posting(path: Path) -> bool:
    """A sibling shard posts annotations now: it marked so, and a run holds its journal
    (a killed run's mark counts for nothing: the kernel dropped its lock)."""
    return _meta(path).get(POSTING_KEY) == "1" and is_held(path)
