"""Format detection: each layout found with its reason, explicit formats checked, the
folders fallback, and open_reader's classes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from geti_bulk.sources.coco import CocoReader
from geti_bulk.sources.common import DatasetError
from geti_bulk.sources.datumaro import DatumaroReader
from geti_bulk.sources.detect import detect_format, open_reader
from geti_bulk.sources.voc import VocReader
from geti_bulk.sources.yolo import YoloReader


def png(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 40)).save(path)


def coco(root: Path, name: str = "instances_val2017.json", first: str = "images") -> Path:
    path = root / "annotations" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    other = "annotations" if first == "images" else "images"
    path.write_text(json.dumps({first: [], other: [], "categories": []}))
    return root


def test_coco_is_found_with_its_keys(tmp_path: Path) -> None:
    assert detect_format(coco(tmp_path)) == (
        "coco", "found annotations/instances_val2017.json with annotations/categories/images "
                "keys")
    ann_first = coco(tmp_path / "b", "instances_train.json", first="annotations")
    assert detect_format(ann_first)[0] == "coco"
    roboflow = tmp_path / "rf" / "train" / "_annotations.coco.json"
    roboflow.parent.mkdir(parents=True)
    roboflow.write_text('{"images": [], "annotations": []}')
    assert detect_format(tmp_path / "rf") == (
        "coco", "found train/_annotations.coco.json with annotations/images keys")


def test_datumaro_is_told_apart_from_coco(tmp_path: Path) -> None:
    path = tmp_path / "annotations" / "default.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"dm_format_version": "1.0", "categories": {"label": {}},
                                "items": []}))
    assert detect_format(tmp_path) == (
        "datumaro", "found annotations/default.json with categories/items keys (Datumaro)")
    assert isinstance(open_reader(tmp_path, "datumaro"), DatumaroReader)
    with pytest.raises(DatasetError, match="--format coco: .* has no annotations/"):
        detect_format(tmp_path, "coco")


def test_voc_and_yolo(tmp_path: Path) -> None:
    voc = tmp_path / "voc"
    (voc / "Annotations").mkdir(parents=True)
    (voc / "Annotations" / "a.xml").write_text("<annotation/>")
    png(voc / "JPEGImages" / "a.jpg")
    assert detect_format(voc) == ("voc", "found Annotations/*.xml and JPEGImages/ (Pascal VOC)")
    assert isinstance(open_reader(voc, "voc"), VocReader)
    yolo = tmp_path / "yolo"
    png(yolo / "images" / "a.jpg")
    (yolo / "data.yaml").write_text("names: [a, b]\n")
    assert detect_format(yolo) == ("yolo", "found data.yaml with names (2 classes)")
    assert isinstance(open_reader(yolo, "yolo"), YoloReader)


def test_folders_is_the_fallback_and_can_be_asked_for(tmp_path: Path) -> None:
    png(tmp_path / "cat" / "1.jpg")
    png(tmp_path / "labels" / "2.jpg")          # a class called "labels" is not YOLO
    fmt, reason = detect_format(tmp_path)
    assert fmt == "folders" and "label folders" in reason
    assert detect_format(tmp_path, "folders")[0] == "folders"
    with pytest.raises(ValueError, match="geti_bulk.scan"):
        open_reader(tmp_path, "folders")
    for wanted, expected in (("voc", "Annotations"), ("yolo", "data.yaml"),
                             ("datumaro", "items array")):
        with pytest.raises(DatasetError, match=expected):
            detect_format(tmp_path, wanted)


def test_unknown_formats_and_missing_folders_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="unknown dataset format 'kitti'"):
        detect_format(tmp_path, "kitti")
    with pytest.raises(DatasetError, match="does not exist"):
        detect_format(tmp_path / "nope")
    with pytest.raises(DatasetError, match="unknown dataset format"):
        open_reader(tmp_path, "kitti")


def test_open_reader_passes_the_index_dir_to_coco(tmp_path: Path) -> None:
    root = coco(tmp_path / "ds")
    reader = open_reader(root, "coco", tmp_path / "journal")
    try:
        assert isinstance(reader, CocoReader)
        assert reader.db.parent == tmp_path / "journal"
        assert list(reader.items()) == [] and reader.label_names() == set()
    finally:
        reader.close()
