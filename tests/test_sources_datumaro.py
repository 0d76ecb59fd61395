"""Datumaro reader: every annotation type, undefined labels, masks without a decoder,
image folder resolution, the lazy resume index and malformed JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from geti_bulk.sources import datumaro
from geti_bulk.sources.common import DatasetError
from geti_bulk.sources.datumaro import DatumaroReader, probe
from geti_bulk.sources.model import Box, Ellipse, Polygon, SourceAnnotation, SourceObject
from geti_bulk.sources.rle import MISSING_DECODER

LABELS = {"label": {"labels": [{"name": "cat", "parent": "", "attributes": []},
                               {"name": "dog", "parent": "", "attributes": []}],
                    "attributes": []}}


def png(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 30)).save(path)


def write(path: Path, items: list[Any], categories: Any = LABELS,
          items_first: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body: dict[str, Any] = {"dm_format_version": "1.0", "infos": {}}
    if items_first:
        body["items"] = items
    body["categories"] = categories
    body["items"] = items
    path.write_text(json.dumps(body))


def item(id_: str, anns: list[Any], path: str | None = None) -> dict[str, Any]:
    image: dict[str, Any] = {"size": [30, 40]}
    if path:
        image["path"] = path
    return {"id": id_, "annotations": anns, "image": image, "attr": {}}


ANNS = [
    {"id": 1, "type": "bbox", "label_id": 0, "bbox": [1, 2, 10, 5], "group": 0},
    {"id": 2, "type": "polygon", "label_id": 1, "points": [0, 0, 8, 0, 8, 6]},
    {"id": 3, "type": "label", "label_id": 1},
    {"id": 4, "type": "ellipse", "label_id": 0, "points": [10, 12, 4, 2]},
    {"id": 5, "type": "mask", "label_id": 0, "rle": {"counts": "04N0", "size": [30, 40]}},
    {"id": 6, "type": "points", "label_id": 0, "points": [1, 1]},
    {"id": 7, "type": "bbox", "label_id": 5, "bbox": [1, 2, 10, 5]},
    {"id": 8, "type": "bbox", "label_id": 0, "bbox": [1, 2, 0, 5]},
    {"id": 9, "type": "polygon", "label_id": 0, "points": [0, 0, 1, 1]},
    {"id": 10, "type": "hash_key", "hash_key": "abc"},
    {"id": 11, "type": "bbox", "label_id": None, "bbox": [1, 2, 3, 4]},
]


@pytest.fixture
def dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(datumaro, "load_decoder", lambda: None)
    root = tmp_path / "dm"
    png(root / "images" / "train" / "a.png")
    png(root / "images" / "train" / "sub" / "b.png")
    png(root / "images" / "c.jpg")
    write(root / "annotations" / "train.json",
          [item("a", ANNS, "a.png"), item("sub/b", [], "sub/b.png"),
           item("evil", [], "../../../etc/passwd")])
    write(root / "annotations" / "default.json", [item("c", [{"type": "label", "label_id": 0}])],
          items_first=True)
    return root


def test_annotation_types_problems_and_stats(dataset: Path) -> None:
    reader = DatumaroReader(dataset)
    items = {i.rel: i for i in reader.items()}
    assert [(rel, i.subset) for rel, i in items.items()] == [
        ("images/c.jpg", None), ("images/train/a.png", "train"),
        ("images/train/sub/b.png", "train")]
    a = items["images/train/a.png"].annotation
    assert a == SourceAnnotation(
        objects=(SourceObject(("cat",), Box(1, 2, 10, 5)),
                 SourceObject(("dog",), Polygon(((0, 0), (8, 0), (8, 6)))),
                 SourceObject(("dog",)),
                 SourceObject(("cat",), Ellipse(4, 2, 6, 10))),
        width=40, height=30,
        problems=(MISSING_DECODER, "annotation type 'points' is not supported",
                  "bbox annotation: label_id 5 is not defined", "box with no area",
                  "polygon with fewer than 3 points",
                  "bbox annotation: label_id None is not defined"))
    assert items["images/train/sub/b.png"].annotation == SourceAnnotation(
        width=40, height=30, empty=True)
    assert items["images/c.jpg"].annotation == SourceAnnotation(
        objects=(SourceObject(("cat",)),), width=40, height=30)
    s = reader.stats
    assert (s.images, s.dropped, s.unannotated) == (3, 6, 0)
    assert s.subsets == {"train": 2} and s.labels == {"cat": 3, "dog": 2}
    assert s.missing_count == 1 and "'evil' names no usable image path" in s.missing_files[0]
    assert reader.label_names() == {"cat", "dog"}
    assert reader.annotation_for("images/train/a.png") == a
    assert reader.annotation_for("images/c.jpg") == items["images/c.jpg"].annotation
    assert reader.annotation_for("images/train/zzz.png") is None
    reader.close()


def test_resume_index_goes_to_the_index_dir(dataset: Path, tmp_path: Path) -> None:
    reader = DatumaroReader(dataset, tmp_path / "journal")
    assert reader.annotation_for("images/train/sub/b.png") == SourceAnnotation(
        width=40, height=30, empty=True)
    assert len(list((tmp_path / "journal").glob("datumaro-index-*.sqlite"))) == 1
    reader.close()


def test_image_path_defaults_to_id_and_root_relative_layout(tmp_path: Path) -> None:
    root = tmp_path / "dm2"
    png(root / "frame_1.jpg")
    write(root / "annotations" / "val.json", [item("frame_1", [])])
    (got,) = DatumaroReader(root).items()
    assert (got.rel, got.subset) == ("frame_1.jpg", "val")


def test_decoded_masks_become_polygons(dataset: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datumaro, "load_decoder",
                        lambda: lambda rle: [[0, 0, 4, 0, 4, 4], [0, 0, 1, 0, 2, 0]])
    reader = DatumaroReader(dataset)
    a = reader.annotation_for("images/train/a.png")
    reader.close()
    assert a is not None
    assert SourceObject(("cat",), Polygon(((0, 0), (4, 0), (4, 4)))) in a.objects
    assert MISSING_DECODER not in a.problems


def test_malformed_json_is_a_dataset_error(tmp_path: Path) -> None:
    root = tmp_path / "broken"
    write(root / "annotations" / "train.json", [item("a", [])])
    path = root / "annotations" / "train.json"
    path.write_text(path.read_text()[:-10])
    reader = DatumaroReader(root)
    with pytest.raises(DatasetError, match="train.json is not valid JSON"):
        list(reader.items())
    assert probe(root) == "found annotations/train.json with categories/items keys (Datumaro)"


def test_no_datumaro_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "x.json").write_text('{"images": [], "annotations": []}')
    with pytest.raises(DatasetError, match="no Datumaro annotation file"):
        DatumaroReader(tmp_path)
