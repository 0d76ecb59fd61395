"""The unit of work: one file to upload, as the scanner found it."""

from __future__ import annotations

import os
from dataclasses import dataclass

from geti_bulk.sources.model import SourceAnnotation


def safe_text(s: str) -> str:
    """A str that encodes as UTF-8: undecodable file-name bytes become U+FFFD."""
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        return os.fsencode(s).decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class FileJob:
    path: str                 # as found on disk (may hold surrogate escapes)
    key: str                  # journal key: the file's identity (`scan.identity`), UTF-8 safe
    size: int = 0
    mtime_ns: int = 0
    kind: str | None = None   # "image" | "video" | None when unsupported
    labels: tuple[str, ...] = ()
    problem: str | None = None   # found by the scanner: the file fails with this reason
    # what the dataset says of the file (None: nothing to annotate); `deferred`: the
    # reader knows it only later (ask it by `rel` once its index is complete)
    annotation: SourceAnnotation | None = None
    deferred: bool = False
    rel: str = ""             # path relative to the source argument (manifest: its row's path)
    reader: int = -1          # a dataset job: which of the run's dataset readers named it
    subset: str | None = None
    dataset_id: str | None = None    # where it goes, when not the run's dataset
    # filled from the journal by the producer
    prior_state: str | None = None
    prior_media_id: str | None = None
    prior_size: int | None = None
    prior_mtime_ns: int | None = None
    prior_uncertain: bool = False
    prior_sha256: str | None = None
    prior_width: int | None = None
    prior_height: int | None = None
    prior_updated: float = 0.0      # when the journal last wrote the row (time.time())

    @property
    def annotated(self) -> bool:
        """Whether this file has an annotation step after its media."""
        return self.annotation is not None or self.deferred

    @property
    def filename(self) -> str:
        return safe_text(os.path.basename(self.path))

    @property
    def display(self) -> str:
        return self.key
