"""Small synthetic media files for tests and benchmarks (no ffmpeg needed).

The video builders write container headers that ``media_probe`` (and most players'
probers) understand; the frame payload is filler bytes, not decodable video.
"""

from __future__ import annotations

import io
import struct

from PIL import Image


def image_bytes(width: int = 64, height: int = 48, fmt: str = "JPEG", seed: int = 0) -> bytes:
    """A real, decodable image of the given size (solid colour derived from ``seed``)."""
    color = ((seed * 67) % 256, (seed * 131) % 256, (seed * 29) % 256)
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format=fmt)
    return buffer.getvalue()


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def mp4_bytes(
    width: int = 320, height: int = 240, frames: int = 60, fps: int = 30, filler: int = 1024
) -> bytes:
    """An ISO BMFF file: ftyp, moov (mvhd + one video trak with tkhd/mdhd/hdlr/stsz), mdat."""
    timescale = fps * 1000
    duration = frames * 1000
    mvhd = struct.pack(">IIIII", 0, 0, 0, timescale, duration) + bytes(80)
    tkhd = (
        struct.pack(">IIIIII", 0x7, 0, 0, 1, 0, duration)
        + bytes(8 + 8 + 36)
        + struct.pack(">II", width << 16, height << 16)
    )
    mdhd = struct.pack(">IIIII", 0, 0, 0, timescale, duration) + bytes(4)
    hdlr = struct.pack(">II4s", 0, 0, b"vide") + bytes(12) + b"VideoHandler\x00"
    stsz = struct.pack(">III", 0, 0, frames) + struct.pack(">I", 16) * frames
    stbl = _box(b"stbl", _box(b"stsz", stsz))
    minf = _box(b"minf", stbl)
    mdia = _box(b"mdia", _box(b"mdhd", mdhd) + _box(b"hdlr", hdlr) + minf)
    trak = _box(b"trak", _box(b"tkhd", tkhd) + mdia)
    moov = _box(b"moov", _box(b"mvhd", mvhd) + trak)
    ftyp = _box(b"ftyp", b"isom" + struct.pack(">I", 512) + b"isomiso2mp41")
    return ftyp + moov + _box(b"mdat", bytes(filler))


def avi_bytes(width: int = 320, height: int = 240, frames: int = 60, fps: int = 25) -> bytes:
    """A RIFF/AVI file with an ``avih`` main header and an empty ``movi`` list."""
    avih = struct.pack("<10I", 1_000_000 // fps, 0, 0, 0x10, frames, 0, 1, 0, width, height)
    avih += bytes(16)
    hdrl = b"hdrl" + b"avih" + struct.pack("<I", len(avih)) + avih
    lists = b"LIST" + struct.pack("<I", len(hdrl)) + hdrl
    lists += b"LIST" + struct.pack("<I", 4) + b"movi"
    return b"RIFF" + struct.pack("<I", 4 + len(lists)) + b"AVI " + lists


def _ebml(elem_id: int, payload: bytes) -> bytes:
    id_bytes = elem_id.to_bytes((elem_id.bit_length() + 7) // 8, "big")
    size = len(payload) | (1 << 56)  # 8-byte size vint
    return id_bytes + size.to_bytes(8, "big") + payload


def mkv_bytes(
    width: int = 320, height: int = 240, seconds: float = 2.0, fps: int = 25, webm: bool = False
) -> bytes:
    """A Matroska (or WebM) header: EBML, Segment/Info (duration), Tracks (video size)."""
    header = _ebml(0x1A45DFA3, _ebml(0x4282, b"webm" if webm else b"matroska"))
    info = _ebml(
        0x1549A966,
        _ebml(0x2AD7B1, (1_000_000).to_bytes(3, "big"))
        + _ebml(0x4489, struct.pack(">d", seconds * 1000.0)),
    )
    video = _ebml(0xE0, _ebml(0xB0, width.to_bytes(2, "big")) + _ebml(0xBA, height.to_bytes(2, "big")))
    entry = _ebml(
        0xAE,
        _ebml(0x83, b"\x01") + _ebml(0x23E383, (1_000_000_000 // fps).to_bytes(4, "big")) + video,
    )
    tracks = _ebml(0x1654AE6B, entry)
    cluster = _ebml(0x1F43B675, bytes(64))
    return header + _ebml(0x18538067, info + tracks + cluster)
