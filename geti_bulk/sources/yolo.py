"""Ultralytics YOLO: `images/<subset>/…` with `labels/<subset>/…` (or flat `images/` +
`labels/`, or Roboflow's `<subset>/images` + `<subset>/labels`), class names from
`data.yaml` (`names` as a list or an {index: name} dict; `train`/`val`/`test` name the
subset folders or .txt image lists) or `classes.txt`.

A label file is found as Ultralytics finds it: the last `/images/` of the image's path
becomes `/labels/` and the extension `.txt`. Lines are `cls cx cy w h` (a box, normalised
to 0–1) or `cls x1 y1 x2 y2 …` (a polygon, ≥ 3 points). Coordinates are converted to
pixels with the image size read from the file's header (only for label files that have
lines), and SourceAnnotation.width/height are set to that size. An empty .txt is
known-empty (`empty=True`); no .txt means unannotated (annotation None). Lines with an
unknown class index, a wrong number of values, non-numbers or no area are dropped, each
with its line number and reason. A .txt with no image beside it is counted as missing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from geti_bulk.sources.common import (
    DatasetError,
    add_missing,
    count_item,
    finite_numbers,
    image_dims,
    is_image_name,
    names_in,
    polygon_from_flat,
    read_small,
    rel_of,
    safe_rel,
    walk_images,
)
from geti_bulk.sources.model import Box, ReaderStats, SourceAnnotation, SourceItem, SourceObject

SPLIT_KEYS = ("train", "val", "test")
SPLIT_DIRS = ("train", "val", "valid", "validation", "test")
YAML_NAMES = ("data.yaml", "dataset.yaml", "data.yml", "dataset.yml")


def label_path(image: Path) -> Path:
    """Ultralytics' img2label_paths: …/images/…/x.jpg → …/labels/…/x.txt."""
    text = str(image)
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    if sa in text:
        text = sb.join(text.rsplit(sa, 1))
    return Path(os.path.splitext(text)[0] + ".txt")


def find_yaml(root: Path) -> tuple[Path, dict[str, Any]] | None:
    """The dataset YAML (safe_load only) that has `names`, or None."""
    candidates = [root / n for n in YAML_NAMES] + sorted(root.glob("*.y*ml"))
    for path in dict.fromkeys(candidates):
        if not path.is_file():
            continue
        data = read_small(path)
        if isinstance(data, str):
            continue
        import yaml  # only when there is a YAML file to read (start-up time)

        try:
            doc = yaml.safe_load(data)
        except yaml.YAMLError:
            continue
        if isinstance(doc, dict) and "names" in doc:
            return path, doc
    return None


def _name(value: object) -> str | None:
    """A class name must be a scalar (a YAML alias tree is not a name)."""
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value).strip() or None
    return None


def names_from(doc: dict[str, Any] | None, root: Path) -> list[str | None]:
    """Class index → name (None for an index a dict leaves out)."""
    raw = doc.get("names") if doc else None
    if isinstance(raw, list):
        return [_name(n) for n in raw]
    if isinstance(raw, dict):
        index = {int(k): _name(v) for k, v in raw.items()
                 if isinstance(k, (int, str)) and str(k).strip().isdigit()}
        return [index.get(i) for i in range(max(index, default=-1) + 1)]
    for path in (root / "classes.txt", root / "labels" / "classes.txt"):
        data = read_small(path) if path.is_file() else ""
        if isinstance(data, bytes):
            return [line.strip() for line in data.decode("utf-8", "replace").splitlines()
                    if line.strip()]
    raise DatasetError(f"YOLO dataset {root} names no classes: data.yaml `names` or "
                       "classes.txt is needed")


def probe(root: Path) -> str | None:
    found = find_yaml(root)
    if found is not None:
        try:
            count = f"{len(names_from(found[1], root))} classes"
        except DatasetError:
            count = "unreadable"
        return f"found {found[0].name} with names ({count})"
    for images, labels in _pairs(root):
        if any(p.suffix == ".txt" for p in labels.rglob("*.txt")):
            return (f"found {rel_of(root, images)}/ and {rel_of(root, labels)}/*.txt "
                    "(Ultralytics layout)")
    return None


def _pairs(root: Path) -> list[tuple[Path, Path]]:
    pairs = [(root / "images", root / "labels")]
    pairs += [(root / s / "images", root / s / "labels") for s in SPLIT_DIRS]
    return [(i, lab) for i, lab in pairs if i.is_dir() and lab.is_dir()]


def _resolve(root: Path, yaml_dir: Path, base: object, value: str) -> Path | None:
    """A `train:`-style entry as a folder or list file inside root, or None."""
    value = value.strip()
    stripped = value
    while stripped.startswith("../"):
        stripped = stripped[3:]
    bases = [yaml_dir / str(base)] if isinstance(base, str) and base else []
    for cand in [*(b / value for b in bases), yaml_dir / value, root / value, root / stripped]:
        try:
            resolved = cand.resolve()
        except OSError:
            continue
        if resolved.exists() and resolved.is_relative_to(root.resolve()):
            return root / resolved.relative_to(root.resolve())
    return None


def splits(root: Path, doc: dict[str, Any] | None, yaml_dir: Path,
           notes: list[str] | None = None) -> list[tuple[str | None, Path]]:
    """(subset, image folder or list file) to read, in order; entries of the YAML that
    name nothing inside root are appended to `notes`."""
    out: list[tuple[str | None, Path]] = []
    for key in SPLIT_KEYS if doc else ():
        values = doc.get(key) if doc else None
        for value in values if isinstance(values, list) else [values]:
            if isinstance(value, str) and value.strip():
                found = _resolve(root, yaml_dir, doc.get("path") if doc else None, value)
                if found is None and notes is not None:
                    notes.append(f"data.yaml {key}: {value!r} names no folder or list "
                                 "inside the dataset")
                elif found is not None and (key, found) not in out:
                    out.append((key, found))
    if out:
        return out
    images = root / "images"
    if images.is_dir():
        subs = [d for d in sorted(images.iterdir()) if d.is_dir() and d.name in SPLIT_DIRS]
        return [(d.name, d) for d in subs] if subs else [(None, images)]
    return [(s, root / s / "images") for s in SPLIT_DIRS if (root / s / "images").is_dir()]


def parse_lines(text: str, names: list[str | None], image: Path) -> SourceAnnotation:
    """One label file's lines → objects in pixels (reading `image`'s header for its size)."""
    lines = [(n, line.split()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not lines:
        return SourceAnnotation(empty=True)
    dims = image_dims(image)
    if isinstance(dims, str):
        return SourceAnnotation(problems=tuple(f"line {n}: dropped, image size unknown ({dims})"
                                               for n, _ in lines))
    width, height = dims
    objects: list[SourceObject] = []
    problems: list[str] = []
    for n, tokens in lines:
        obj = _line(tokens, names, width, height)
        if isinstance(obj, str):
            problems.append(f"line {n}: {obj}")
        else:
            objects.append(obj)
    return SourceAnnotation(objects=tuple(objects), width=width, height=height,
                            problems=tuple(problems))


def _line(tokens: list[str], names: list[str | None], w: int, h: int) -> SourceObject | str:
    try:
        values = [float(t) for t in tokens]
    except ValueError:
        return "values are not numbers"
    nums = finite_numbers(values)
    if nums is None:
        return "values are not finite numbers"
    cls, coords = nums[0], nums[1:]
    if cls != int(cls) or not 0 <= cls < len(names) or names[int(cls)] is None:
        return f"class index {tokens[0]} is not defined ({len(names)} names)"
    label = (str(names[int(cls)]),)
    if len(coords) == 4:
        cx, cy, bw, bh = coords
        if bw <= 0 or bh <= 0:
            return "box with no area"
        return SourceObject(label, Box((cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h))
    if len(coords) < 6 or len(coords) % 2:
        return (f"{len(coords)} coordinates after the class index: 4 make a box, "
                "an even count of 6 or more a polygon")
    shape = polygon_from_flat([v * (w if i % 2 == 0 else h) for i, v in enumerate(coords)])
    return shape if isinstance(shape, str) else SourceObject(label, shape)


class YoloReader:
    format = "yolo"
    wanted: Callable[[str], bool] | None = None    # see DatasetReader.wanted

    def __init__(self, root: Path) -> None:
        self.root = root
        found = find_yaml(root)
        self._yaml = found[0] if found else None
        doc = found[1] if found else None
        self.names = names_from(doc, root)
        self._stats = ReaderStats()
        self.splits = splits(root, doc, self._yaml.parent if self._yaml else root,
                             self._stats.problems)
        if not self.splits:
            raise DatasetError(f"no YOLO image folder (images/ or a data.yaml split) in {root}")

    def describe(self) -> str:
        source = self._yaml.name if self._yaml else "classes.txt"
        parts = ", ".join(f"{s or '-'}: {rel_of(self.root, p) or '.'}" for s, p in self.splits)
        return f"YOLO: {len(self.label_names())} classes from {source}; {parts}"

    def label_names(self) -> set[str]:
        return {n for n in self.names if n is not None}

    def annotations_ready(self) -> bool:
        return True

    @property
    def stats(self) -> ReaderStats:
        return self._stats

    def close(self) -> None:
        pass

    def annotation_for(self, rel: str) -> SourceAnnotation | None:
        image = self.root / rel
        label = label_path(image)
        if safe_rel(rel) is None or not label.is_file():
            return None
        data = read_small(label)
        if isinstance(data, str):
            return SourceAnnotation(problems=(data,))
        return parse_lines(data.decode("utf-8", "replace"), self.names, image)

    def items(self) -> Iterator[SourceItem]:
        for subset, source in self.splits:
            if source.is_file():
                yield from self._listed(subset, source)
                continue
            for folder, files in walk_images(source):
                yield from self._folder(subset, folder, files)

    def _folder(self, subset: str | None, folder: Path, files: list[str]) -> Iterator[SourceItem]:
        label_dir = label_path(folder / "x.jpg").parent
        txts = set(names_in(label_dir, ".txt"))
        stems: set[str] = set()
        for name in files:
            stem = os.path.splitext(name)[0]
            stems.add(stem)
            has_label = f"{stem}.txt" in txts
            if self._wants(folder / name):
                yield self._item(subset, folder / name, has_label)
        if label_dir != folder:
            for orphan in sorted(txts - {f"{s}.txt" for s in stems} - {"classes.txt"}):
                add_missing(self._stats, rel_of(self.root, label_dir / orphan))

    def _listed(self, subset: str | None, listing: Path) -> Iterator[SourceItem]:
        data = read_small(listing)
        lines = data.decode("utf-8", "replace").splitlines() if isinstance(data, bytes) else []
        for line in lines:
            rel = safe_rel(line.strip().removeprefix("./"))
            if rel is None or not is_image_name(rel):
                continue
            image = listing.parent / rel
            if not image.is_relative_to(self.root) or not self._wants(image):
                continue
            yield self._item(subset, image, label_path(image).is_file())

    def _wants(self, image: Path) -> bool:
        return self.wanted is None or self.wanted(rel_of(self.root, image))

    def _item(self, subset: str | None, image: Path, has_label: bool) -> SourceItem:
        rel = rel_of(self.root, image)
        ann = self.annotation_for(rel) if has_label else None
        labels = [lab for o in ann.objects for lab in o.labels] if ann else []
        count_item(self._stats, subset, labels, len(ann.problems) if ann else 0, ann is not None)
        return SourceItem(path=image, rel=rel, subset=subset, annotation=ann)
