"""COCO reader: small real datasets with malformed entries, the SQLite index (in a child
process and in a thread), categories after annotations, reuse, and streaming at scale."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from geti_bulk.sources import coco_index, coco_rules
from geti_bulk.sources.coco import CocoReader, find_coco_files, probe
from geti_bulk.sources.common import DatasetError
from geti_bulk.sources.model import Box, Polygon, SourceAnnotation, SourceObject
from geti_bulk.sources.rle import MISSING_DECODER

RLE = [99, 4, 44, 4, 44, 4, 44, 4, 2825]     # 48x64, column-major: x 2..5, y 3..6 set
CATS = [{"id": 1, "name": "cat", "supercategory": "animal"}, {"id": 3, "name": "dog"}]


def png(path: Path, size: tuple[int, int] = (64, 48)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (200, 10, 10)).save(path)


def write_coco(path: Path, images: list[Any], annotations: list[Any],
               categories: list[Any] = CATS, order: str = "official") -> None:
    """`official` puts categories last, as COCO's own files do."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"info": {"year": 2017}, "licenses": []}
    if order == "categories-first":
        body["categories"] = categories
    body |= {"images": images, "annotations": annotations}
    if order != "categories-first":
        body["categories"] = categories
    path.write_text(json.dumps(body))


def img(i: int, name: str, w: int = 64, h: int = 48) -> dict[str, Any]:
    return {"id": i, "file_name": name, "width": w, "height": h}


def ann(i: int, image_id: Any, cat: Any, bbox: Any = None, seg: Any = None,
        iscrowd: int = 0) -> dict[str, Any]:
    return {"id": i, "image_id": image_id, "category_id": cat, "iscrowd": iscrowd,
            "bbox": bbox if bbox is not None else [1, 2, 3, 4],
            "segmentation": seg if seg is not None else [], "area": 12}


@pytest.fixture(autouse=True)
def no_decoder(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same answers whether or not pycocotools happens to be installed."""
    monkeypatch.setattr("geti_bulk.sources.coco._decoder_available", lambda: False)


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    root = tmp_path / "ds"
    for name in ("a.png", "b.png", "c.png", "d.png"):
        png(root / "images" / "train2017" / name)
    images = [img(1, "a.png"), img(2, "b.png"), img(3, "c.png"), img(4, "d.png"),
              {"id": "x", "file_name": "e.png"}, img(5, "../../etc/passwd")]
    annotations = [
        ann(10, 1, 1, bbox=[10.5, 5, 20, 10]),
        ann(11, 1, 99, bbox=[1, 1, 5, 5]),                              # undefined category
        ann(12, 1, 3, bbox=[1, 1, 0, 5]),                               # no area
        ann(13, 2, 3, seg=[[0, 0, 10, 0, 10, 10], [20, 20, 30, 20, 30, 30, 20, 30]]),
        ann(14, 2, 1, seg=[[0, 0, 10, 0, 10, 10], [1, 1, 2, 2]]),       # one bad part
        ann(15, 4, 1, seg={"size": [48, 64], "counts": RLE}, iscrowd=1),
        ann(16, 777, 1),                                                # unknown image id
        ann(17, 2, "cat"),                                              # not an integer
    ]
    write_coco(root / "annotations" / "instances_train2017.json", images, annotations)
    return root


def collect(reader: CocoReader) -> dict[str, Any]:
    items = list(reader.items())
    assert reader.wait_ready(30)
    return {i.rel: i for i in items}


@pytest.mark.parametrize("indexer", ["process", "thread"])
def test_objects_problems_and_stats_of_a_small_dataset(dataset: Path, tmp_path: Path,
                                                       indexer: str) -> None:
    reader = CocoReader(dataset, tmp_path / "index", indexer=indexer)
    try:
        items = collect(reader)
        assert list(items) == [f"images/train2017/{n}" for n in ("a.png", "b.png", "c.png",
                                                                 "d.png")]
        assert {i.subset for i in items.values()} == {"train"}
        a = reader.annotation_for("images/train2017/a.png")
        assert a == SourceAnnotation(
            objects=(SourceObject(("cat",), Box(10.5, 5, 20, 10)),), width=64, height=48,
            problems=("category id 99 is not defined", "box with no area"))
        b = reader.annotation_for("images/train2017/b.png")
        tri = ((0.0, 0.0), (10.0, 0.0), (10.0, 10.0))
        assert b is not None and b.objects == (
            SourceObject(("dog",), Polygon(tri)),
            SourceObject(("dog",), Polygon(((20, 20), (30, 20), (30, 30), (20, 30)))),
            SourceObject(("cat",), Polygon(tri)))
        assert b.problems == ("polygon with fewer than 3 points",
                              "category_id is not an integer")
        assert reader.annotation_for("images/train2017/c.png") == SourceAnnotation(
            width=64, height=48, empty=True)
        d = reader.annotation_for("images/train2017/d.png")
        assert d == SourceAnnotation(width=64, height=48, problems=(MISSING_DECODER,))
        assert reader.annotation_for("images/train2017/nope.png") is None
        assert reader.label_names() == {"cat", "dog"}
        s = reader.stats
        assert (s.images, s.dropped, s.unannotated) == (4, 6, 0)
        assert s.subsets == {"train": 4} and s.labels == {"cat": 2, "dog": 2}
        assert s.missing_count == 2 and "outside the dataset" in s.missing_files[1]
        joined = "\n".join(s.problems)
        for text in ("1 × annotation points to an unknown image id (e.g. image_id 777)",
                     "1 × annotation uses a category id that is not defined (e.g. id 99)",
                     "1 × box with no area", "1 × " + MISSING_DECODER):
            assert text in joined
    finally:
        reader.close()


def test_items_carry_annotations_once_the_index_is_ready(dataset: Path) -> None:
    reader = CocoReader(dataset, indexer="thread")
    try:
        assert reader.wait_ready(30)
        first = next(reader.items())
        assert first.deferred is False and first.annotation is not None
        assert first.annotation.objects == (SourceObject(("cat",), Box(10.5, 5, 20, 10)),)
        assert first.path == dataset / "images" / "train2017" / "a.png"
    finally:
        reader.close()


def test_a_stub_decoder_turns_rle_into_polygons(dataset: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, Any]] = []

    def decoder(rle: dict[str, Any]) -> list[list[float]]:
        seen.append(rle)
        return [[0, 0, 8, 0, 8, 8], [1, 1, 1, 1, 1, 1]]

    monkeypatch.setattr(coco_index, "load_decoder", lambda: decoder)
    monkeypatch.setattr("geti_bulk.sources.coco._decoder_available", lambda: True)
    reader = CocoReader(dataset, indexer="thread")
    try:
        assert reader.wait_ready(30)
        d = reader.annotation_for("images/train2017/d.png")
        assert d is not None and d.objects == (
            SourceObject(("cat",), Polygon(((0, 0), (8, 0), (8, 8)))),)
        assert d.problems == ("polygon with no area",)
        assert seen == [{"size": [48, 64], "counts": RLE}]
    finally:
        reader.close()


def test_real_rle_decoding_when_pycocotools_is_installed(
        dataset: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pycocotools")
    pytest.importorskip("cv2")
    from geti_bulk.sources.rle import load_decoder

    monkeypatch.setattr("geti_bulk.sources.coco._decoder_available", lambda: True)

    decode = load_decoder()
    assert decode is not None
    reader = CocoReader(dataset)
    try:
        assert reader.wait_ready(30)
        d = reader.annotation_for("images/train2017/d.png")
        assert d is not None and d.problems == ()
        assert d.objects == (SourceObject(("cat",), Polygon(((2, 3), (2, 6), (5, 6), (5, 3)))),)
    finally:
        reader.close()
    compressed = decode({"size": [48, 64], "counts": "S34\\100000mf2"})   # the same mask
    assert compressed == [[2.0, 3.0, 2.0, 6.0, 5.0, 6.0, 5.0, 3.0]]
    # a 10x10 mask, column-major runs: columns 2..5 set on rows 3..6
    counts = [23, 4, 6, 4, 6, 4, 6, 4, 43]
    polys = decode({"size": [10, 10], "counts": counts})
    assert len(polys) == 1
    xs, ys = polys[0][0::2], polys[0][1::2]
    assert (min(xs), max(xs), min(ys), max(ys)) == (2, 5, 3, 6)
    with pytest.raises(ValueError, match="add up"):
        decode({"size": [10, 10], "counts": [5]})


def test_subsets_and_image_folders_of_several_files(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    png(root / "val2017" / "v.png")
    png(root / "images" / "test" / "t.png")
    png(root / "person" / "p.png")
    ann_dir = root / "annotations"
    write_coco(ann_dir / "instances_val2017.json", [img(1, "v.png")], [ann(1, 1, 1)])
    write_coco(ann_dir / "instances_test.json", [img(1, "t.png")], [ann(1, 1, 3)])
    write_coco(ann_dir / "instances_default.json", [img(7, "person/p.png")], [])
    write_coco(ann_dir / "captions_val2017.json", [img(1, "v.png")], [])
    assert [p.name for p in find_coco_files(root)] == [
        "instances_default.json", "instances_test.json", "instances_val2017.json"]
    reader = CocoReader(root, indexer="thread")
    try:
        got = [(i.rel, i.subset) for i in reader.items()]
        assert got == [("person/p.png", None), ("images/test/t.png", "test"),
                       ("val2017/v.png", "val")]
        assert reader.wait_ready(30)
        assert reader.stats.subsets == {"test": 1, "val": 1}
        assert reader.stats.labels == {"cat": 1, "dog": 1}
    finally:
        reader.close()


def test_categories_are_found_wherever_they_are(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.json"
    images = [img(1, 'x"categories": [{"id": 5, "name": "quoted"}]}.png')]
    write_coco(path, images, [ann(1, 1, 1)])
    body = json.loads(path.read_text())
    del body["info"]
    body["info"] = {"categories": [{"id": 9, "name": "fake"}]}   # nested, after the real one
    path.write_text(json.dumps(body))
    assert coco_rules.read_categories(path) == ({1: "cat", 3: "dog"}, [])
    monkeypatch.setattr(coco_rules, "TAIL_BYTES", 16)      # the tail probe finds nothing
    assert coco_rules._tail_categories(path) is None
    assert coco_rules.read_categories(path) == ({1: "cat", 3: "dog"}, [])
    write_coco(path, images, [], [{"id": 1, "name": "a"}, {"id": 1, "name": "b"}, {"x": 1}],
               order="categories-first")
    cats, problems = coco_rules.read_categories(path)
    assert cats == {1: "a"} and len(problems) == 2 and "defined twice" in problems[0]


def test_the_index_is_reused_until_the_file_changes(dataset: Path, tmp_path: Path) -> None:
    index = tmp_path / "journal"
    first = CocoReader(dataset, index)
    assert first.wait_ready(30)
    first.close()
    again = CocoReader(dataset, index)
    try:
        assert again.annotations_ready() and again._proc is None
        assert again.stats.labels == {"cat": 2, "dog": 2}
    finally:
        again.close()
    ann_file = dataset / "annotations" / "instances_train2017.json"
    os.utime(ann_file, ns=(time.time_ns(), time.time_ns() + 10**9))
    changed = CocoReader(dataset, index)
    try:
        changed.label_names()
        assert changed._proc is not None
        assert changed.wait_ready(30)
    finally:
        changed.close()


def test_a_truncated_file_fails_with_a_clear_error(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    path = root / "annotations" / "instances_val.json"
    write_coco(path, [img(i, f"{i}.png") for i in range(1, 50)], [ann(1, 1, 1)])
    path.write_bytes(path.read_bytes()[:-40])
    reader = CocoReader(root)
    try:
        with pytest.raises(DatasetError, match="instances_val.json: cannot be read as COCO"):
            reader.wait_ready(30)
    finally:
        reader.close()
    assert probe(root) is not None


def test_closing_stops_the_indexer_process(dataset: Path) -> None:
    reader = CocoReader(dataset)
    next(reader.items())
    proc = reader._proc
    reader.close()
    assert proc is not None and proc.poll() is not None
    with pytest.raises(DatasetError, match="closed"):
        reader.label_names()


def _big_coco(path: Path, n: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        f.write('{"images": [')
        f.write(",".join(f'{{"id": {i}, "file_name": "{i:07d}.jpg", "width": 640, '
                         f'"height": 480}}' for i in range(1, n + 1)))
        f.write('], "annotations": [')
        f.write(",".join(f'{{"id": {i}, "image_id": {i}, "category_id": 1, '
                         f'"bbox": [1, 2, 30, 40], "segmentation": [], "iscrowd": 0}}'
                         for i in range(1, n + 1)))
        f.write('], "categories": [{"id": 1, "name": "thing"}]}')


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("big")
    _big_coco(root / "annotations" / "instances_train.json", 200_000)
    return root


def test_items_stream_before_the_annotations_are_indexed(big: Path) -> None:
    reader = CocoReader(big)
    try:
        started = time.monotonic()
        it = reader.items()
        first = next(it)
        ready_at_first = reader.annotations_ready()
        assert time.monotonic() - started < 10
        assert first.rel == "0000001.jpg" and first.deferred and first.annotation is None
        assert not ready_at_first
        assert reader.label_names() == {"thing"}
        assert reader.wait_ready(120)
        assert reader.annotation_for(first.rel) == SourceAnnotation(
            objects=(SourceObject(("thing",), Box(1, 2, 30, 40)),), width=640, height=480)
        assert sum(1 for _ in it) == 199_999
        assert reader.stats.images == 200_000 and reader.stats.labels == {"thing": 200_000}
    finally:
        reader.close()


def test_a_killed_indexer_is_reported_not_waited_for(big: Path) -> None:
    reader = CocoReader(big)
    try:
        next(reader.items())
        assert reader._proc is not None
        reader._proc.kill()
        reader._proc.wait()
        with pytest.raises(DatasetError, match="indexer stopped \\(exit code -9\\)"):
            reader.wait_ready(30)
    finally:
        reader.close()


def test_two_live_readers_never_share_an_index_being_built(big: Path, tmp_path: Path) -> None:
    one, two = CocoReader(big, tmp_path), CocoReader(big, tmp_path)
    try:
        assert next(one.items()).rel == next(two.items()).rel == "0000001.jpg"
        assert one.db.parent == tmp_path and two.db.parent != tmp_path
        assert one.wait_ready(120) and two.wait_ready(120)
    finally:
        one.close()
        two.close()
    assert not two.db.parent.exists()
