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


def check_image_head(head: bytes | str, filename: str) -> str | None:
    """Read width/height from the header only (no full decode); `head` is the first
    bytes of the file or its path."""
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
    if kind.kind == "image":
        return check_image_head(head, filename)
    return check_video_head(head, kind.extension)
