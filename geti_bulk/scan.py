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
from collections.abc import Iterable, Iterator
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


def _job(path: str, key: str, st: os.stat_result, labels: tuple[str, ...],
         subset: str | None = None, rel: str = "") -> FileJob:
    kind = media_kind(path)
    return FileJob(path=path, key=key, size=st.st_size, mtime_ns=st.st_mtime_ns,
                   kind=kind.kind if kind else None, labels=labels,
                   problem=None if kind else _unsupported(os.path.basename(path)),
                   subset=subset, rel=rel)


def folder_subset(rel_parts: list[str], opts: ScanOptions) -> str | None:
    """`root/<train|val|test>/…/f.jpg` → the subset's folder name, lower-case."""
    first = rel_parts[0].lower() if len(rel_parts) > 1 else ""
    return first if first in opts.subset_folders else None


def walk(root: Path, opts: ScanOptions, counts: ScanCounts | None = None) -> Iterator[FileJob]:
    """Depth-first walk with an explicit stack (no recursion limit), sorted for stable order."""
    counts = counts if counts is not None else ScanCounts()
    root_name = key_text(root.resolve().name or "root")
    try:
        rst = root.stat()
    except OSError as err:
        if _in_shard(key_text(root.name), opts):
            yield FileJob(path=str(root), key=root_name,
                          problem=f"cannot read source: {err.strerror}")
        return
    if not stat.S_ISDIR(rst.st_mode):
        name = key_text(root.name)     # a file given as a source: its shard is its name's
        if not _in_shard(name, opts):
            return
        if not stat.S_ISREG(rst.st_mode):   # a FIFO given as a source must not be opened
            yield FileJob(path=str(root), key=name,
                          problem=f"{_special_kind(rst.st_mode)}, not a file")
            return
        yield _job(str(root), name, rst, (), rel=name)
        return
    seen = {(rst.st_dev, rst.st_ino)}
    stack: list[tuple[str, list[str]]] = [(str(root), [])]
    while stack:
        d, parts = stack.pop()
        subdirs: list[tuple[str, list[str]]] = []
        try:
            # files stream in directory order (a folder of a million files is never held
            # in memory); subfolders are walked afterwards in name order
            with os.scandir(d) as it:
                for e in it:
                    yield from _entry(e, parts, root_name, opts, seen, subdirs, counts)
        except OSError as err:
            if _in_shard("/".join(map(key_text, parts)) + "/", opts):
                yield FileJob(path=d, key="/".join([root_name, *map(key_text, parts)]) + "/",
                              problem=f"cannot read folder: {err.strerror}")
        subdirs.sort(key=lambda s: s[0])
        stack.extend(reversed(subdirs))


def _entry(e: os.DirEntry[str], parts: list[str], root_name: str, opts: ScanOptions,
           seen: set[tuple[int, int]], subdirs: list[tuple[str, list[str]]],
           counts: ScanCounts) -> Iterator[FileJob]:
    if not opts.include_hidden and e.name.startswith("."):
        return
    rel_parts = [*parts, e.name]
    rel = "/".join(key_text(p) for p in rel_parts)
    key = f"{root_name}/{rel}"
    try:
        if e.is_symlink() and not opts.follow_symlinks:
            counts.symlinks += 1
            return
        # another shard's file is dropped on its directory entry alone (d_type, no stat),
        # so a shard of a million-file tree stats only its own files
        if (opts.shard is not None and not e.is_symlink() and not e.is_dir(follow_symlinks=False)
                and not opts.shard.wants(rel)):
            return
        st = e.stat(follow_symlinks=True)
    except OSError as err:
        if _wanted(rel, opts) and _in_shard(rel, opts):
            why = "broken symlink" if e.is_symlink() else f"cannot stat: {err.strerror}"
            if err.errno == 40:  # ELOOP
                why = "symlink loop"
            yield FileJob(path=e.path, key=key, problem=why)
        return
    if stat.S_ISDIR(st.st_mode):
        ident = (st.st_dev, st.st_ino)
        if ident in seen:
            if _in_shard(rel + "/", opts):
                yield FileJob(path=e.path, key=key + "/",
                              problem="symlink loop: folder already visited, not followed")
        elif not (opts.exclude and _matches(rel + "/", opts.exclude)):
            seen.add(ident)
            subdirs.append((e.path, rel_parts))
        return
    if not _in_shard(rel, opts):
        return
    if not _wanted(rel, opts):
        counts.filtered += 1
        return
    if not stat.S_ISREG(st.st_mode):
        yield FileJob(path=e.path, key=key, problem=f"{_special_kind(st.st_mode)}, not a file",
                      rel=rel)
        return
    if media_kind(e.name) is None and os.path.splitext(e.name)[1].lower() not in UNSUPPORTED_MEDIA:
        counts.ignored += 1    # an annotation, a list, a README beside the media
        return
    yield _job(e.path, key, st, folder_label(rel_parts, opts), folder_subset(rel_parts, opts),
               rel=rel)


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
            # the key names the line; the reason says what is wrong with it
            where = f"{path.name}:{row.line}"
            if not _in_shard(where, opts):
                continue
            yield FileJob(path=str(path), key=where,
                          problem=row.problem.removeprefix(where + ": "))
            continue
        p = Path(row.path)
        full = p if p.is_absolute() else base / p
        key = safe_text(row.path if not p.is_absolute() else str(p))
        if not _wanted(key, opts) or not _in_shard(key_text(row.path), opts):
            continue
        try:
            st = full.stat()
        except OSError as e:
            yield FileJob(path=str(full), key=key,
                          problem=f"{path.name}:{row.line}: cannot read {row.path}: {e.strerror}")
            continue
        if not stat.S_ISREG(st.st_mode):
            yield FileJob(path=str(full), key=key,
                          problem=f"{path.name}:{row.line}: {_special_kind(st.st_mode)}, not a file")
            continue
        yield _job(str(full), key, st, row.labels if opts.labels != "none" else (),
                   rel=key_text(row.path))


def iter_jobs(roots: Iterable[Path], manifests: Iterable[Path], opts: ScanOptions,
              counts: ScanCounts | None = None) -> Iterator[FileJob]:
    for root in roots:
        yield from walk(root, opts, counts)
    for m in manifests:
        yield from manifest_jobs(m, opts)
