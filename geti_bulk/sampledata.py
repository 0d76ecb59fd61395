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
