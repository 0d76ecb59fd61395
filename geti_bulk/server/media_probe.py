"""Decode images with Pillow and probe video containers without ffmpeg.

Both run in worker threads (they are blocking). Images are fully decoded, as Geti
does, so truncated or corrupt files are refused. Videos get a structural check of the
container: ISO BMFF (mp4/mov/m4v: ``mvhd``, ``tkhd``, ``mdhd``, ``stsz``), AVI
(``avih``) and Matroska/WebM (EBML ``Info``/``Tracks``); anything else is not a video.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from PIL import Image

# Geti accepts up to 20000 x 20000 px; keep Pillow's bomb check out of the way (a
# DecompressionBombWarning would be an error under pytest) and check sizes ourselves.
Image.MAX_IMAGE_PIXELS = None

_LARGE_PIXELS = 64_000_000  # above this, JPEGs are decoded at reduced scale (draft mode)


class ProbeError(Exception):
    """The bytes are not a readable image / video."""


@dataclass(frozen=True, slots=True)
class ImageInfo:
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class VideoInfo:
    width: int  # 0 when the container does not say
    height: int
    frame_count: int
    fps: float

    @property
    def duration(self) -> int:
        return int(self.frame_count // self.fps) if self.fps > 0 else 0


def probe_image(source: Path | bytes, *, decode: bool = True, complete: bool = True) -> ImageInfo:
    """Width/height of an image; with ``decode`` the whole image must decode.

    ``complete=False`` means ``source`` is only the head of a larger file (discard mode):
    then only the header is checked.
    """
    stream: BinaryIO = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(stream) as img:
                width, height = img.size
                if decode and complete:
                    if width * height > _LARGE_PIXELS and img.format == "JPEG":
                        img.draft("L", (width // 8, height // 8))
                    img.load()
        return ImageInfo(width, height)
    except (OSError, ValueError, SyntaxError, struct.error, EOFError, MemoryError) as exc:
        raise ProbeError(str(exc)) from exc
    finally:
        stream.close()


def probe_video(source: Path | bytes, *, complete: bool = True) -> VideoInfo:
    """Container-level facts about a video; raises ProbeError when it is not one."""
    if isinstance(source, bytes):
        data = source
        total = len(data)
    else:
        total = source.stat().st_size
        with open(source, "rb") as fh:
            data = fh.read(min(total, 1 << 16))
    if data[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot"):
        return _probe_bmff(source, total, complete)
    if data[:4] == b"RIFF" and data[8:12] == b"AVI ":
        return _probe_avi(data)
    if data[:4] == b"\x1a\x45\xdf\xa3":
        head = data if isinstance(source, bytes) else _read_head(source, 1 << 22)
        return _probe_ebml(head)
    raise ProbeError("unknown container")


def _read_head(path: Path, size: int) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(size)


# -- ISO BMFF (mp4, mov, m4v) --------------------------------------------------------
_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl"}


def _probe_bmff(source: Path | bytes, total: int, complete: bool) -> VideoInfo:
    moov = _find_top_box(source, total, b"moov")
    if moov is None:
        if not complete:  # discard mode keeps only the head; moov may be at the end
            return VideoInfo(0, 0, 1, 30.0)
        raise ProbeError("no moov box")
    boxes = dict(_walk(moov))
    mvhd = boxes.get(b"moov/mvhd")
    if mvhd is None:
        raise ProbeError("no mvhd box")
    timescale, duration = _time_fields(mvhd)
    width = height = frames = 0
    fps = 0.0
    for path, payload in _walk(moov):
        if path.endswith(b"trak") and _is_video_track(payload):
            track = dict(_walk(payload, b"trak"))
            tkhd = track.get(b"trak/tkhd")
            if tkhd is not None:
                width, height = _tkhd_size(tkhd)
            frames = _stsz_count(track.get(b"trak/mdia/minf/stbl/stsz"))
            mdhd = track.get(b"trak/mdia/mdhd")
            if mdhd is not None:
                m_scale, m_duration = _time_fields(mdhd)
                if m_scale and m_duration:
                    fps = frames / (m_duration / m_scale)
            break
    if not fps and timescale and duration and frames:
        fps = frames / (duration / timescale)
    if frames == 0 and timescale and duration:  # no sample table: assume 30 fps
        fps = fps or 30.0
        frames = int(duration / timescale * fps)
    return VideoInfo(width, height, frames, round(fps, 3) if fps else 30.0)


def _find_top_box(source: Path | bytes, total: int, wanted: bytes) -> bytes | None:
    if isinstance(source, bytes):
        fh: BinaryIO = io.BytesIO(source)
    else:
        fh = open(source, "rb")
    try:
        offset = 0
        while offset + 8 <= total:
            fh.seek(offset)
            header = fh.read(16)
            if len(header) < 8:
                return None
            size, kind = struct.unpack(">I4s", header[:8])
            header_len = 8
            if size == 1:
                if len(header) < 16:
                    return None
                size = struct.unpack(">Q", header[8:16])[0]
                header_len = 16
            elif size == 0:
                size = total - offset
            if size < header_len or not kind.isascii():
                raise ProbeError("broken box structure")
            if kind == wanted:
                if size > 256 << 20:
                    raise ProbeError("moov box too large")
                fh.seek(offset + header_len)
                payload = fh.read(size - header_len)
                return payload if len(payload) == size - header_len else None
            offset += size
        return None
    finally:
        fh.close()


def _walk(payload: bytes, prefix: bytes = b"moov") -> list[tuple[bytes, bytes]]:
    found: list[tuple[bytes, bytes]] = []
    offset = 0
    while offset + 8 <= len(payload):
        size, kind = struct.unpack(">I4s", payload[offset : offset + 8])
        header_len = 8
        if size == 1 and offset + 16 <= len(payload):
            size = struct.unpack(">Q", payload[offset + 8 : offset + 16])[0]
            header_len = 16
        elif size == 0:
            size = len(payload) - offset
        if size < header_len or offset + size > len(payload):
            raise ProbeError("broken box structure")
        body = payload[offset + header_len : offset + size]
        path = prefix + b"/" + kind
        found.append((path, body))
        if kind in _CONTAINERS and kind != b"trak":
            found.extend(_walk(body, path))
        offset += size
    return found


def _time_fields(box: bytes) -> tuple[int, int]:
    if len(box) < 20:
        raise ProbeError("short header box")
    if box[0] == 1:
        if len(box) < 32:
            raise ProbeError("short header box")
        scale, duration = struct.unpack(">IQ", box[20:32])
    else:
        scale, duration = struct.unpack(">II", box[12:20])
    return int(scale), int(duration)


def _tkhd_size(box: bytes) -> tuple[int, int]:
    base = 92 if box[0] == 1 else 80  # width/height 16.16 fixed point at the end
    if len(box) < base + 4:
        return 0, 0
    width, height = struct.unpack(">II", box[base - 4 : base + 4])
    return width >> 16, height >> 16


def _is_video_track(trak: bytes) -> bool:
    for path, body in _walk(trak, b"trak"):
        if path == b"trak/mdia/hdlr" and len(body) >= 12:
            return body[8:12] == b"vide"
    return False


def _stsz_count(box: bytes | None) -> int:
    if box is None or len(box) < 12:
        return 0
    return int(struct.unpack(">I", box[8:12])[0])


# -- AVI ------------------------------------------------------------------------------
def _probe_avi(head: bytes) -> VideoInfo:
    at = head.find(b"avih", 12, 4096)
    if at < 0 or len(head) < at + 8 + 40:
        raise ProbeError("no avih header")
    us_per_frame, _, _, _, total_frames, _, _, _, width, height = struct.unpack(
        "<10I", head[at + 8 : at + 48]
    )
    fps = 1_000_000 / us_per_frame if us_per_frame else 30.0
    return VideoInfo(int(width), int(height), int(total_frames), round(fps, 3))


# -- Matroska / WebM ------------------------------------------------------------------
_EBML_MASTERS = {0x18538067, 0x1549A966, 0x1654AE6B, 0xAE, 0xE0}


def _vint(data: bytes, pos: int, keep_marker: bool) -> tuple[int, int]:
    if pos >= len(data):
        raise ProbeError("truncated EBML")
    first = data[pos]
    length = 1
    while length <= 8 and not first & (0x80 >> (length - 1)):
        length += 1
    if length > 8 or pos + length > len(data):
        raise ProbeError("bad EBML vint")
    value = first if keep_marker else first & (0xFF >> length)
    for byte in data[pos + 1 : pos + length]:
        value = (value << 8) | byte
    unknown = not keep_marker and value == (1 << (7 * length)) - 1
    return (-1 if unknown else value), pos + length


def _probe_ebml(data: bytes) -> VideoInfo:
    facts: dict[int, float] = {}

    def walk(start: int, end: int) -> None:
        pos = start
        while pos < end:
            elem, pos = _vint(data, pos, keep_marker=True)
            size, pos = _vint(data, pos, keep_marker=False)
            if elem == 0x1F43B675:  # Cluster: media data starts, headers are done
                return
            stop = end if size < 0 else min(pos + size, end)
            if elem in _EBML_MASTERS:
                walk(pos, stop)
            elif elem in (0x2AD7B1, 0x23E383, 0xB0, 0xBA, 0x83):
                facts.setdefault(elem, int.from_bytes(data[pos:stop], "big"))
            elif elem == 0x4489 and stop - pos in (4, 8):
                fmt = ">f" if stop - pos == 4 else ">d"
                facts[elem] = struct.unpack(fmt, data[pos:stop])[0]
            pos = stop

    header_id, pos = _vint(data, 0, keep_marker=True)
    header_size, pos = _vint(data, pos, keep_marker=False)
    if header_id != 0x1A45DFA3 or header_size < 0:
        raise ProbeError("not EBML")
    try:
        walk(pos + header_size, len(data))
    except ProbeError:
        if not facts:
            raise
    scale = facts.get(0x2AD7B1, 1_000_000)
    seconds = facts.get(0x4489, 0.0) * scale / 1e9
    frame_ns = facts.get(0x23E383, 0)
    fps = 1e9 / frame_ns if frame_ns else 30.0
    frames = max(1, int(seconds * fps)) if seconds else 1
    return VideoInfo(int(facts.get(0xB0, 0)), int(facts.get(0xBA, 0)), frames, round(fps, 3))
