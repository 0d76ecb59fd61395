"""COCO at scale: can the COCO reader stream a 1,000,000-image, 7,000,000-box file?

    python benchmarks/coco_scale.py [--images N] [--boxes-per-image K] [--keep DIR]
                                    [--categories-first]

Generates (into a temp dir, removed afterwards unless --keep) a COCO instances file
laid out as the official ones are (info, licenses, images, annotations, categories
last), then opens it with `geti_bulk.sources.coco.CocoReader` in a child process and
measures: peak RSS of that process and of its indexer process, seconds from open to the
first yielded item, seconds `label_names()` took (called right after the first item,
while the index is still being built), seconds until every item was yielded and until
`annotations_ready()`, the indexer's phases, the mean `annotation_for` time, and how long
the categories-only ijson pass (label_names' fallback when the file's tail holds no
categories) takes on this file. No image files are written: the reader never opens them.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

N_CATEGORIES = 80


def _annotations(first_id: int, image_ids: range, k: int, rng: random.Random) -> str:
    parts = []
    ann_id = first_id
    for img in image_ids:
        for _ in range(k):
            x, y = rng.uniform(0, 500), rng.uniform(0, 400)
            w, h = rng.uniform(1, 140), rng.uniform(1, 80)
            parts.append(
                f'{{"id": {ann_id}, "image_id": {img}, "category_id": {rng.randint(1, N_CATEGORIES)}, '
                f'"segmentation": [], "area": {w * h:.2f}, '
                f'"bbox": [{x:.2f}, {y:.2f}, {w:.2f}, {h:.2f}], "iscrowd": 0}}')
            ann_id += 1
    return ",".join(parts)


def generate(path: Path, n_images: int, k: int, categories_first: bool = False) -> int:
    """Write the file in bounded chunks; returns its size in bytes."""
    rng = random.Random(7)
    cats = json.dumps([{"id": i, "name": f"class_{i}", "supercategory": "thing"}
                       for i in range(1, N_CATEGORIES + 1)])
    step = 10_000
    with path.open("w") as f:
        f.write('{"info": {"description": "synthetic"}, "licenses": [{"id": 1, "name": "x"}], ')
        if categories_first:
            f.write(f'"categories": {cats}, ')
        f.write('"images": [')
        for start in range(1, n_images + 1, step):
            stop = min(start + step, n_images + 1)
            f.write(("," if start > 1 else "") + _images_range(start, stop))
        f.write('], "annotations": [')
        ann_id = 1
        for start in range(1, n_images + 1, step):
            stop = min(start + step, n_images + 1)
            f.write(("," if start > 1 else "") + _annotations(ann_id, range(start, stop), k, rng))
            ann_id += (stop - start) * k
        f.write("]")
        if not categories_first:
            f.write(f', "categories": {cats}')
        f.write("}")
    return path.stat().st_size


def _images_range(start: int, stop: int) -> str:
    return ",".join(
        f'{{"id": {i}, "file_name": "{i:012d}.jpg", "width": 640, "height": 480, '
        f'"license": 1, "date_captured": "2013-11-14 17:02:52"}}'
        for i in range(start, stop))


def measure(root: Path, index_dir: Path) -> dict[str, float | int | bool]:
    """Runs in the child process: open, first item, label_names, ready, RSS."""
    from geti_bulk.sources import coco_rules
    from geti_bulk.sources.coco import CocoReader

    t0 = time.perf_counter()
    reader = CocoReader(root, index_dir=index_dir)
    it = reader.items()
    first = next(it)
    t_first = time.perf_counter() - t0
    t1 = time.perf_counter()
    names = reader.label_names()
    t_names = time.perf_counter() - t1
    ready_before_first = first.deferred is False
    count = 1
    for _ in it:
        count += 1
    t_items = time.perf_counter() - t0
    while not reader.annotations_ready():
        time.sleep(0.05)
    t_ready = time.perf_counter() - t0
    ann = reader.annotation_for(first.rel)
    t3 = time.perf_counter()
    scan = coco_rules._scan_categories(reader.files[0])
    t_scan = time.perf_counter() - t3
    t2 = time.perf_counter()
    for i in range(1, 1001):
        reader.annotation_for(f"images/{(i * 997) % count + 1:012d}.jpg")
    t_lookup = (time.perf_counter() - t2) / 1000
    stats = reader.stats
    timings = json.loads(reader._query("SELECT value FROM meta WHERE key='timings'", ())[0][0])
    reader.close()
    return {
        "first_item_s": round(t_first, 3), "label_names_s": round(t_names, 3),
        "all_items_s": round(t_items, 2), "ready_s": round(t_ready, 2),
        "lookup_ms": round(t_lookup * 1000, 3), "items": count,
        "categories_only_pass_s": round(t_scan, 2), "categories_in_pass": len(scan),
        "labels": len(names), "objects_first": len(ann.objects) if ann else -1,
        "first_was_deferred": not ready_before_first, "dropped": stats.dropped,
        "objects_counted": sum(stats.labels.values()),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "indexer_peak_rss_mib": round(
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        "indexer_phases_s": timings,
        "index_mib": round(sum(p.stat().st_size for p in index_dir.iterdir()) / 2**20, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=1_000_000)
    ap.add_argument("--boxes-per-image", type=int, default=7)
    ap.add_argument("--categories-first", action="store_true")
    ap.add_argument("--keep", type=Path, help="generate here and keep it (reused if present)")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        index_dir = Path(tempfile.mkdtemp(prefix="coco-index-"))
        try:
            print(json.dumps(measure(args.child, index_dir)))
        finally:
            shutil.rmtree(index_dir, ignore_errors=True)
        return
    base = args.keep or Path(tempfile.mkdtemp(prefix="coco-scale-"))
    try:
        _run(base, args)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


def _run(base: Path, args: argparse.Namespace) -> None:
    ann = base / "annotations" / "instances_train2017.json"
    if not ann.exists():
        ann.parent.mkdir(parents=True, exist_ok=True)
        (base / "images").mkdir(exist_ok=True)
        t = time.perf_counter()
        size = generate(ann, args.images, args.boxes_per_image, args.categories_first)
        print(f"generated {ann.name}: {size / 2**30:.2f} GiB in {time.perf_counter() - t:.0f} s",
              flush=True)
    size = ann.stat().st_size
    out = subprocess.run([sys.executable, __file__, "--child", str(base)],
                         capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["file_gib"] = round(size / 2**30, 2)
    result["boxes"] = args.images * args.boxes_per_image
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
