"""Pascal VOC reader: real images and XML files, the 1-based box conversion, subsets,
missing files, and XML attacks refused (billion laughs, external entities)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from geti_bulk.sources.model import Box, SourceAnnotation, SourceObject
from geti_bulk.sources.voc import VocReader, parse_xml, probe


def jpeg(path: Path, size: tuple[int, int] = (120, 80)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (30, 160, 30)).save(path, "JPEG")


def obj(name: str, box: tuple[str, ...] | None, extra: str = "") -> str:
    bnd = "" if box is None else (
        "<bndbox>" + "".join(f"<{k}>{v}</{k}>" for k, v in
                             zip(("xmin", "ymin", "xmax", "ymax"), box, strict=True)) + "</bndbox>")
    return f"<object><name>{name}</name>{extra}{bnd}</object>"


def xml(objects: str, size: tuple[int, int] = (120, 80)) -> str:
    return (f"<annotation><folder>VOC2012</folder><filename>x.jpg</filename><size><width>"
            f"{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>"
            f"{objects}</annotation>")


@pytest.fixture
def voc(tmp_path: Path) -> Path:
    root = tmp_path / "VOC2012"
    ann = root / "Annotations"
    ann.mkdir(parents=True)
    for stem in ("a", "b", "c", "d"):
        jpeg(root / "JPEGImages" / f"{stem}.jpg")
    person_part = "<part><name>hand</name><bndbox><xmin>1</xmin><ymin>1</ymin>" \
                  "<xmax>2</xmax><ymax>2</ymax></bndbox></part>"
    (ann / "a.xml").write_text(xml(
        obj("dog", ("48", "240", "195", "371"), "<pose>Left</pose><truncated>1</truncated>"
            "<difficult>1</difficult>") + obj("person", ("8", "12", "352", "498"), person_part)))
    (ann / "b.xml").write_text(xml(""))
    (ann / "c.xml").write_text(xml(
        obj("cat", None) + obj("cat", ("50", "50", "40", "60")) + obj("", ("1", "1", "5", "5"))
        + obj("cat", ("1", "x", "5", "5")) + obj("bird", ("10.5", "20", "30.5", "20"))))
    (ann / "e.xml").write_text(xml(""))                       # names no image
    sets = root / "ImageSets" / "Main"
    sets.mkdir(parents=True)
    (sets / "train.txt").write_text("a\nb\n")
    (sets / "val.txt").write_text("c\nz\n")
    (sets / "trainval.txt").write_text("a\nb\nc\n")
    (sets / "dog_train.txt").write_text("a  1\nb -1\n")
    return root


def test_objects_subsets_missing_and_stats(voc: Path) -> None:
    reader = VocReader(voc)
    items = {i.rel: i for i in reader.items()}
    assert [(rel, i.subset) for rel, i in items.items()] == [
        ("JPEGImages/a.jpg", "train"), ("JPEGImages/b.jpg", "train"),
        ("JPEGImages/c.jpg", "val"), ("JPEGImages/d.jpg", None)]
    assert items["JPEGImages/a.jpg"].annotation == SourceAnnotation(
        objects=(SourceObject(("dog",), Box(47, 239, 148, 132)),
                 SourceObject(("person",), Box(7, 11, 345, 487))), width=120, height=80)
    assert items["JPEGImages/b.jpg"].annotation == SourceAnnotation(
        width=120, height=80, empty=True)
    c = items["JPEGImages/c.jpg"].annotation
    assert c == SourceAnnotation(
        objects=(SourceObject(("bird",), Box(9.5, 19, 21, 1)),), width=120, height=80,
        problems=("object 'cat' has no <bndbox>", "object 'cat': box with no area",
                  "object without a <name>",
                  "object 'cat': <bndbox> needs numeric xmin, ymin, xmax, ymax"))
    assert items["JPEGImages/d.jpg"].annotation is None
    s = reader.stats
    assert (s.images, s.unannotated, s.dropped) == (4, 1, 4)
    assert s.subsets == {"train": 2, "val": 1}
    assert s.labels == {"dog": 1, "person": 1, "bird": 1}
    assert (s.missing_count, s.missing_files) == (
        2, ["Annotations/e.xml", "ImageSets/Main/val.txt: z"])
    assert reader.label_names() == {"dog", "person", "bird"}
    assert reader.annotation_for("JPEGImages/a.jpg") == items["JPEGImages/a.jpg"].annotation
    assert reader.annotation_for("JPEGImages/d.jpg") is None
    assert reader.annotation_for("Annotations/../JPEGImages/../../x.jpg") is None
    assert probe(voc) == "found Annotations/*.xml and JPEGImages/ (Pascal VOC)"


def test_trainval_is_used_only_without_train_and_val(voc: Path) -> None:
    sets = voc / "ImageSets" / "Main"
    (sets / "train.txt").unlink()
    (sets / "val.txt").unlink()
    assert {i.rel: i.subset for i in VocReader(voc).items()} == {
        "JPEGImages/a.jpg": "trainval", "JPEGImages/b.jpg": "trainval",
        "JPEGImages/c.jpg": "trainval", "JPEGImages/d.jpg": None}


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol9 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
]>
<annotation><object><name>&lol9;</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax>
<ymax>9</ymax></bndbox></object></annotation>"""


def test_xml_bombs_and_external_entities_are_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    xxe = (f'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file://{secret}">]>'
           "<annotation><object><name>&x;</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
           "<xmax>9</xmax><ymax>9</ymax></bndbox></object></annotation>")
    for doc in (BILLION_LAUGHS, xxe):
        got = parse_xml(doc.encode())
        assert got.objects == () and not got.empty
        assert len(got.problems) == 1 and got.problems[0].startswith("XML refused: ")
        assert "TOPSECRET" not in repr(got) and "lollol" not in repr(got)
    plain_dtd = '<?xml version="1.0"?><!DOCTYPE annotation><annotation></annotation>'
    assert parse_xml(plain_dtd.encode()).problems[0].startswith("XML refused: DTDForbidden")


def test_malformed_xml_and_foreign_roots_are_problems(voc: Path) -> None:
    assert parse_xml(b"<annotation><object>").problems[0].startswith("XML is not well-formed")
    assert parse_xml(b"<svg/>").problems == ("not a VOC annotation (root element <svg>)",)
    (voc / "Annotations" / "d.xml").write_bytes(BILLION_LAUGHS.encode())
    reader = VocReader(voc)
    d = next(i for i in reader.items() if i.rel == "JPEGImages/d.jpg")
    assert d.annotation is not None and d.annotation.problems[0].startswith("XML refused")
    assert reader.stats.dropped == 5 and reader.stats.unannotated == 0
