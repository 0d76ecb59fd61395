"""Deterministic benchmark datasets, generated once and cached under ``<out>/data``.

Every file is a real image the local server accepts:

* ``small``: noisy JPEGs of about 100 KB (``geti_bulk.sampledata.image_bytes``), fully
  decoded by the server;
* ``tiny``: 40x40 PNGs of about 120 bytes, each with a different pixel pattern so that
  duplicate counting stays meaningful, encoded by hand (zlib) because Pillow would take
  half a minute for 100,000 of them;
* ``medium`` / ``large``: a real 640x480 JPEG followed by random bytes up to the target
  size. Decoders stop at the JPEG end marker and ignore the trailer, and the server in
  ``--discard`` mode checks only the header of files over 1 MiB, so these are accepted
  as images without the server decoding 50 MB of pixels.
* ``resume``: a tree of N tiny files for the resume test, made of hard links to 1,000
  distinct PNGs (a link costs ~20 µs here, a new small file ~220 µs); the scanner stats
  every link as a separate directory entry, which is what a resume pays for.
* ``coco``: a pre-labelled COCO detection dataset (``geti_bulk.sampledata.make_coco_dataset``:
  ``images/train/*.jpg`` of about 320x240 and ``annotations/instances_train.json`` with
  0-4 boxes of car/truck per image, every 10th image without boxes, every 7th with a box
  crossing the right edge).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

from geti_bulk.sampledata import image_bytes, make_coco_dataset

SMALL_SIZE = (448, 336)   # noise 0.5, quality 90: about 100 KB per JPEG


def _cached(root: Path, params: dict[str, object], build: Callable[[Path], None]) -> Path:
    """Build ``root`` unless a marker says it was built with the same parameters."""
    marker = root / ".complete.json"
    if marker.is_file() and json.loads(marker.read_text()) == params:
        return root
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    build(root)
    marker.write_text(json.dumps(params))
    return root


def small(base: Path, count: int) -> Path:
    def build(root: Path) -> None:
        for i in range(count):
            data = image_bytes(*SMALL_SIZE, "JPEG", seed=1_000_003 + i, noise=0.5)
            (root / f"small_{i:06d}.jpg").write_bytes(data)

    return _cached(base / f"small-{count}", {"kind": "small", "count": count,
                                             "size": SMALL_SIZE}, build)


_TINY_SIDE = 40
_TINY_ROW = b"\x00" + bytes((90, 140, 200)) * _TINY_SIDE   # filter byte + one colour
_TINY_RAW = _TINY_ROW * _TINY_SIDE


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


_TINY_HEAD = b"\x89PNG\r\n\x1a\n" + _png_chunk(
    b"IHDR", struct.pack(">IIBBBBB", _TINY_SIDE, _TINY_SIDE, 8, 2, 0, 0, 0))
_TINY_TAIL = _png_chunk(b"IEND", b"")


def tiny_png(i: int) -> bytes:
    """A valid 40x40 RGB PNG of one colour with three pixels set from ``i`` (~120 bytes)."""
    raw = bytearray(_TINY_RAW)
    row_len = len(_TINY_ROW)
    for k in range(3):
        pixel = (i * 7 + k * 531) % (_TINY_SIDE * _TINY_SIDE)
        at = (pixel // _TINY_SIDE) * row_len + 1 + (pixel % _TINY_SIDE) * 3
        raw[at:at + 3] = bytes(((i >> (8 * k)) & 0xFF, (i * 31 + k) & 0xFF, 255 - k))
    return _TINY_HEAD + _png_chunk(b"IDAT", zlib.compress(bytes(raw), 6)) + _TINY_TAIL


def tiny(base: Path, count: int) -> Path:
    """``count`` distinct tiny PNGs, 1,000 per folder (flat enough, and like real dumps)."""
    def build(root: Path) -> None:
        for i in range(count):
            folder = root / f"part_{i // 1000:04d}"
            if i % 1000 == 0:
                folder.mkdir()
            (folder / f"tiny_{i:07d}.png").write_bytes(tiny_png(i))

    return _cached(base / f"tiny-{count}", {"kind": "tiny", "count": count}, build)


def padded_jpegs(base: Path, name: str, count: int, size: int) -> Path:
    """``count`` files of exactly ``size`` bytes: a real JPEG, then random bytes."""
    def build(root: Path) -> None:
        rng = random.Random(f"geti-bulk-bench:{name}")
        for i in range(count):
            head = image_bytes(640, 480, "JPEG", seed=7_000_001 + i, noise=0.5)
            with open(root / f"{name}_{i:03d}.jpg", "wb") as fh:
                fh.write(head)
                left = size - len(head)
                while left > 0:
                    n = min(left, 8 << 20)
                    fh.write(rng.randbytes(n))
                    left -= n

    return _cached(base / f"{name}-{count}x{size}", {"kind": name, "count": count,
                                                     "size": size}, build)


def resume_tree(base: Path, count: int, distinct: int = 1000) -> Path:
    """``count`` files in folders of 1,000: hard links to ``distinct`` real PNGs."""
    def build(root: Path) -> None:
        sources = root / ".sources"   # hidden: the scanner skips dot-folders by default
        sources.mkdir()
        originals = []
        for j in range(distinct):
            p = sources / f"src_{j:04d}.png"
            p.write_bytes(tiny_png(10_000_000 + j))
            originals.append(p)
        tree = root / "tree"
        for i in range(count):
            folder = tree / f"part_{i // 1000:04d}"
            if i % 1000 == 0:
                folder.mkdir(parents=True)
            os.link(originals[i % distinct], folder / f"r_{i:07d}.png")

    return _cached(base / f"resume-{count}", {"kind": "resume", "count": count,
                                              "distinct": distinct}, build) / "tree"


COCO_SIZE = (320, 240)


def coco(base: Path, count: int) -> Path:
    """A COCO detection dataset of ``count`` images with their boxes."""
    def build(root: Path) -> None:
        make_coco_dataset(root, count, seed=0, size=COCO_SIZE)

    return _cached(base / f"coco-{count}", {"kind": "coco", "count": count,
                                            "size": COCO_SIZE}, build)


def coco_images(root: Path) -> dict[str, bool]:
    """Image path relative to ``root`` → whether the COCO file gives it at least one box."""
    out: dict[str, bool] = {}
    for path in sorted((root / "annotations").glob("instances_*.json")):
        subset = path.stem[len("instances_"):]
        doc = json.loads(path.read_text(encoding="utf-8"))
        boxed = {a["image_id"] for a in doc["annotations"]}
        for im in doc["images"]:
            out[f"images/{subset}/{im['file_name']}"] = im["id"] in boxed
    return out


def warm(root: Path) -> int:
    """Read every file once so that all contenders start with a warm page cache."""
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for f in filenames:
            if f.startswith("."):
                continue
            with open(os.path.join(dirpath, f), "rb") as fh:
                while chunk := fh.read(8 << 20):
                    total += len(chunk)
    return total


def listing(root: Path) -> tuple[int, int]:
    """(files, bytes) of the non-hidden files under ``root``."""
    files = size = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for f in filenames:
            if not f.startswith("."):
                files += 1
                size += os.path.getsize(os.path.join(dirpath, f))
    return files, size


def files(root: Path) -> list[Path]:
    """The non-hidden files under ``root``, sorted the way the contender scripts sort."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [Path(dirpath) / f for f in sorted(filenames) if not f.startswith(".")]
    return found


def subset(root: Path, count: int) -> Path:
    """The first ``count`` files of ``root`` as hard links in a sibling folder."""
    target = root.parent / f"{root.name}-first{count}"

    def build(folder: Path) -> None:
        for path in files(root)[:count]:
            os.link(path, folder / path.name)

    return _cached(target, {"kind": "subset", "of": root.name, "count": count}, build)
