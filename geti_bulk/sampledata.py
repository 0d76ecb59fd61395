"""Deterministic, real image datasets for the demo, tests and benchmarks.

Images are real JPEG/PNG files (Pillow) in ImageNet-style label folders, so every
byte goes through the same checks a user's data would.
"""

from __future__ import annotations

import io
import random
from collections.abc import Sequence
from pathlib import Path


def image_bytes(width: int, height: int, fmt: str = "JPEG", seed: int = 0,
                noise: float = 0.5, quality: int = 90) -> bytes:
    """A real image: a gradient with a share of random noise (which sets the file size)."""
    from PIL import Image

    rng = random.Random(seed)
    base = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    if noise > 0:
        raw = bytearray(rng.randbytes(width * height * 3))
        noisy = Image.frombytes("RGB", (width, height), bytes(raw))
        base = Image.blend(base, noisy, noise)
    buf = io.BytesIO()
    if fmt.upper() == "JPEG":
        base.save(buf, "JPEG", quality=quality)
    else:
        base.save(buf, fmt.upper())
    return buf.getvalue()


def make_labelled_tree(root: Path, labels: Sequence[str], files: int, *, seed: int = 0,
                       size: tuple[int, int] = (160, 120), png_every: int = 4,
                       noise: float = 0.5) -> list[Path]:
    """`root/<label>/<label>_0001.jpg` … spread over `labels`; every `png_every`th a PNG."""
    rng = random.Random(seed)
    out = []
    for i in range(files):
        label = labels[i % len(labels)]
        fmt = "PNG" if png_every and i % png_every == png_every - 1 else "JPEG"
        w = size[0] + rng.randrange(0, 32)
        h = size[1] + rng.randrange(0, 32)
        d = root / label
        d.mkdir(parents=True, exist_ok=True)
        p = d / f"{label}_{i:05d}.{'png' if fmt == 'PNG' else 'jpg'}"
        p.write_bytes(image_bytes(w, h, fmt, seed=seed * 100003 + i, noise=noise))
        out.append(p)
    return out


def make_flat_images(root: Path, count: int, *, seed: int = 0, size: tuple[int, int] = (160, 120),
                     noise: float = 0.5, prefix: str = "img") -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(count):
        p = root / f"{prefix}_{i:06d}.jpg"
        p.write_bytes(image_bytes(size[0], size[1], "JPEG", seed=seed * 100003 + i, noise=noise))
        out.append(p)
    return out


def make_coco_dataset(root: Path, files: int, labels: Sequence[str] = ("car", "truck"), *,
                      seed: int = 0, size: tuple[int, int] = (320, 240)) -> list[Path]:
    """A COCO detection dataset: `images/train/*.jpg` and `annotations/instances_train.json`
    with 0-4 boxes per image (every 10th image has none; every 7th has a box crossing the
    right edge, which the upload clips), categories last as in the official files."""
    import json

    rng = random.Random(seed)
    img_dir = root / "images" / "train"
    img_dir.mkdir(parents=True, exist_ok=True)
    images: list[dict[str, object]] = []
    anns: list[dict[str, object]] = []
    out = []
    for i in range(files):
        w, h = size[0] + rng.randrange(0, 64), size[1] + rng.randrange(0, 48)
        p = img_dir / f"street_{i:05d}.jpg"
        p.write_bytes(image_bytes(w, h, "JPEG", seed=seed * 100003 + i))
        out.append(p)
        images.append({"id": i + 1, "file_name": p.name, "width": w, "height": h})
        boxes = 0 if i % 10 == 0 else rng.randrange(1, 5)
        for _ in range(boxes):
            bw, bh = rng.uniform(20, w / 3), rng.uniform(20, h / 3)
            x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "iscrowd": 0,
                         "category_id": rng.randrange(len(labels)) + 1,
                         "bbox": [round(x, 2), round(y, 2), round(bw, 2), round(bh, 2)],
                         "area": round(bw * bh, 2)})
        if i % 7 == 3:
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "iscrowd": 0,
                         "category_id": 1, "bbox": [w - 25.0, 10.0, 40.0, 30.0],
                         "area": 1200.0})
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    doc = {"info": {"description": "geti-bulk demo"}, "licenses": [], "images": images,
           "annotations": anns,
           "categories": [{"id": k + 1, "name": n} for k, n in enumerate(labels)]}
    (root / "annotations" / "instances_train.json").write_text(json.dumps(doc))
    return out
