"""Datumaro JSON: `annotations/<subset>.json` (`default` means no subset) with
`categories.label.labels[].name` and `items[]`: `id`, `image.path` (or `media.path`;
default `<id>.jpg`) relative to `images/<subset>/`, `images/` or the root, whichever holds
the first item's image, `image.size` as [height, width], and `annotations[]` whose `type`
is `label` (whole image: SourceObject(shape=None)), `bbox` ([x, y, w, h]), `polygon`
(flat points), `ellipse` (two corner points) or `mask` (RLE: polygons if the optional
decoder of `rle.py` is installed, else dropped with the reason). Other types (points,
polyline, caption, cuboid_3d) are dropped with the reason; `hash_key` is not an
annotation and is skipped. An item with an empty `annotations` list is known-empty, as
in COCO.

Files are streamed with ijson (`items.item`), never loaded whole; categories come first
in Datumaro's own exports, so reading them stops early. `annotation_for` (resumes) builds
an SQLite rel → item index on its first call, one pass, then answers by key.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from geti_bulk.sources.common import (
    DatasetError,
    add_missing,
    count_item,
    finite_numbers,
    join_rel,
    json_head_keys,
    list_json,
    polygon_from_flat,
    safe_rel,
    subset_from_stem,
)
from geti_bulk.sources.model import (
    Box,
    Ellipse,
    ReaderStats,
    SourceAnnotation,
    SourceItem,
    SourceObject,
)
from geti_bulk.sources.rle import MISSING_DECODER, Decoder, load_decoder


def is_datumaro_file(path: Path) -> bool:
    keys = json_head_keys(path)
    if "images" in keys or "annotations" in keys:
        return False
    return (keys.get("items") == "start_array" or "dm_format_version" in keys
            or keys.get("categories") == "start_map")


def find_files(root: Path) -> list[Path]:
    return [p for p in list_json(root / "annotations") if is_datumaro_file(p)]


def probe(root: Path) -> str | None:
    files = find_files(root)
    if not files:
        return None
    keys = "/".join(k for k in json_head_keys(files[0]) if k in ("categories", "items"))
    return f"found annotations/{files[0].name} with {keys or 'Datumaro'} keys (Datumaro)"


def read_labels(path: Path) -> list[str | None]:
    """Label index → name (`categories.label.labels`), a pass that stops after it."""
    import ijson
    with path.open("rb") as f:
        try:
            for labels in ijson.items(f, "categories.label.labels"):
                return [(e.get("name") or None) if isinstance(e, dict) else None
                        for e in (labels if isinstance(labels, list) else [])]
        except ijson.JSONError as e:
            raise DatasetError(f"{path.name} is not valid JSON: {str(e).splitlines()[0]}") from e
    return []


def convert(a: object, labels: list[str | None], decoder: Decoder | None,
            ) -> list[SourceObject] | str:
    """One Datumaro annotation → objects, or why it is dropped."""
    if not isinstance(a, dict):
        return "annotation is not an object"
    kind = a.get("type")
    if kind == "hash_key":
        return []
    if kind not in ("label", "bbox", "polygon", "ellipse", "mask"):
        return f"annotation type {kind!r} is not supported"
    lid = a.get("label_id")
    name = (labels[lid] if isinstance(lid, int) and not isinstance(lid, bool)
            and 0 <= lid < len(labels) else None)
    if name is None:
        return f"{kind} annotation: label_id {lid!r} is not defined"
    label = (str(name),)
    if kind == "label":
        return [SourceObject(label)]
    if kind == "mask":
        return _mask(a.get("rle"), label, decoder)
    field = "bbox" if kind == "bbox" else "points"
    nums = finite_numbers(a[field]) if isinstance(a.get(field), list) else None
    if nums is None:
        return f"{kind} annotation: {field} are not numbers"
    return _shape(kind, nums, label)


def _shape(kind: str, nums: list[float], label: tuple[str]) -> list[SourceObject] | str:
    if kind == "polygon":
        poly = polygon_from_flat(nums)
        return poly if isinstance(poly, str) else [SourceObject(label, poly)]
    if len(nums) != 4:
        return f"{kind} annotation needs 4 numbers, has {len(nums)}"
    if kind == "bbox":
        x, y, w, h = nums
        return "box with no area" if w <= 0 or h <= 0 else [SourceObject(label, Box(x, y, w, h))]
    x1, y1, x2, y2 = nums
    if x1 == x2 or y1 == y2:
        return "ellipse with no area"
    return [SourceObject(label, Ellipse(min(x1, x2), min(y1, y2), abs(x2 - x1), abs(y2 - y1)))]


def _mask(rle: object, label: tuple[str], decoder: Decoder | None) -> list[SourceObject] | str:
    if decoder is None:
        return MISSING_DECODER
    if not isinstance(rle, dict):
        return "mask annotation without an rle"
    try:
        parts = decoder(rle)
    except ValueError as e:
        return str(e)
    polys = [polygon_from_flat(p) for p in parts]
    good = [SourceObject(label, p) for p in polys if not isinstance(p, str)]
    return good or "mask with no region of 3 or more pixels"


class DatumaroReader:
    format = "datumaro"
    wanted: Callable[[str], bool] | None = None    # see DatasetReader.wanted

    def __init__(self, root: Path, index_dir: Path | None = None) -> None:
        self.root = root
        self.files = find_files(root)
        if not self.files:
            raise DatasetError(f"no Datumaro annotation file (annotations/*.json) in {root}")
        self.subsets = [subset_from_stem(p.stem) for p in self.files]
        self._labels: dict[int, list[str | None]] = {}
        self._bases: dict[int, str] = {}
        self._decoder = load_decoder()
        self._index_dir = index_dir
        self._tmp: str | None = None
        self._index: sqlite3.Connection | None = None
        self._stats = ReaderStats()
        self._lock = threading.Lock()

    def describe(self) -> str:
        return f"Datumaro: {', '.join('annotations/' + p.name for p in self.files)}"

    def labels_of(self, fid: int) -> list[str | None]:
        if fid not in self._labels:
            self._labels[fid] = read_labels(self.files[fid])
        return self._labels[fid]

    def label_names(self) -> set[str]:
        return {n for fid in range(len(self.files)) for n in self.labels_of(fid) if n}

    def annotations_ready(self) -> bool:
        return True

    @property
    def stats(self) -> ReaderStats:
        return self._stats

    def _base(self, fid: int, first: str) -> str:
        if fid not in self._bases:
            cands = [f"images/{self.files[fid].stem}", "images", ""]
            existing = [c for c in cands if (self.root / c).is_dir()]
            hit = [c for c in existing if (self.root / c / first).is_file()]
            self._bases[fid] = (hit or existing)[0]
        return self._bases[fid]

    def _raw_items(self, fid: int) -> Iterator[tuple[str | None, dict[str, Any]]]:
        """(rel or None when the item names no usable file, raw item) of one file."""
        import ijson
        with self.files[fid].open("rb") as f:
            try:
                for raw in ijson.items(f, "items.item", use_float=True):
                    if not isinstance(raw, dict):
                        continue
                    media = raw.get("image") or raw.get("media") or {}
                    name = media.get("path") if isinstance(media, dict) else None
                    name = safe_rel(name or f"{raw.get('id')}.jpg")
                    yield (join_rel(self._base(fid, name), name) if name else None), raw
            except ijson.JSONError as e:
                raise DatasetError(f"{self.files[fid].name} is not valid JSON: "
                                   f"{str(e).splitlines()[0]}") from e

    def annotation_of(self, fid: int, raw: dict[str, Any]) -> SourceAnnotation:
        media = raw.get("image") if isinstance(raw.get("image"), dict) else {}
        size = media.get("size") if isinstance(media, dict) else None
        h, w = size if isinstance(size, list) and len(size) == 2 else (None, None)
        anns = raw.get("annotations")
        anns = anns if isinstance(anns, list) else []
        objects: list[SourceObject] = []
        problems: list[str] = []
        for a in anns:
            got = convert(a, self.labels_of(fid), self._decoder)
            if isinstance(got, str):
                problems.append(got)
            else:
                objects.extend(got)
        return SourceAnnotation(
            objects=tuple(objects), width=w if isinstance(w, int) else None,
            height=h if isinstance(h, int) else None,
            empty=not anns, problems=tuple(problems))

    def items(self) -> Iterator[SourceItem]:
        for fid in range(len(self.files)):
            for rel, raw in self._raw_items(fid):
                if rel is None:
                    add_missing(self._stats, f"annotations/{self.files[fid].name}: "
                                f"item {raw.get('id')!r} names no usable image path")
                    continue
                if self.wanted is not None and not self.wanted(rel):
                    continue
                ann = self.annotation_of(fid, raw)
                count_item(self._stats, self.subsets[fid],
                           [lab for o in ann.objects for lab in o.labels],
                           len(ann.problems), True)
                yield SourceItem(path=self.root / rel, rel=rel, subset=self.subsets[fid],
                                 annotation=ann)

    def annotation_for(self, rel: str) -> SourceAnnotation | None:
        with self._lock:                 # callers may be several threads
            conn = self._index or self._build_index()
            row = conn.execute("SELECT fid, raw FROM items WHERE rel = ?", (rel,)).fetchone()
        return self.annotation_of(row[0], json.loads(row[1])) if row else None

    def _build_index(self) -> sqlite3.Connection:
        folder = self._index_dir
        if folder is None:
            self._tmp = tempfile.mkdtemp(prefix="geti-datumaro-")
            folder = Path(self._tmp)
        folder.mkdir(parents=True, exist_ok=True)
        key = hashlib.sha1(str(self.root.resolve()).encode()).hexdigest()[:12]
        db = folder / f"datumaro-index-{key}.sqlite"
        db.unlink(missing_ok=True)
        conn = sqlite3.connect(db, check_same_thread=False)
        conn.execute("CREATE TABLE items(rel TEXT PRIMARY KEY, fid INTEGER, raw TEXT)")
        for fid in range(len(self.files)):
            rows = ((rel, fid, json.dumps(raw)) for rel, raw in self._raw_items(fid) if rel)
            conn.executemany("INSERT OR IGNORE INTO items VALUES (?, ?, ?)", rows)
        conn.commit()
        self._index = conn
        return conn

    def close(self) -> None:
        with self._lock:
            if self._index is not None:
                self._index.close()
                self._index = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
