"""YOLO reader: Ultralytics, flat and Roboflow layouts on real image files, normalised
coordinates to pixels via the header size, every kind of bad line."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from geti_bulk.sources.common import DatasetError
from geti_bulk.sources.model import Box, Polygon, SourceAnnotation, SourceObject
from geti_bulk.sources.yolo import YoloReader, label_path, probe


def image(path: Path, size: tuple[int, int] = (100, 50), fmt: str = "PNG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (0, 90, 200)).save(path, fmt)


def text(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)


BAD_LINES = """2 0.5 0.5 0.125 0.25
7 0.5 0.5 0.125 0.25
0 0.5 0.5 0.125
0 a b c d
0 0.5 0.5 0 0.25
0 nan 0.5 0.125 0.25
1 0.5 0.5 0.125 0.25
0 0.125 0.125 0.25 0.25 0.375 0.375
1.5 0.5 0.5 0.125 0.25
"""


@pytest.fixture
def ultralytics(tmp_path: Path) -> Path:
    root = tmp_path / "yolo"
    text(root / "data.yaml", "path: .\ntrain: images/train\nval: images/val\n"
                             "names:\n  0: person\n  1: car\n  3: bike\n")
    for name in ("a", "b", "c", "d"):
        image(root / "images" / "train" / f"{name}.png")
    image(root / "images" / "val" / "e.jpg", (80, 40), "JPEG")
    text(root / "labels" / "train" / "a.txt",
         "0 0.5 0.5 0.25 0.5\n3 0.125 0.25 0.5 0.25 0.5 0.75\n")
    text(root / "labels" / "train" / "b.txt", "\n   \n")
    text(root / "labels" / "train" / "d.txt", BAD_LINES)
    text(root / "labels" / "train" / "orphan.txt", "0 0.5 0.5 0.1 0.1\n")
    text(root / "labels" / "val" / "e.txt", "1 0.25 0.25 0.75 0.25 0.75 0.75 0.25 0.75\n")
    return root


def test_ultralytics_layout_objects_problems_and_stats(ultralytics: Path) -> None:
    reader = YoloReader(ultralytics)
    items = {i.rel: i for i in reader.items()}
    assert [(rel, i.subset) for rel, i in items.items()] == [
        ("images/train/a.png", "train"), ("images/train/b.png", "train"),
        ("images/train/c.png", "train"), ("images/train/d.png", "train"),
        ("images/val/e.jpg", "val")]
    assert items["images/train/a.png"].annotation == SourceAnnotation(
        objects=(SourceObject(("person",), Box(37.5, 12.5, 25, 25)),
                 SourceObject(("bike",), Polygon(((12.5, 12.5), (50, 12.5), (50, 37.5))))),
        width=100, height=50)
    assert items["images/train/b.png"].annotation == SourceAnnotation(empty=True)
    assert items["images/train/c.png"].annotation is None
    d = items["images/train/d.png"].annotation
    assert d is not None and d.objects == (SourceObject(("car",), Box(43.75, 18.75, 12.5, 12.5)),)
    assert d.problems == (
        "line 1: class index 2 is not defined (4 names)",
        "line 2: class index 7 is not defined (4 names)",
        "line 3: 3 coordinates after the class index: 4 make a box, "
        "an even count of 6 or more a polygon",
        "line 4: values are not numbers",
        "line 5: box with no area",
        "line 6: values are not finite numbers",
        "line 8: polygon with no area",
        "line 9: class index 1.5 is not defined (4 names)")
    e = items["images/val/e.jpg"].annotation
    assert e == SourceAnnotation(
        objects=(SourceObject(("car",), Polygon(((20, 10), (60, 10), (60, 30), (20, 30)))),),
        width=80, height=40)
    s = reader.stats
    assert (s.images, s.unannotated, s.dropped) == (5, 1, 8)
    assert s.subsets == {"train": 4, "val": 1}
    assert s.labels == {"person": 1, "bike": 1, "car": 2}
    assert (s.missing_count, s.missing_files) == (1, ["labels/train/orphan.txt"])
    assert reader.label_names() == {"person", "car", "bike"}
    assert reader.annotation_for("images/train/a.png") == items["images/train/a.png"].annotation
    assert reader.annotation_for("images/train/c.png") is None
    assert reader.annotation_for("../yolo/images/train/a.png") is None
    assert reader.describe() == "YOLO: 3 classes from data.yaml; train: images/train, val: images/val"


def test_flat_layout_with_classes_txt_among_the_labels(tmp_path: Path) -> None:
    root = tmp_path / "flat"
    image(root / "images" / "x.png", (64, 32))
    image(root / "images" / "sub" / "y.png", (64, 32))
    text(root / "labels" / "classes.txt", "cat\ndog\n")
    text(root / "labels" / "x.txt", "1 0.5 0.5 0.5 0.5\n")
    text(root / "labels" / "sub" / "y.txt", "")
    reader = YoloReader(root)
    got = [(i.rel, i.subset, i.annotation) for i in reader.items()]
    assert got == [
        ("images/x.png", None, SourceAnnotation(
            objects=(SourceObject(("dog",), Box(16, 8, 32, 16)),), width=64, height=32)),
        ("images/sub/y.png", None, SourceAnnotation(empty=True))]
    assert reader.stats.missing_count == 0 and reader.stats.subsets == {}
    assert probe(root) == "found images/ and labels/*.txt (Ultralytics layout)"


def test_roboflow_yaml_with_parent_relative_splits(tmp_path: Path) -> None:
    root = tmp_path / "rf"
    text(root / "data.yaml", "train: ../train/images\nval: ../valid/images\nnc: 1\n"
                             "names: ['thing']\n")
    image(root / "train" / "images" / "t.png")
    image(root / "valid" / "images" / "v.png")
    text(root / "train" / "labels" / "t.txt", "0 0.5 0.5 0.5 0.5\n")
    reader = YoloReader(root)
    got = [(i.rel, i.subset, i.annotation is not None) for i in reader.items()]
    assert got == [("train/images/t.png", "train", True), ("valid/images/v.png", "val", False)]
    assert reader.stats.problems == []
    (root / "data.yaml").write_text("train: ../train/images\ntest: /content/x/images\n"
                                    "names: [thing]\n")
    again = YoloReader(root)
    assert [s for s, _ in again.splits] == ["train"]
    assert again.stats.problems == [
        "data.yaml test: '/content/x/images' names no folder or list inside the dataset"]
    assert probe(root) == "found data.yaml with names (1 classes)"


def test_split_given_as_an_image_list(tmp_path: Path) -> None:
    root = tmp_path / "lst"
    text(root / "data.yaml", "train: train.txt\nnames: [a]\n")
    image(root / "images" / "p.png")
    image(root / "images" / "q.png")
    text(root / "train.txt", "./images/q.png\n../outside.png\nnotes.md\n")
    text(root / "labels" / "q.txt", "0 0.5 0.5 0.5 0.5\n")
    assert [(i.rel, i.subset) for i in YoloReader(root).items()] == [("images/q.png", "train")]


def test_an_unreadable_image_header_drops_its_lines(tmp_path: Path) -> None:
    root = tmp_path / "bad"
    text(root / "classes.txt", "a\n")
    (root / "images").mkdir(parents=True)
    (root / "images" / "broken.png").write_bytes(b"not an image at all")
    text(root / "labels" / "broken.txt", "0 0.5 0.5 0.5 0.5\n0 0.5 0.5 0.5 0.5\n")
    (item,) = YoloReader(root).items()
    assert item.annotation is not None and item.annotation.objects == ()
    assert len(item.annotation.problems) == 2
    assert item.annotation.problems[0].startswith("line 1: dropped, image size unknown (")


def test_no_class_names_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "nonames"
    image(root / "images" / "a.png")
    text(root / "labels" / "a.txt", "0 0.5 0.5 0.5 0.5\n")
    with pytest.raises(DatasetError, match="names no classes"):
        YoloReader(root)


def test_label_path_follows_ultralytics() -> None:
    assert label_path(Path("/d/images/train/x.jpg")) == Path("/d/labels/train/x.txt")
    assert label_path(Path("/images/d/images/x.png")) == Path("/images/d/labels/x.txt")
    assert label_path(Path("/d/pics/x.jpeg")) == Path("/d/pics/x.txt")
