"""The per-file report: one JSON line per input file, written as results arrive."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import IO

from geti_bulk.events import JOURNAL_SKIP, Event, FileDone, FileFailed, FileSkipped, JournalSkipped

_ROWS = (FileDone, FileSkipped, JournalSkipped, FileFailed)   # the events that make a row
_encode = json.JSONEncoder(ensure_ascii=False).encode             # json.dumps, once set up


class ReportWriter:
    """A Reporter that keeps uploaded / skipped / failed rows in a JSON-lines file.

    Files the journal settles in bulk (`JournalSkipped`, a resume) are one summary row
    at the end, `{"status": "skipped", "reason": …, "files": N, "bytes": B, "journal": …}`,
    not one row each: `geti-bulk status --list done JOURNAL` names them."""

    def __init__(self, path: Path, journal: Path | None = None) -> None:
        self.path = path
        self.journal = journal
        self.journal_skipped = 0
        self.journal_skipped_bytes = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f: IO[str] | None = path.open("w", encoding="utf-8", buffering=1 << 16)
        self.rows = 0
        self._flushed = time.monotonic()
        self.error: str | None = None   # a failed write (a full disk); the run stops

    def emit(self, event: Event) -> None:
        if self._f is None or type(event) not in _ROWS:
            return
        row: dict[str, object]
        if isinstance(event, FileDone):
            row = {"path": event.path, "status": "uploaded", "media_id": event.media_id,
                   "size": event.size, "attempts": event.attempts, "adopted": event.adopted}
            if event.shapes:
                row["shapes"] = event.shapes
            if event.notes:
                row["notes"] = event.notes
        elif isinstance(event, FileSkipped):
            row = {"path": event.path, "status": "skipped", "reason": event.reason,
                   "size": event.size}
            if event.media_id:
                row["media_id"] = event.media_id
        elif isinstance(event, JournalSkipped):
            self.journal_skipped += event.files
            self.journal_skipped_bytes += event.bytes
            return
        elif isinstance(event, FileFailed):
            row = {"path": event.path, "status": "failed", "reason": event.reason,
                   "size": event.size}
            if event.status is not None:
                row["http_status"] = event.status
            if event.media_id:
                row["media_id"] = event.media_id
        else:
            return
        try:
            self._f.write(_encode(row) + "\n")
            self.rows += 1
            now = time.monotonic()
            if now - self._flushed >= 1.0:    # a kill -9 loses at most the last second of rows
                self._f.flush()
                self._flushed = now
        except OSError as e:
            self._failed(e)

    def _failed(self, e: OSError) -> None:
        self.error = self.error or f"{type(e).__name__}: {e.strerror or e}"
        f, self._f = self._f, None
        if f is not None:
            try:
                f.close()
            except OSError:
                pass

    def close(self) -> None:
        if self._f is not None:
            if self.journal_skipped:
                row: dict[str, object] = {
                    "status": "skipped", "reason": JOURNAL_SKIP, "files": self.journal_skipped,
                    "bytes": self.journal_skipped_bytes}
                if self.journal is not None:
                    row["journal"] = str(self.journal)
                    row["list_with"] = f"geti-bulk status --list done {self.journal}"
                try:
                    self._f.write(json.dumps(row, ensure_ascii=False) + "\n")
                    self.rows += 1
                except OSError as e:
                    self.error = self.error or f"{type(e).__name__}: {e.strerror or e}"
            try:
                self._f.close()
            except OSError as e:
                self.error = self.error or f"{type(e).__name__}: {e.strerror or e}"
            self._f = None
