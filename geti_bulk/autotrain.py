"""Auto-training off while annotations are posted, and put back exactly as it was.

Geti trains after every 12 new annotations by default (GETI_ANNOTATIONS.md §8); a bulk
import would start dozens of trainings. Each task's setting is read first and kept in
the journal *before* it is switched off, so a run stopped by Ctrl-C or a fatal error
restores it on the way out, and the next run restores it after a `kill -9` (§13: the
SDK sets a fixed value instead and skips the step when the import raised).
"""

from __future__ import annotations

import json
from typing import Any

from geti_bulk.errors import FatalError, GetiBulkError, TargetNotFoundError, TransientError
from geti_bulk.events import Notice, Reporter
from geti_bulk.geti.client import GetiClient, Target
from geti_bulk.journal import Journal, JournalReader

META_KEY = "auto_training_restore"


class AutoTraining:
    def __init__(self, client: GetiClient, target: Target, journal: Journal | None,
                 reporter: Reporter) -> None:
        self.client = client
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
        if self.journal is None:
            return {}
        reader = JournalReader(self.journal.path)
        try:
            raw = reader.meta().get(META_KEY)
        finally:
            reader.close()
        if not raw:
            return {}
        data = json.loads(raw)
        return {str(k): bool(v) for k, v in data.items()} if isinstance(data, dict) else {}
