"""Every project type the local Geti 3 seeds (multi-class, multi-label, detection,
instance segmentation) and every source format (folders, manifest, COCO, YOLO, VOC,
Datumaro), each through a mix of the server's faults (locked, reset, stored-then-500,
slow), over TLS on 127.0.0.1. Each case ends with every file stored exactly once and its
annotation read back from the server equal to what the source says (computed here from
the dataset builders, not by the uploader's code), and `verify` agreeing.

Small datasets (8-12 images), so the whole matrix costs a few seconds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from geti_bulk.events import RecordingReporter
from geti_bulk.pipeline import Run
from geti_bulk.sampledata import image_bytes
from geti_bulk.server import Geti3Config, LocalGeti3
from tests.conftest import upload
from tests.datasets import (
    Img,
    Obj,
    sample_images,
    write_coco,
    write_datumaro,
    write_voc,
    write_yolo,
)
from tests.test_geti3 import admin3, all_media, assert_classified, cfg3, get, label_names, pid

DETECTION = "Vehicle detection"
SEGMENTATION = "Cell segmentation"
MULTILABEL = "Scene attributes"
MULTICLASS = "Pets classification"
SCENE = ("sunny", "cloudy", "night")


@pytest.fixture
async def geti3(tmp_path: Path) -> Any:
    srv = LocalGeti3(Geti3Config(data_dir=tmp_path / "g3", locked_ms=300, slow_ms=400,
                                 seed=7))
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


def polygon_images(n: int) -> list[Img]:
    """Triangles and quads inside the image, labels cell / nucleus; the first has none."""
    imgs = []
    for i in range(n):
        objs = []
        for k in range(i % 3):
            x, y = 6 + 20 * k, 5 + 7 * k
            pts = [(x, y), (x + 15.5, y + 1.0), (x + 9.5, y + 14.5)]
            if k % 2:
                pts.append((x + 0.5, y + 12.0))
            xs, ys = [p[0] for p in pts], [p[1] for p in pts]
            objs.append(Obj(("cell", "nucleus")[(i + k) % 2],
                            (min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)), pts))
        imgs.append(Img(f"cells_{i:03d}.jpg", 96, 72, objs, "val" if i % 4 == 3 else "train"))
    return imgs


def boxed(labels: tuple[str, ...], n: int) -> list[Img]:
    # images whose every box keeps some area after clipping (the builders' rule)
    return [im for im in sample_images(n, labels) if im.expected_boxes() or not im.objects]


async def annotations_of(srv: Any, project: str) -> dict[str, list[dict[str, Any]]]:
    """name → the server's annotation document, for every media (each name once)."""
    media = await all_media(srv, project)
    names = [m["name"] for m in media]
    assert len(names) == len(set(names)), f"stored more than once: {sorted(names)}"
    out = {}
    for m in media:
        status, ann = await get(srv, f"/api/projects/{pid(srv, project)}/dataset/media/"
                                     f"{m['id']}/annotations")
        assert status == 200, (m["name"], status)
        out[m["name"]] = ann
    return out


def subset_of(im: Img) -> str:
    return "validation" if im.subset == "val" else "training"


async def assert_boxes(srv: Any, project: str, imgs: list[Img], *, polygons: bool,
                       subsets: bool = True) -> None:
    """Detection: rectangles; instance segmentation from boxes: their four corners."""
    got_all = await annotations_of(srv, project)
    names = label_names(srv, project)
    assert sorted(got_all) == sorted(Path(im.name).stem for im in imgs)
    for im in imgs:
        ann = got_all[Path(im.name).stem]
        got = []
        for a in ann["annotations"]:
            [label] = a["labels"]
            s = a["shape"]
            if polygons:
                assert s["type"] == "polygon", s
                xs, ys = [p["x"] for p in s["points"]], [p["y"] for p in s["points"]]
                assert len(s["points"]) == 4
                got.append((names[label["id"]], min(xs), min(ys), max(xs) - min(xs),
                            max(ys) - min(ys)))
            else:
                assert s["type"] == "rectangle", s
                got.append((names[label["id"]], s["x"], s["y"], s["width"], s["height"]))
        want = im.expected_boxes()
        assert len(got) == len(want), (im.name, got, want)
        for g, w in zip(sorted(got), want, strict=True):
            assert g[0] == w[0] and all(abs(a - b) <= 1 for a, b in zip(g[1:], w[1:],
                                                                        strict=True)), (g, w)
        if subsets:
            assert ann["subset"] == subset_of(im), (im.name, ann["subset"])


async def assert_polygons(srv: Any, imgs: list[Img]) -> None:
    got_all = await annotations_of(srv, SEGMENTATION)
    names = label_names(srv, SEGMENTATION)
    assert sorted(got_all) == sorted(Path(im.name).stem for im in imgs)
    for im in imgs:
        ann = got_all[Path(im.name).stem]
        got = sorted((names[a["labels"][0]["id"]],
                      [(p["x"], p["y"]) for p in a["shape"]["points"]])
                     for a in ann["annotations"])
        want = sorted((o.label, o.polygon) for o in im.objects)
        assert len(got) == len(want), (im.name, got, want)
        for (gl, gp), (wl, wp) in zip(got, want, strict=True):
            assert gl == wl and len(gp) == len(wp or [])
            assert all(abs(a[0] - b[0]) <= 0.5 and abs(a[1] - b[1]) <= 0.5
                       for a, b in zip(gp, wp or [], strict=True)), (im.name, gp, wp)
        assert ann["subset"] == subset_of(im)


def write_manifest(root: Path, rows: list[tuple[str, tuple[str, ...]]]) -> Path:
    (root / "pics").mkdir(parents=True)
    lines = ["path,labels"]
    for i, (name, labels) in enumerate(rows):
        (root / "pics" / name).write_bytes(image_bytes(64, 48, seed=100 + i))
        lines.append(f"pics/{name},{';'.join(labels)}")
    manifest = root / "files.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


async def assert_labels(srv: Any, project: str, want: dict[str, set[str]]) -> None:
    got_all = await annotations_of(srv, project)
    names = label_names(srv, project)
    assert sorted(got_all) == sorted(want)
    for name, labels in want.items():
        [a] = got_all[name]["annotations"]
        assert a["shape"] == {"type": "full_image"}
        assert {names[x["id"]] for x in a["labels"]} == labels, (name, a)


async def verified(srv: Any, tmp_path: Path, project: str, sources: tuple[Path, ...],
                   n: int, **kw: Any) -> None:
    """`geti-bulk verify` (the library's Run in verify mode): n files, all matching."""
    report = tmp_path / "verify.jsonl"
    kw.pop("journal", None)
    run = Run(cfg3(srv, tmp_path, sources, project, use_journal=False, **kw),
              RecordingReporter(), verify_report=report)
    await run.execute()
    rows = [json.loads(x) for x in report.read_text().splitlines()]
    assert run.verify_result is not None and run.verify_result.exit_code == 0, rows[:3]
    assert [r["status"] for r in rows] == ["ok"] * n, rows[:3]


CASES = {
    # id: (project, fault spec)
    "voc-detection": (DETECTION, "slow=0.2,stored500=0.15,locked=0.1"),
    "datumaro-detection": (DETECTION, "reset=0.15,slow=0.15,stored500=0.1"),
    "coco-polygons-segmentation": (SEGMENTATION, "stored500=0.15,locked=0.1,reset=0.1"),
    "yolo-boxes-segmentation": (SEGMENTATION, "slow=0.1,stored500=0.15,reset=0.1"),
    "manifest-multilabel": (MULTILABEL, "stored500=0.15,slow=0.1,locked=0.1"),
    "folders-multilabel": (MULTILABEL, "reset=0.15,locked=0.1"),
    "manifest-multiclass": (MULTICLASS, "stored500=0.15,reset=0.1,slow=0.1"),
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_every_format_into_every_geti3_project_type_through_faults(geti3, tmp_path,
                                                                          case):
    project, faults = CASES[case]
    fmt = case.split("-", 1)[0]
    root = tmp_path / "src"
    manifests: tuple[Path, ...] = ()
    sources: tuple[Path, ...] = (root,)
    check: Any
    if fmt in ("voc", "datumaro"):
        imgs = boxed(("car", "truck"), 12)
        if fmt == "voc":
            write_voc(root, imgs)
        else:
            write_datumaro(root, imgs, ("car", "truck"))
        n = len(imgs)

        async def check() -> None:
            await assert_boxes(geti3, DETECTION, imgs, polygons=False)
    elif fmt == "coco":
        imgs = polygon_images(10)
        write_coco(root, imgs, ("cell", "nucleus"))
        n = len(imgs)

        async def check() -> None:
            await assert_polygons(geti3, imgs)
    elif fmt == "yolo":
        imgs = boxed(("cell", "nucleus"), 12)
        write_yolo(root, imgs, ("cell", "nucleus"))
        n = len(imgs)

        async def check() -> None:
            await assert_boxes(geti3, SEGMENTATION, imgs, polygons=True)
    elif fmt == "manifest":
        if project == MULTILABEL:
            # every non-empty combination of the three labels (bits of 1..7)
            rows = [(f"scene_{i:02d}.jpg",
                     tuple(SCENE[j] for j in range(3) if (i % 7 + 1) >> j & 1))
                    for i in range(10)]
        else:
            rows = [(f"pet_{i:02d}.jpg", (("cat", "dog", "horse")[i % 3],)) for i in range(10)]
        manifests = (write_manifest(root, rows),)
        sources = ()
        n = len(rows)

        async def check() -> None:
            await assert_labels(geti3, project, {Path(r[0]).stem: set(r[1]) for r in rows})
    else:                                      # folders: one label each, by its folder
        from geti_bulk.sampledata import make_labelled_tree

        make_labelled_tree(root, list(SCENE), 12, size=(48, 40))
        n = 12

        async def check() -> None:
            await assert_classified(geti3, MULTILABEL, root)

    geti3.set_faults(faults)
    cfg = cfg3(geti3, tmp_path, sources, project, manifests=manifests)
    result, rec = await upload(cfg)
    failed = [(e.path, e.reason) for e in rec.events if type(e).__name__ == "FileFailed"]
    assert failed == [] and (result.uploaded, result.exit_code) == (n, 0), failed[:3]
    stats = await admin3(geti3)
    assert stats["faults"], "the faults must have fired to test anything"
    assert (stats["media_total"], stats["duplicates"]) == (n, 0), stats
    geti3.set_faults("")
    await check()
    await verified(geti3, tmp_path, project, sources, n, manifests=manifests)
