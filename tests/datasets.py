"""Small real datasets on disk for the functional tests: real images, each layout's own
annotation files, and the shapes the test expects Geti to end up with (computed here,
from the rules in GETI_ANNOTATIONS.md §12.3, not by the uploader's code)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from geti_bulk.sampledata import image_bytes


@dataclass
class Obj:
    label: str
    box: tuple[float, float, float, float]          # x, y, w, h in image pixels
    polygon: list[tuple[float, float]] | None = None


@dataclass
class Img:
    name: str                    # file name, e.g. "a.jpg"
    width: int
    height: int
    objects: list[Obj] = field(default_factory=list)
    subset: str = "train"

    def expected_boxes(self) -> list[tuple[str, int, int, int, int]]:
        """What Geti must hold: corners rounded, then clipped to the image (§12.3);
        boxes left with no area are dropped."""
        out = []
        for o in self.objects:
            x, y, w, h = o.box
            x0, y0 = max(0, round(x)), max(0, round(y))
            x1, y1 = min(self.width, round(x + w)), min(self.height, round(y + h))
            if x1 - x0 >= 1 and y1 - y0 >= 1:
                out.append((o.label, x0, y0, x1 - x0, y1 - y0))
        return sorted(out)


def sample_images(n: int, labels: tuple[str, ...] = ("car", "truck")) -> list[Img]:
    """n images with 0-3 boxes each; one box past the right edge (to be clipped); the
    first image has no objects (it must get the empty label)."""
    imgs = []
    for i in range(n):
        w, h = 96 + (i % 3) * 16, 80 + (i % 2) * 8
        objs = []
        for k in range(i % 4):
            x, y = 5 + 11 * k + i % 7, 4 + 9 * k
            objs.append(Obj(labels[(i + k) % len(labels)], (x + 0.4, y + 0.6, 20.3, 15.2)))
        if i % 5 == 4:
            objs.append(Obj(labels[0], (w - 10, 10, 30, 20)))   # crosses the right edge
        imgs.append(Img(f"img_{i:03d}.jpg", w, h, objs, "val" if i % 6 == 5 else "train"))
    return imgs


def write_images(folder: Path, imgs: list[Img], *, by_subset: bool) -> None:
    for i, im in enumerate(imgs):
        d = folder / im.subset if by_subset else folder
        d.mkdir(parents=True, exist_ok=True)
        (d / im.name).write_bytes(image_bytes(im.width, im.height, seed=i))


def write_coco(root: Path, imgs: list[Img], labels: tuple[str, ...]) -> None:
    """`annotations/instances_<subset>.json` + `images/<subset>/…`, categories last
    (as the official COCO files have them)."""
    write_images(root / "images", imgs, by_subset=True)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    cat_id = {name: i + 1 for i, name in enumerate(labels)}
    for subset in sorted({im.subset for im in imgs}):
        images, anns = [], []
        for i, im in enumerate(imgs):
            if im.subset != subset:
                continue
            images.append({"id": i + 1, "file_name": im.name, "width": im.width,
                           "height": im.height})
            for o in im.objects:
                ann = {"id": len(anns) + 1000 * (i + 1), "image_id": i + 1,
                       "category_id": cat_id[o.label], "bbox": list(o.box), "iscrowd": 0,
                       "area": o.box[2] * o.box[3]}
                if o.polygon:
                    ann["segmentation"] = [[c for p in o.polygon for c in p]]
                anns.append(ann)
        doc = {"info": {}, "licenses": [], "images": images, "annotations": anns,
               "categories": [{"id": cat_id[n], "name": n} for n in labels]}
        (root / "annotations" / f"instances_{subset}.json").write_text(json.dumps(doc))


def write_yolo(root: Path, imgs: list[Img], labels: tuple[str, ...]) -> None:
    write_images(root / "images", imgs, by_subset=True)
    for im in imgs:
        d = root / "labels" / im.subset
        d.mkdir(parents=True, exist_ok=True)
        lines = []
        for o in im.objects:
            x, y, w, h = o.box
            cx, cy = (x + w / 2) / im.width, (y + h / 2) / im.height
            lines.append(f"{labels.index(o.label)} {cx:.6f} {cy:.6f} {w / im.width:.6f} "
                         f"{h / im.height:.6f}")
        (d / (Path(im.name).stem + ".txt")).write_text("\n".join(lines))
    names = "\n".join(f"  {i}: {n}" for i, n in enumerate(labels))
    (root / "data.yaml").write_text(f"path: .\ntrain: images/train\nval: images/val\n"
                                    f"names:\n{names}\n")


def write_voc(root: Path, imgs: list[Img]) -> None:
    """VOC boxes are 1-based and inclusive: xmin = x + 1, xmax = x + w."""
    write_images(root / "JPEGImages", imgs, by_subset=False)
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    sets = root / "ImageSets" / "Main"
    sets.mkdir(parents=True, exist_ok=True)
    for im in imgs:
        objs = "".join(
            f"<object><name>{o.label}</name><difficult>0</difficult><bndbox>"
            f"<xmin>{o.box[0] + 1:.1f}</xmin><ymin>{o.box[1] + 1:.1f}</ymin>"
            f"<xmax>{o.box[0] + o.box[2]:.1f}</xmax><ymax>{o.box[1] + o.box[3]:.1f}</ymax>"
            f"</bndbox></object>" for o in im.objects)
        (root / "Annotations" / (Path(im.name).stem + ".xml")).write_text(
            f"<annotation><filename>{im.name}</filename><size><width>{im.width}</width>"
            f"<height>{im.height}</height><depth>3</depth></size>{objs}</annotation>")
    for subset in sorted({im.subset for im in imgs}):
        (sets / f"{subset}.txt").write_text(
            "\n".join(Path(im.name).stem for im in imgs if im.subset == subset) + "\n")


def write_datumaro(root: Path, imgs: list[Img], labels: tuple[str, ...]) -> None:
    write_images(root / "images", imgs, by_subset=True)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for subset in sorted({im.subset for im in imgs}):
        items = []
        for im in imgs:
            if im.subset != subset:
                continue
            anns = [{"id": k, "type": "bbox", "label_id": labels.index(o.label),
                     "bbox": list(o.box), "attributes": {}}
                    for k, o in enumerate(im.objects)]
            items.append({"id": Path(im.name).stem, "annotations": anns,
                          "image": {"path": im.name, "size": [im.height, im.width]}})
        doc = {"info": {}, "categories": {"label": {"labels": [
            {"name": n, "parent": "", "attributes": []} for n in labels]}}, "items": items}
        (root / "annotations" / f"{subset}.json").write_text(json.dumps(doc))
