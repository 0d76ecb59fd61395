"""Which annotation format a dataset folder is in, and the reader for it.

`auto` tries, in order (cheap checks only: directory listings and the first 64 KiB of
JSON files, never a full parse):

1. coco: `annotations/*.json` (else `*.json` at the root, else
   `<subset>/_annotations.coco.json`) whose top level has an `images` or `annotations`
   array;
2. datumaro: `annotations/*.json` whose top level has an `items` array, a
   `dm_format_version` or a `categories` object (and no `images`/`annotations`);
3. voc: `Annotations/` holding *.xml and a `JPEGImages/` folder;
4. yolo: a data.yaml/dataset.yaml (or any root *.yaml) with `names`, or `images/` +
   `labels/` holding .txt files (also `<subset>/images` + `<subset>/labels`);
5. folders: nothing above matched: the `label/file.jpg` classification layout, read
   by `geti_bulk.scan`, not here.

An explicit format is checked the same way and refused with what is missing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from geti_bulk.sources import coco, datumaro, voc, yolo
from geti_bulk.sources.common import DatasetError
from geti_bulk.sources.model import DatasetReader

FORMATS = ("auto", "coco", "yolo", "voc", "datumaro", "folders")
PROBES: dict[str, Callable[[Path], str | None]] = {
    "coco": coco.probe, "datumaro": datumaro.probe, "voc": voc.probe, "yolo": yolo.probe,
}
EXPECTED = {
    "coco": "annotations/*.json with images/annotations arrays",
    "datumaro": "annotations/<subset>.json with an items array",
    "voc": "Annotations/*.xml and JPEGImages/",
    "yolo": "data.yaml with names, or images/ and labels/*.txt",
}


def detect_format(root: Path, wanted: str = "auto") -> tuple[str, str]:
    """(format, one-line reason)."""
    if wanted not in FORMATS:
        raise DatasetError(f"unknown dataset format {wanted!r}: use one of {', '.join(FORMATS)}")
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist or is not a folder")
    if wanted == "folders":
        return "folders", "asked for: label folders (label/file.jpg)"
    if wanted != "auto":
        reason = PROBES[wanted](root)
        if reason is None:
            raise DatasetError(f"--format {wanted}: {root} has no {EXPECTED[wanted]}")
        return wanted, reason
    for fmt, probe in PROBES.items():
        reason = probe(root)
        if reason is not None:
            return fmt, reason
    return "folders", ("no COCO, Datumaro, VOC or YOLO annotation files: "
                       "reading label folders (label/file.jpg)")


def open_reader(root: Path, fmt: str, index_dir: Path | None = None) -> DatasetReader:
    """The reader of `fmt` (as `detect_format` returned it) for `root`. `index_dir` is
    where COCO's (and Datumaro's resume) SQLite index goes; default a temp dir."""
    if fmt == "coco":
        return coco.CocoReader(root, index_dir)
    if fmt == "datumaro":
        return datumaro.DatumaroReader(root, index_dir)
    if fmt == "voc":
        return voc.VocReader(root)
    if fmt == "yolo":
        return yolo.YoloReader(root)
    if fmt == "folders":
        raise ValueError("the folders layout is read by geti_bulk.scan, not a DatasetReader")
    raise DatasetError(f"unknown dataset format {fmt!r}")
