"""`--shard K/N`: which files one of N cooperating runs takes.

A file belongs to the shard rclone's `--hash-filter K/N` puts it in: its path relative
to the source argument it was found under (`cat/x.jpg` under `./imagenet/train`,
`images/train/x.jpg` in a COCO dataset, the path as a manifest writes it, or the file's
name when the argument is the file), Unicode NFC, lower-cased, UTF-8, md5, the first 8
bytes as a little-endian integer, mod N. So the shards are disjoint and together
complete, the split does not depend on where the tree is mounted, on the machine, on the
order of the walk or on a macOS (NFD) or Linux (NFC) spelling of a name, and
`rclone lsf -R --files-only --hash-filter K/N SOURCE` lists shard K's files.

K is 0-based (0 … N-1), as Kubernetes' `JOB_COMPLETION_INDEX` is, so an Indexed Job
passes its index unchanged. Each shard keeps its own journal, which records the shard
it belongs to (`meta.shard`); a journal without one was made by an unsharded run (0/1).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass

from geti_bulk.errors import ConfigError

UNSHARDED = "0/1"
# recorded in each sharded journal: a geti-bulk that splits otherwise must not resume it
# (a file that moved to another shard would be sent again by that shard)
SPLIT_RULE = "rclone hash-filter: md5(lower(nfc(rel)))[:8] little-endian mod N"


@dataclass(frozen=True, slots=True)
class Shard:
    index: int      # 0-based, like JOB_COMPLETION_INDEX
    count: int

    def wants(self, rel: str) -> bool:
        """Whether the file at `rel` (relative to its source argument) is this shard's."""
        return self.count == 1 or shard_of(rel, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def shard_of(rel: str, count: int) -> int:
    """The shard (0-based) of a relative path, as rclone's `--hash-filter` computes it."""
    rel = rel.strip("/")
    while rel.startswith("./"):
        rel = rel[2:]
    name = unicodedata.normalize("NFC", rel).lower()
    digest = hashlib.md5(name.encode("utf-8", "surrogateescape"), usedforsecurity=False).digest()
    return int.from_bytes(digest[:8], "little") % count


def parse_shard(text: str, where: str = "upload -> shard") -> Shard | None:
    """`K/N` (K from 0 to N-1) → a Shard; empty → None (the whole tree)."""
    text = str(text).strip()
    if not text:
        return None
    m = re.fullmatch(r"(\d+)\s*/\s*(\d+)", text)
    if not m:
        raise ConfigError(f"{where}: expected K/N, e.g. 0/4 (K counts from 0, like "
                          f"Kubernetes' JOB_COMPLETION_INDEX), not {text!r}")
    k, n = int(m.group(1)), int(m.group(2))
    if n < 1:
        raise ConfigError(f"{where}: N must be at least 1, not {n}")
    if k >= n:
        hint = f"; the last of {n} is {n - 1}/{n}" if k == n else ""
        raise ConfigError(f"{where}: K counts from 0 to N-1 (like JOB_COMPLETION_INDEX), "
                          f"so {k}/{n} is out of range{hint}")
    return Shard(k, n)


def journal_shard_problem(recorded: str | None, has_rows: bool, shard: Shard | None,
                          path: object, rule: str | None = None) -> str | None:
    """Why this run may not use a journal another shard (or an unsharded run) keeps, or
    None. `recorded` is the journal's `meta.shard` and `rule` its `meta.shard_rule`; a
    journal with rows and no record was made by an unsharded run."""
    mine = str(shard) if shard is not None else UNSHARDED
    theirs = recorded if recorded is not None else (UNSHARDED if has_rows else None)
    if theirs is None:
        return None
    if theirs == mine:
        if mine != UNSHARDED and rule is not None and rule != SPLIT_RULE:
            return (f"journal: {path} was split by another rule ({rule}) than this "
                    f"geti-bulk's ({SPLIT_RULE}); finish it with the geti-bulk that made it")
        return None
    this = "unsharded" if mine == UNSHARDED else f"--shard {mine}"
    return (f"journal: {path} belongs to {_name(theirs)}, and this run is {this}; "
            "each shard keeps its own journal (leave out --journal for a per-shard default, "
            "or name another file)")


def _name(shard: str) -> str:
    return "an unsharded run" if shard == UNSHARDED else f"--shard {shard}"
