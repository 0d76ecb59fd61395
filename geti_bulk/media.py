"""What Geti accepts as media, checked locally before a byte is sent (GETI_API.md §4).

The server only rejects after receiving the whole body, so every check that can be
made from the file's size and first bytes is made here first.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".jfif", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v")
MAX_UPLOAD_BYTES = int(4.7 * 1024**3)          # media_rest_validator.MAX_BYTES_SIZE
MIN_IMAGE_PX, MAX_IMAGE_PX = 32, 20000
MAX_VIDEO_W, MAX_VIDEO_H = 7680, 4320
# The stored extension differs for some inputs (media_manager.IMAGE_EXT_SAVE_MAPPING).
STORED_EXTENSION = {".jfif": ".jpeg", ".tif": ".jpeg", ".tiff": ".jpeg"}
HEAD_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class MediaKind:
    kind: str        # "image" | "video"
    extension: str   # lower-cased, with the dot


def media_kind(filename: str) -> MediaKind | None:
    ext = os.path.splitext(filename)[1].lower()
    if ext in IMAGE_EXTENSIONS:
        return MediaKind("image", ext)
    if ext in VIDEO_EXTENSIONS:
        return MediaKind("video", ext)
    return None


# What the multipart body does to a file name (RFC 7578 §4.2, as browsers do; must match
# `geti.body._quote`): the server stores the name as it arrives, escapes included.
WIRE_ESCAPES = {ord('"'): "%22", ord("\r"): "%0D", ord("\n"): "%0A"}


def media_name(filename: str) -> str:
    """The name Geti stores: basename as sent on the wire, without extension, stripped
    (§4.1). A local `a"b.jpg` is stored as `a%22b`: reconciliation must ask for that."""
    return os.path.splitext(os.path.basename(filename).translate(WIRE_ESCAPES))[0].strip()


def stored_extension(ext: str) -> str:
    return STORED_EXTENSION.get(ext.lower(), ext.lower())


def check_size(size: int, max_bytes: int = MAX_UPLOAD_BYTES) -> str | None:
    if size == 0:
        return "empty file (0 bytes)"
    if size > max_bytes:
        return f"too large: {size} bytes, Geti accepts at most {max_bytes} bytes (4.7 GiB)"
    return None


def check_name(filename: str) -> str | None:
    stem = media_name(filename)
    if not stem:
        return "empty file name: Geti needs a non-empty basename"
    return None


_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def fast_image_size(head: bytes) -> tuple[int, int] | None:
    """Width and height of a PNG or JPEG from its header bytes, or None (then Pillow
    decides). About 20x cheaper than Pillow's open for the two commonest formats."""
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR" and len(head) >= 24:
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if head[:2] != b"\xff\xd8":
        return None
    i, n = 2, len(head)
    while i + 9 < n:
        if head[i] != 0xFF:
            return None
        marker = head[i + 1]
        if marker == 0xFF:          # fill byte
            i += 1
            continue
        if marker in _SOF:
            h = int.from_bytes(head[i + 5:i + 7], "big")
            w = int.from_bytes(head[i + 7:i + 9], "big")
            return (w, h) if w and h else None
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:   # no length field
            i += 2
            continue
        i += 2 + int.from_bytes(head[i + 2:i + 4], "big")
    return None


def check_image_head(head: bytes | str, filename: str) -> str | None:
    """Read width/height from the header only (no full decode); `head` is the first
    bytes of the file or its path."""
    dims = image_size(head, filename)
    return dims if isinstance(dims, str) else _check_dimensions(*dims)


def image_size(head: bytes | str, filename: str) -> tuple[int, int] | str:
    """(width, height) from the header (`head`: the first bytes, or the file's path),
    or why it cannot be read."""
    size = fast_image_size(head) if isinstance(head, bytes) else None
    if size is not None:
        return size
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(head) if isinstance(head, bytes) else head) as img:
                w, h = img.size
    except UnidentifiedImageError:
        return f"not a readable image: {os.path.basename(filename)} has no image header Geti can decode"
    except Exception as e:  # Pillow raises many types on malformed headers
        return f"not a readable image: {type(e).__name__}: {e}"
    return w, h


def _check_dimensions(w: int, h: int) -> str | None:
    if not (MIN_IMAGE_PX <= w <= MAX_IMAGE_PX and MIN_IMAGE_PX <= h <= MAX_IMAGE_PX):
        return (f"image is {w}x{h} px: Geti needs width and height within "
                f"{MIN_IMAGE_PX} to {MAX_IMAGE_PX} pixels")
    return None


_ISO_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot")


def check_video_head(head: bytes, ext: str) -> str | None:
    """A container sanity check; the server does the real probing."""
    ok = False
    if ext in (".mp4", ".mov", ".m4v"):
        ok = len(head) >= 8 and head[4:8] in _ISO_BOXES
    elif ext == ".avi":
        ok = head[:4] == b"RIFF" and head[8:12] == b"AVI "
    elif ext in (".mkv", ".webm"):
        ok = head[:4] == b"\x1a\x45\xdf\xa3"
    return None if ok else f"not a readable {ext} video: unrecognised container header"


def check_head(head: bytes, filename: str, kind: MediaKind) -> str | None:
    return inspect_head(head, filename, kind)[0]


def inspect_head(head: bytes | str, filename: str,
                 kind: MediaKind) -> tuple[str | None, tuple[int, int] | None]:
    """(why Geti would refuse the file, or None; an image's width and height)."""
    if kind.kind == "image":
        dims = image_size(head, filename)
        if isinstance(dims, str):
            return dims, None
        return _check_dimensions(*dims), dims
    if isinstance(head, str):
        return None, None
    return check_video_head(head, kind.extension), None


def server_memory(size: int, dims: tuple[int, int] | None) -> int:
    """What an upload weighs in the server's memory: Geti reads the file and decodes
    a whole image (3 bytes a pixel, GETI_API.md §5), so the larger of the two."""
    return max(size, dims[0] * dims[1] * 3) if dims else size
