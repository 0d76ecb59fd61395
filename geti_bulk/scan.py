"""The producer's source side: walk folders or read a manifest, off the event loop.

`iter_jobs` is a plain generator run in a worker thread; it never opens file
contents (the workers do). Symlinks are followed or skipped as configured, and a
followed directory symlink that leads back into the walk is reported, not looped.
"""

from __future__ import annotations

import csv
import fnmatch
import json
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from geti_bulk.errors import ConfigError
from geti_bulk.jobs import FileJob, safe_text
from geti_bulk.media import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, media_kind
from geti_bulk.shard import Shard

SUBSET_FOLDERS = frozenset({"train", "val", "valid", "validation", "test"})
LABEL_SEPARATORS = (";", "|")
# images and videos Geti refuses (GETI_API.md §4.1: its lists are media.IMAGE_EXTENSIONS
# and VIDEO_EXTENSIONS): found in a folder they are failures, to be converted. Any other
# file beside the media (.xml, .txt, .json, .yaml of a VOC or YOLO tree) is ignored.
UNSUPPORTED_MEDIA = frozenset({
    ".gif", ".svg", ".heic", ".heif", ".avif", ".ico", ".jp2", ".j2k", ".jpx", ".jxl",
    ".psd", ".exr", ".hdr", ".tga", ".pgm", ".ppm", ".pbm", ".pnm", ".apng", ".dng",
    ".raw", ".cr2", ".cr3", ".nef", ".arw", ".orf", ".rw2", ".raf",
    ".wmv", ".flv", ".f4v", ".mpg", ".mpeg", ".m2v", ".3gp", ".3g2", ".ts", ".mts", ".m2ts",
    ".ogv", ".vob", ".asf", ".divx", ".mxf", ".m4p", ".rm", ".rmvb",
})


@dataclass(slots=True)
class ScanCounts:
    """What a folder walk passed over without a row, for the summary and the warning of
    an empty source (filled by the scan thread, read once it is done)."""

    symlinks: int = 0      # not followed (no --follow-symlinks)
    ignored: int = 0       # not media at all
    filtered: int = 0      # left out by --include/--exclude


@dataclass(frozen=True, slots=True)
class ScanOptions:
    labels: str = "folders"                    # "folders" | "none"
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    follow_symlinks: bool = False
    include_hidden: bool = False
    subset_folders: frozenset[str] = field(default=SUBSET_FOLDERS)
    shard: Shard | None = None                 # --shard K/N: only this shard's files


def _in_shard(rel: str, opts: ScanOptions) -> bool:
    return opts.shard is None or opts.shard.wants(rel)


def _matches(rel: str, patterns: Iterable[str]) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(rel, p) or fnmatch.fnmatchcase(name, p) for p in patterns)


def _wanted(rel: str, opts: ScanOptions) -> bool:
    if opts.include and not _matches(rel, opts.include):
        return False
    return not (opts.exclude and _matches(rel, opts.exclude))


def folder_label(rel_parts: list[str], opts: ScanOptions) -> tuple[str, ...]:
    """`root/<label>/…/f.jpg` or `root/<train|val|test>/<label>/…/f.jpg` → (label,)."""
    if opts.labels != "folders":
        return ()
    dirs = rel_parts[:-1]
    if dirs and dirs[0].lower() in opts.subset_folders:
        dirs = dirs[1:]
    return (safe_text(dirs[0]),) if dirs else ()


def folder_label_names(roots: Iterable[Path], opts: ScanOptions) -> set[str]:
    """Label names a folder layout implies, from directory names only (cheap pre-pass)."""
    names: set[str] = set()
    if opts.labels != "folders":
        return names

    def children(d: Path) -> list[os.DirEntry[str]]:
        try:
            with os.scandir(d) as it:
                return [e for e in it if e.is_dir(follow_symlinks=opts.follow_symlinks)
                        and (opts.include_hidden or not e.name.startswith("."))]
        except OSError:
            return []

    for root in roots:
        if not root.is_dir():
            continue
        for e in children(root):
            if e.name.lower() in opts.subset_folders:
                names.update(safe_text(c.name) for c in children(Path(e.path))
                             if not opts.exclude or not _matches(f"{e.name}/{c.name}/", opts.exclude))
            elif not opts.exclude or not _matches(e.name + "/", opts.exclude):
                names.add(safe_text(e.name))
    return names


def key_text(s: str) -> str:
    """A journal key part that encodes as UTF-8. Unlike `safe_text` it stays distinct for
    names that differ only in undecodable bytes (`caf\\xe9` vs `caf\\xe8`, not two `caf\ufffd`),
    so two such files never share one journal row."""
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        return os.fsencode(s).decode("utf-8", "backslashreplace")


def _special_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device file"
    return "not a regular file"


def _unsupported(name: str) -> str:
    ext = os.path.splitext(name)[1] or "(none)"
    return (f"unsupported file type {ext}: Geti takes images "
            f"{' '.join(IMAGE_EXTENSIONS)} and videos {' '.join(VIDEO_EXTENSIONS)}")


_KINDS = {**dict.fromkeys(IMAGE_EXTENSIONS, "image"), **dict.fromkeys(VIDEO_EXTENSIONS, "video")}


def _job(path: str, key: str, st: os.stat_result, labels: tuple[str, ...],
         subset: str | None = None, rel: str = "") -> FileJob:
    dot = path.rfind(".")
    kind = _KINDS.get(path[dot:].lower()) if dot > path.rfind("/") else None
    if kind is None:     # the rules in full (`media.media_kind`), for the odd name
        found = media_kind(path)
        kind = found.kind if found else None
    return FileJob(path=path, key=key, size=st.st_size, mtime_ns=st.st_mtime_ns,
                   kind=kind, labels=labels,
                   problem=None if kind else _unsupported(os.path.basename(path)),
                   subset=subset, rel=rel)


def folder_subset(rel_parts: list[str], opts: ScanOptions) -> str | None:
    """`root/<train|val|test>/…/f.jpg` → the subset's folder name, lower-case."""
    first = rel_parts[0].lower() if len(rel_parts) > 1 else ""
    return first if first in opts.subset_folders else None


def identity(path: str | os.PathLike[str]) -> str:
    """A file's identity in the journal: its resolved absolute path (symlinks, `..` and
    the current folder resolved), as UTF-8-safe text. The same file reached through a
    parent folder, another argument order or a symlink has one identity; two different
    files never share one."""
    return key_text(os.path.realpath(path))


@dataclass(slots=True)
class _Dir:
    path: str               # as walked (under the source argument)
    parts: list[str]        # path relative to the source argument
    real: str               # its resolved path, the prefix of its files' identities


# (identity, size, mtime_ns) of a folder's files, a chunk at a time → the positions of
# those that need no job (a resume: the journal holds them as uploaded and unchanged)
Settle = Callable[[list[tuple[str, int, int]]], set[int]]
SETTLE_CHUNK = 256


def walk(root: Path, opts: ScanOptions, counts: ScanCounts | None = None,
         settle: Settle | None = None) -> Iterator[FileJob]:
    """Depth-first walk with an explicit stack (no recursion limit), sorted for stable order.

    A file's key is its identity (`identity`): the folder's resolved path is computed once
    per folder, and so are its files' label and subset, so the walk costs no system call
    but the entry's stat per file. `settle`: asked about the files of a folder a chunk at
    a time before any job is made, so a resume of a million settled files makes none."""
    counts = counts if counts is not None else ScanCounts()
    try:
        rst = root.stat()
    except OSError as err:
        if _in_shard(key_text(root.name), opts):
            yield FileJob(path=str(root), key=key_text(os.path.abspath(root)),
                          rel=key_text(root.name), problem=f"cannot read source: {err.strerror}")
        return
    if not stat.S_ISDIR(rst.st_mode):
        name = key_text(root.name)     # a file given as a source: its shard is its name's
        if not _in_shard(name, opts):
            return
        if not stat.S_ISREG(rst.st_mode):   # a FIFO given as a source must not be opened
            yield FileJob(path=str(root), key=identity(root), rel=name,
                          problem=f"{_special_kind(rst.st_mode)}, not a file")
            return
        yield _job(str(root), identity(root), rst, (), rel=name)
        return
    seen = {(rst.st_dev, rst.st_ino)}
    stack = [_Dir(str(root), [], identity(root))]
    while stack:
        d = stack.pop()
        subdirs: list[_Dir] = []
        try:
            # files stream in directory order (a folder of a million files is never held
            # in memory); subfolders are walked afterwards in name order
            with os.scandir(d.path) as it:
                yield from _entries(it, d, opts, seen, subdirs, counts, settle)
        except OSError as err:
            rel = "/".join(map(key_text, d.parts))
            if _in_shard(rel + "/", opts):
                yield FileJob(path=d.path, key=d.real.rstrip("/") + "/",
                              rel=rel + "/" if rel else "",
                              problem=f"cannot read folder: {err.strerror}")
        subdirs.sort(key=lambda s: s.path)
        stack.extend(reversed(subdirs))


def _entries(it: Iterator[os.DirEntry[str]], d: _Dir, opts: ScanOptions,
             seen: set[tuple[int, int]], subdirs: list[_Dir], counts: ScanCounts,
             settle: Settle | None = None) -> Iterator[FileJob]:
    """One folder's files (the hot loop of a million-file tree: kept flat)."""
    prefix = "/".join(map(key_text, d.parts))
    prefix = prefix + "/" if prefix else ""
    real = d.real.rstrip("/") + "/"
    labels = folder_label([*d.parts, ""], opts)
    subset = folder_subset([*d.parts, ""], opts)
    pending: list[tuple[str, str, os.stat_result, str]] = []   # files for `settle` to see

    def flush() -> Iterator[FileJob]:
        assert settle is not None
        drop = settle([(key, st.st_size, st.st_mtime_ns) for _, key, st, _ in pending])
        for i, (path, key, st, rel) in enumerate(pending):
            if i not in drop:
                yield _job(path, key, st, labels, subset, rel)
        pending.clear()

    hidden = not opts.include_hidden
    filtered = bool(opts.include or opts.exclude)
    follow = opts.follow_symlinks
    shard = opts.shard
    for e in it:
        name = e.name
        if hidden and name.startswith("."):
            continue
        if not name.isascii():
            name = key_text(name)
        rel = prefix + name
        key = real + name
        try:
            link = e.is_symlink()
            if link and not follow:
                counts.symlinks += 1
                continue
            # another shard's file is dropped on its directory entry alone (d_type, no
            # stat), so a shard of a million-file tree stats only its own files
            if (shard is not None and not link and not e.is_dir(follow_symlinks=False)
                    and not shard.wants(rel)):
                continue
            st = e.stat(follow_symlinks=True)
        except OSError as err:
            if (not filtered or _wanted(rel, opts)) and _in_shard(rel, opts):
                if pending:
                    yield from flush()
                why = "broken symlink" if e.is_symlink() else f"cannot stat: {err.strerror}"
                if err.errno == 40:  # ELOOP
                    why = "symlink loop"
                yield FileJob(path=e.path, key=key, rel=rel, problem=why)
            continue
        if link:
            key = identity(e.path)    # a followed symlink: the identity of what it points to
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            ident = (st.st_dev, st.st_ino)
            if ident in seen:
                if _in_shard(rel + "/", opts):
                    yield FileJob(path=e.path, key=key + "/", rel=rel + "/",
                                  problem="symlink loop: folder already visited, not followed")
            elif not (opts.exclude and _matches(rel + "/", opts.exclude)):
                seen.add(ident)
                subdirs.append(_Dir(e.path, [*d.parts, e.name], key))
            continue
        if shard is not None and not shard.wants(rel):
            continue
        if filtered and not _wanted(rel, opts):
            counts.filtered += 1
            continue
        if not stat.S_ISREG(mode):
            if pending:
                yield from flush()
            yield FileJob(path=e.path, key=key, rel=rel,
                          problem=f"{_special_kind(mode)}, not a file")
            continue
        dot = name.rfind(".")
        ext = name[dot:].lower() if dot >= 0 else ""
        if ext not in _KINDS and media_kind(name) is None and ext not in UNSUPPORTED_MEDIA:
            counts.ignored += 1    # an annotation, a list, a README beside the media
            continue
        if settle is None:
            yield _job(e.path, key, st, labels, subset, rel)
            continue
        pending.append((e.path, key, st, rel))
        if len(pending) >= SETTLE_CHUNK:
            yield from flush()
    if pending:
        yield from flush()


# --- manifests -------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ManifestRow:
    line: int
    path: str
    labels: tuple[str, ...]
    problem: str | None = None


def _split_labels(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, list):
        return tuple(str(v).strip() for v in value if str(v).strip())
    text = str(value)
    for sep in LABEL_SEPARATORS:
        text = text.replace(sep, "\n")
    return tuple(p.strip() for p in text.splitlines() if p.strip())


def read_manifest(path: Path) -> Iterator[ManifestRow]:
    """CSV with a `path` column and optional `labels` (`;` or `|` separated), or JSON
    lines `{"path": ..., "labels": [...]}`. Bad rows come back with a `problem`."""
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        with path.open(encoding="utf-8", errors="replace") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as err:
                    yield ManifestRow(n, "", (), f"{path.name}:{n}: not JSON ({err.msg})")
                    continue
                if not isinstance(obj, dict) or not isinstance(obj.get("path"), str) or not obj["path"]:
                    yield ManifestRow(n, "", (), f"{path.name}:{n}: needs a non-empty \"path\" string")
                    continue
                labels = obj.get("labels", obj.get("label"))
                yield ManifestRow(n, obj["path"], _split_labels(labels))
        return
    with path.open(newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.DictReader(f)
        fields = [x.strip().lower() for x in reader.fieldnames or []]
        if "path" not in fields:
            yield ManifestRow(1, "", (), f"{path.name}:1: CSV header needs a 'path' column "
                                         f"(found: {', '.join(fields) or 'nothing'})")
            return
        for row in reader:
            n = reader.line_num
            clean = {str(k).strip().lower(): v for k, v in row.items() if k is not None}
            p = (clean.get("path") or "").strip()
            if not p:
                yield ManifestRow(n, "", (), f"{path.name}:{n}: empty path")
                continue
            yield ManifestRow(n, p, _split_labels(clean.get("labels", clean.get("label"))))


def check_manifests(paths: Iterable[Path]) -> None:
    """A manifest that is wrong as a whole (not one row) is a usage error."""
    for path in paths:
        if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
            continue
        for row in read_manifest(path):
            if row.line == 1 and row.problem:
                raise ConfigError(f"manifest: {row.problem}")
            break


def manifest_label_names(path: Path) -> set[str]:
    return {lab for row in read_manifest(path) for lab in row.labels}


def manifest_jobs(path: Path, opts: ScanOptions) -> Iterator[FileJob]:
    base = path.resolve().parent
    for row in read_manifest(path):
        if row.problem:
            # the key names the manifest's line; the reason says what is wrong with it
            where = f"{path.name}:{row.line}"
            if not _in_shard(where, opts):
                continue
            yield FileJob(path=str(path), key=f"{identity(path)}:{row.line}", rel=where,
                          problem=row.problem.removeprefix(where + ": "))
            continue
        p = Path(row.path)
        full = p if p.is_absolute() else base / p
        rel = key_text(row.path)
        if not _wanted(safe_text(row.path), opts) or not _in_shard(rel, opts):
            continue
        key = identity(full)
        try:
            st = full.stat()
        except OSError as e:
            yield FileJob(path=str(full), key=key, rel=rel,
                          problem=f"{path.name}:{row.line}: cannot read {row.path}: {e.strerror}")
            continue
        if not stat.S_ISREG(st.st_mode):
            yield FileJob(path=str(full), key=key, rel=rel,
                          problem=f"{path.name}:{row.line}: {_special_kind(st.st_mode)}, not a file")
            continue
        yield _job(str(full), key, st, row.labels if opts.labels != "none" else (), rel=rel)


def covered_sources(roots: Iterable[Path], opts: ScanOptions) -> dict[int, int]:
    """Source arguments another one already walks (the same folder twice, or a folder
    inside another), by position: inner → the one that covers it. Walking both would
    hand one run the same files twice; the covering walk reaches them unless a hidden or
    excluded folder lies in between, and then the inner one is walked too."""
    real = [os.path.realpath(r) for r in roots]
    out: dict[int, int] = {}
    for i, inner in enumerate(real):
        for j, outer in enumerate(real):
            if i == j or (inner == outer and j > i) or not os.path.isdir(outer):
                continue            # of two equal arguments, the first is walked
            rel = os.path.relpath(inner, outer)
            if rel.startswith(".."):
                continue
            parts = [] if rel == "." else rel.split(os.sep)
            if not opts.include_hidden and any(p.startswith(".") for p in parts):
                continue
            if opts.exclude and any(_matches("/".join(parts[:k + 1]) + "/", opts.exclude)
                                    for k in range(len(parts) - 1)):
                continue
            out[i] = j
            break
    return out


def iter_jobs(roots: Iterable[Path], manifests: Iterable[Path], opts: ScanOptions,
              counts: ScanCounts | None = None, settle: Settle | None = None
              ) -> Iterator[FileJob]:
    roots = list(roots)
    covered = covered_sources(roots, opts)
    for i, root in enumerate(roots):
        if i not in covered:
            yield from walk(root, opts, counts, settle)
    for m in manifests:
        yield from manifest_jobs(m, opts)
