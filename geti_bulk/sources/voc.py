"""Pascal VOC detection: `Annotations/<id>.xml`, `JPEGImages/<id>.<ext>`, subsets from
`ImageSets/Main/{train,val,test}.txt` (`trainval.txt` only when neither train nor val
exists; `<class>_train.txt` files are ignored).

XML is parsed with defusedxml and refused outright if it declares a DTD, entities or
external references (billion laughs, XXE), or is larger than 16 MiB. `<size>` gives
width/height. Each top-level `<object>` gives its `<name>` and `<bndbox>`; VOC boxes are
1-based and inclusive, so x = xmin - 1, y = ymin - 1, width = xmax - xmin + 1 and
height = ymax - ymin + 1. `difficult`, `truncated`, `occluded` and `pose` are not labels
and are ignored; `<part>`s of an object are not objects. An XML without `<object>` is
known-empty; an image without XML is unannotated; an XML (or an ImageSets id) naming no
image in JPEGImages is counted as missing. Images are matched by name from directory
listings, never opened.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path

from geti_bulk.sources.common import (
    DatasetError,
    add_missing,
    count_item,
    is_image_name,
    names_in,
    read_small,
    safe_rel,
)
from geti_bulk.sources.model import Box, ReaderStats, SourceAnnotation, SourceItem, SourceObject

SETS = ("train", "val", "test")


def probe(root: Path) -> str | None:
    ann = root / "Annotations"
    if not ann.is_dir() or not (root / "JPEGImages").is_dir():
        return None
    if not names_in(ann, ".xml"):
        return None
    return "found Annotations/*.xml and JPEGImages/ (Pascal VOC)"


def read_subsets(root: Path) -> dict[str, str]:
    """Image id → subset from ImageSets/Main."""
    folder = root / "ImageSets" / "Main"
    names = [s for s in SETS if (folder / f"{s}.txt").is_file()]
    if not ({"train", "val"} & set(names)) and (folder / "trainval.txt").is_file():
        names.insert(0, "trainval")
    out: dict[str, str] = {}
    for subset in names:
        data = read_small(folder / f"{subset}.txt")
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else ""
        for line in text.splitlines():
            parts = line.split()
            if parts:
                out.setdefault(parts[0], subset)
    return out


def _number(obj: ET.Element, path: str) -> float | None:
    text = obj.findtext(path)
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def _size(root: ET.Element) -> tuple[int | None, int | None]:
    w, h = _number(root, "size/width"), _number(root, "size/height")
    return (int(w) if w and w > 0 else None, int(h) if h and h > 0 else None)


def _object(obj: ET.Element) -> SourceObject | str:
    name = (obj.findtext("name") or "").strip()
    if not name:
        return "object without a <name>"
    if obj.find("bndbox") is None:
        return f"object {name!r} has no <bndbox>"
    coords = [_number(obj, f"bndbox/{k}") for k in ("xmin", "ymin", "xmax", "ymax")]
    if any(c is None for c in coords):
        return f"object {name!r}: <bndbox> needs numeric xmin, ymin, xmax, ymax"
    xmin, ymin, xmax, ymax = (float(c) for c in coords if c is not None)
    w, h = xmax - xmin + 1, ymax - ymin + 1
    if w <= 0 or h <= 0:
        return f"object {name!r}: box with no area"
    return SourceObject((name,), Box(xmin - 1, ymin - 1, w, h))


def parse_xml(data: bytes) -> SourceAnnotation:
    """One VOC XML → its annotation; refused XML gives a problem, never an exception."""
    import defusedxml
    import defusedxml.ElementTree as SafeET
    try:
        root = SafeET.fromstring(data, forbid_dtd=True, forbid_entities=True,
                                 forbid_external=True)
    except defusedxml.DefusedXmlException as e:
        return SourceAnnotation(problems=(f"XML refused: {type(e).__name__} "
                                          "(DTDs and entities are not allowed)",))
    except ET.ParseError as e:
        return SourceAnnotation(problems=(f"XML is not well-formed: {e}",))
    if root.tag != "annotation":
        return SourceAnnotation(problems=(f"not a VOC annotation (root element <{root.tag}>)",))
    width, height = _size(root)
    objects = root.findall("object")
    if not objects:
        return SourceAnnotation(width=width, height=height, empty=True)
    parsed = [_object(o) for o in objects]
    return SourceAnnotation(
        objects=tuple(o for o in parsed if not isinstance(o, str)), width=width,
        height=height, problems=tuple(o for o in parsed if isinstance(o, str)))


class VocReader:
    format = "voc"
    wanted: Callable[[str], bool] | None = None    # see DatasetReader.wanted

    def __init__(self, root: Path) -> None:
        self.root = root
        if not (root / "Annotations").is_dir() or not (root / "JPEGImages").is_dir():
            raise DatasetError(f"no Pascal VOC layout (Annotations/ and JPEGImages/) in {root}")
        self.subsets = read_subsets(root)
        self._stats = ReaderStats()
        self._names: set[str] | None = None

    def describe(self) -> str:
        sets = sorted(set(self.subsets.values()))
        return f"Pascal VOC: Annotations/*.xml, JPEGImages/, subsets {sets or 'none'}"

    def _xml_stems(self) -> set[str]:
        return {name[:-4] for name in names_in(self.root / "Annotations", ".xml")}

    def _images(self) -> dict[str, str]:
        """stem → file name, from JPEGImages' listing."""
        out: dict[str, str] = {}
        for name in names_in(self.root / "JPEGImages"):
            if is_image_name(name) and not name.startswith("."):
                out.setdefault(os.path.splitext(name)[0], name)
        return out

    def label_names(self) -> set[str]:
        """Object names of every XML (reads the XML files, never the images)."""
        if self._names is None:
            self._names = set()
            for stem in sorted(self._xml_stems()):
                ann = self._parse(stem)
                self._names.update(lab for o in ann.objects for lab in o.labels)
        return set(self._names)

    def _parse(self, stem: str) -> SourceAnnotation:
        data = read_small(self.root / "Annotations" / f"{stem}.xml")
        return SourceAnnotation(problems=(data,)) if isinstance(data, str) else parse_xml(data)

    def annotations_ready(self) -> bool:
        return True

    @property
    def stats(self) -> ReaderStats:
        return self._stats

    def close(self) -> None:
        pass

    def annotation_for(self, rel: str) -> SourceAnnotation | None:
        clean = safe_rel(rel)
        if clean is None or not clean.startswith("JPEGImages/"):
            return None
        stem = os.path.splitext(clean.rsplit("/", 1)[-1])[0]
        if not (self.root / "Annotations" / f"{stem}.xml").is_file():
            return None
        return self._parse(stem)

    def items(self) -> Iterator[SourceItem]:
        xmls = self._xml_stems()
        images = self._images()
        for stem, name in images.items():
            if self.wanted is not None and not self.wanted(f"JPEGImages/{name}"):
                continue
            ann = self._parse(stem) if stem in xmls else None
            subset = self.subsets.get(stem)
            labels = [lab for o in ann.objects for lab in o.labels] if ann else []
            count_item(self._stats, subset, labels, len(ann.problems) if ann else 0,
                       ann is not None)
            yield SourceItem(path=self.root / "JPEGImages" / name, rel=f"JPEGImages/{name}",
                             subset=subset, annotation=ann)
        for stem in sorted(xmls - images.keys()):
            add_missing(self._stats, f"Annotations/{stem}.xml")
        for stem in sorted(self.subsets.keys() - images.keys() - xmls):
            add_missing(self._stats, f"ImageSets/Main/{self.subsets[stem]}.txt: {stem}")
