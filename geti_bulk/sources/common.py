"""Helpers every reader shares: safe relative paths, subset names from file names, a cheap
look at a JSON file's top-level keys, image sizes from headers, shape checks and stats
bookkeeping. Kept here so each format module holds only its format's rules.
"""

from __future__ import annotations

import io
import math
import os
import posixpath
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from geti_bulk.errors import ConfigError
from geti_bulk.media import IMAGE_EXTENSIONS, fast_image_size, image_size
from geti_bulk.sources.model import Polygon, ReaderStats

MAX_LISTED = 100                # ReaderStats.missing_files / problems keep this many
HEAD_BYTES = 64 * 1024
MAX_SMALL_FILE = 16 * 1024 * 1024   # a YOLO .txt, a VOC .xml, a data.yaml: never bigger


class DatasetError(ConfigError):
    """The dataset cannot be read as the asked format (exit 2, like a bad flag)."""


def safe_rel(name: object) -> str | None:
    """`name` as a normalised `/`-separated relative path, or None when it is not a
    string, is empty, absolute, or climbs out of its folder with `..`."""
    if not isinstance(name, str):
        return None
    text = name.replace("\\", "/").strip()
    if not text or text.startswith("/") or re.match(r"^[A-Za-z]:", text) or "\0" in text:
        return None
    norm = posixpath.normpath(text)
    if norm in (".", "") or norm == ".." or norm.startswith("../"):
        return None
    return norm


def join_rel(base: str, name: str) -> str:
    return posixpath.normpath(posixpath.join(base, name)) if base else name


def rel_of(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


_SUBSET_PREFIXES = ("instances_", "person_keypoints_", "panoptic_", "captions_", "image_info_")


def strip_task_prefix(stem: str) -> str:
    """`instances_train2017` → `train2017` (COCO names files task_subsetYEAR)."""
    for prefix in _SUBSET_PREFIXES:
        if stem.startswith(prefix):
            return stem[len(prefix):]
    return stem


def subset_from_stem(stem: str) -> str | None:
    """`instances_train2017` → `train`, `val` → `val`, `instances_default` (CVAT) → None:
    Datumaro's and CVAT's `default` means "no subset"."""
    name = re.sub(r"(?<=[A-Za-z_-])(19|20)\d\d$", "", strip_task_prefix(stem)).strip("_-. ")
    return None if not name or name == "default" else name


def json_head_keys(path: Path, limit: int = HEAD_BYTES) -> dict[str, str]:
    """Top-level keys seen in the first `limit` bytes of a JSON file, each with the event
    that starts its value (`start_array`, `start_map`, `string`, …). Cheap: no full parse."""
    import ijson
    try:
        with path.open("rb") as f:
            head = f.read(limit)
    except OSError:
        return {}
    keys: dict[str, str] = {}
    pending: str | None = None
    try:
        for prefix, event, value in ijson.parse(io.BytesIO(head)):
            if pending is not None:
                keys[pending], pending = event, None
            if prefix == "" and event == "map_key":
                pending = str(value)
    except (ijson.JSONError, ValueError, UnicodeDecodeError):
        pass
    return keys


def list_json(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() == ".json" and p.is_file())


def names_in(folder: Path, suffix: str = "") -> list[str]:
    """Sorted entry names of `folder` ending with `suffix`, from one listing (no stat)."""
    try:
        with os.scandir(folder) as it:
            return sorted(e.name for e in it if e.name.endswith(suffix))
    except OSError:
        return []


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def image_dims(path: Path) -> tuple[int, int] | str:
    """(width, height) from the file's header bytes, or why it cannot be read."""
    try:
        with path.open("rb") as f:
            head = f.read(HEAD_BYTES)
    except OSError as e:
        return f"cannot read the image header: {e.strerror or e}"
    dims = fast_image_size(head)
    return dims if dims is not None else image_size(str(path), path.name)


def read_small(path: Path) -> bytes | str:
    """A small annotation file's bytes, or why it is refused/unreadable."""
    try:
        size = path.stat().st_size
        if size > MAX_SMALL_FILE:
            return f"{path.name} is {size} bytes: larger than {MAX_SMALL_FILE} is refused"
        return path.read_bytes()
    except OSError as e:
        return f"cannot read {path.name}: {e.strerror or e}"


def finite_numbers(values: Iterable[object]) -> list[float] | None:
    """Floats, or None if any value is not a finite number (bools are not numbers)."""
    out: list[float] = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return None
        f = float(v)
        if not math.isfinite(f):
            return None
        out.append(f)
    return out


def polygon_area(flat: Sequence[float]) -> float:
    xs, ys = flat[0::2], flat[1::2]
    n = len(xs)
    return abs(sum(xs[i] * ys[(i + 1) % n] - xs[(i + 1) % n] * ys[i] for i in range(n))) / 2


def polygon_from_flat(flat: Sequence[float]) -> Polygon | str:
    """A Polygon from [x1, y1, x2, y2, …], or why it is not one."""
    if len(flat) % 2:
        return "polygon with an odd number of coordinates"
    if len(flat) < 6:
        return "polygon with fewer than 3 points"
    if polygon_area(flat) <= 0:
        return "polygon with no area"
    return Polygon(tuple(zip(flat[0::2], flat[1::2], strict=True)))


def add_missing(stats: ReaderStats, rel: str) -> None:
    stats.missing_count += 1
    if len(stats.missing_files) < MAX_LISTED:
        stats.missing_files.append(rel)


def count_item(stats: ReaderStats, subset: str | None, labels: Iterable[str],
               dropped: int, annotated: bool) -> None:
    stats.images += 1
    if subset is not None:
        stats.subsets[subset] = stats.subsets.get(subset, 0) + 1
    for name in labels:
        stats.labels[name] = stats.labels.get(name, 0) + 1
    stats.dropped += dropped
    if not annotated:
        stats.unannotated += 1


def walk_images(folder: Path) -> Iterator[tuple[Path, list[str]]]:
    """(directory, sorted image file names) for `folder` and below, in sorted order,
    from directory listings only (no stat of the images; symlinked dirs not followed)."""
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        names = sorted(n for n in filenames if is_image_name(n) and not n.startswith("."))
        if names:
            yield Path(dirpath), names
