"""What one COCO entry means, as pure functions: the checks of an `images` entry and of an
`annotations` entry (box, polygon parts, RLE), reading `categories` quickly, finding the
files and the images folder. `coco_index` stores what these return; `coco` reads it back.
"""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path
from typing import Any, TypeGuard

from geti_bulk.sources.common import (
    finite_numbers,
    json_head_keys,
    list_json,
    polygon_from_flat,
    safe_rel,
    strip_task_prefix,
    subset_from_stem,
)
from geti_bulk.sources.rle import MISSING_DECODER, Decoder

TAIL_BYTES = 4 * 1024 * 1024
Row = tuple[int, int, int | None, float | None, float | None, float | None, float | None,
            str | None, str | None]


def is_int(v: object) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


def image_row(img: object) -> tuple[int, str, int | None, int | None] | str:
    """(id, file_name, width, height) of one `images` entry, or why it is dropped."""
    if not isinstance(img, dict) or not is_int(img.get("id")):
        return "image entry without an integer id"
    name = safe_rel(img.get("file_name"))
    if name is None:
        return "image file_name missing, absolute or outside the dataset"
    w, h = img.get("width"), img.get("height")
    return (img["id"], name, w if is_int(w) and w > 0 else None,
            h if is_int(h) and h > 0 else None)


def _polygons(parts: list[Any]) -> tuple[list[list[float]], str | None]:
    good: list[list[float]] = []
    bad: list[str] = []
    for part in parts:
        flat = finite_numbers(part) if isinstance(part, list) else None
        shape = "polygon coordinates are not numbers" if flat is None else polygon_from_flat(flat)
        if isinstance(shape, str):
            bad.append(shape)
        elif flat is not None:
            good.append(flat)
    return good, ("; ".join(sorted(set(bad))) if bad else None)


def _rle(seg: dict[str, Any], decoder: Decoder | None) -> tuple[list[list[float]], str | None]:
    if decoder is None:
        return [], MISSING_DECODER
    try:
        return _polygons(decoder(seg))
    except ValueError as e:
        return [], str(e)


def ann_row(fid: int, img: int, a: dict[str, Any], decoder: Decoder | None) -> tuple[Row, int]:
    """The stored row of one annotation entry and how many shapes it yields."""
    cat = a.get("category_id")
    cat_id = cat if is_int(cat) else None
    seg = a.get("segmentation")
    parts: list[list[float]] = []
    problem: str | None = None if cat_id is not None else "category_id is not an integer"
    if isinstance(seg, dict):
        parts, shape_problem = _rle(seg, decoder)
    elif isinstance(seg, list) and any(seg):
        parts, shape_problem = _polygons(seg)
    else:
        box = a.get("bbox")
        nums = finite_numbers(box) if isinstance(box, list) and len(box) == 4 else None
        if nums is None:
            shape_problem = "bbox is not [x, y, width, height] numbers"
        elif nums[2] <= 0 or nums[3] <= 0:
            shape_problem = "box with no area"
        else:
            x, y, w, h = nums
            return (fid, img, cat_id, x, y, w, h, None, problem), int(problem is None)
    problem = problem or shape_problem
    poly = json.dumps(parts, separators=(",", ":")) if parts and cat_id is not None else None
    n = len(parts) if poly else 0
    return (fid, img, cat_id, None, None, None, None, poly, problem), n


_CAT_KEY = re.compile(rb'"categories"\s*:\s*\[')


def _tail_categories(path: Path) -> list[Any] | None:
    """COCO files put `categories` last: find the top-level key in the last TAIL_BYTES.
    A match is taken only if `{` + the rest of the file parses as one complete object
    (a nested or quoted "categories" leaves unbalanced brackets and fails)."""
    import ijson
    with path.open("rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - TAIL_BYTES))
        buf = f.read()
    for m in list(_CAT_KEY.finditer(buf))[::-1][:8]:
        start = m.start()
        slashes = len(buf[:start]) - len(buf[:start].rstrip(b"\\"))
        if slashes % 2:
            continue
        try:
            found = list(ijson.items(io.BytesIO(b"{" + buf[start:]), "categories",
                                     use_float=True))
        except (ijson.JSONError, ValueError):
            continue
        if len(found) == 1 and isinstance(found[0], list):
            return found[0]
    return None


def _scan_categories(path: Path) -> list[Any]:
    import ijson
    with path.open("rb") as f:
        for value in ijson.items(f, "categories", use_float=True):
            return value if isinstance(value, list) else []
    return []


def read_categories(path: Path) -> tuple[dict[int, str], list[str]]:
    """(category id → name, problems) of one file: the tail probe (milliseconds), else a
    categories-only pass that stops right after the array (see coco.py for timings)."""
    raw = _tail_categories(path)
    if raw is None:
        raw = _scan_categories(path)
    cats: dict[int, str] = {}
    problems: list[str] = []
    for c in raw:
        cid = c.get("id") if isinstance(c, dict) else None
        name = c.get("name") if isinstance(c, dict) else None
        if not is_int(cid) or not isinstance(name, str) or not name.strip():
            problems.append(f"category entry {c!r:.60} has no integer id and name")
        elif cid in cats:
            problems.append(f"category id {cid} defined twice (kept {cats[cid]!r})")
        else:
            cats[cid] = name.strip()
    return cats, problems


def resolve_base(root: Path, json_path: Path, subset: str | None, first: str) -> str:
    """The folder (relative to root) the file's `file_name`s are relative to: the first
    candidate holding the first image, else the most specific folder that exists."""
    tag = strip_task_prefix(json_path.stem)
    here = json_path.parent.relative_to(root).as_posix()
    cands = [f"images/{tag}", *([f"images/{subset}"] if subset else []), tag,
             *([subset] if subset else []), "images",
             *([here] if here not in (".", "annotations") else [])]
    seen = [c for c in dict.fromkeys(cands) if (root / c).is_dir()] + [""]
    for cand in seen:
        if (root / cand / first).exists():
            return cand
    return seen[0]


def is_coco_file(path: Path) -> bool:
    keys = json_head_keys(path)
    return keys.get("images") == "start_array" or keys.get("annotations") == "start_array"


def find_coco_files(root: Path) -> list[Path]:
    """`annotations/*.json` (only `instances_*` if there are any), else `*.json` at the
    root, else Roboflow's `<subset>/_annotations.coco.json`; COCO-shaped files only."""
    found = [p for p in list_json(root / "annotations") if is_coco_file(p)]
    instances = [p for p in found if p.stem.startswith("instances_")]
    if instances or found:
        return instances or found
    found = [p for p in list_json(root) if is_coco_file(p)]
    if found:
        return found
    return sorted(p for p in root.glob("*/_annotations.coco.json") if is_coco_file(p))


def probe(root: Path) -> str | None:
    """Why `root` looks like COCO, or None."""
    files = find_coco_files(root)
    if not files:
        return None
    keys = sorted(k for k in json_head_keys(files[0]) if k in ("images", "annotations",
                                                              "categories"))
    more = f" (+{len(files) - 1} more)" if len(files) > 1 else ""
    return f"found {files[0].relative_to(root).as_posix()}{more} with {'/'.join(keys)} keys"


def subset_of(path: Path) -> str | None:
    if path.name == "_annotations.coco.json":
        return path.parent.name
    return subset_from_stem(path.stem)
