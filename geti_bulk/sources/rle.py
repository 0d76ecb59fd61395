"""Optional RLE mask → polygons, for COCO `iscrowd` masks and Datumaro `mask` annotations.

Needs `pycocotools` (RLE decoding, both the uncompressed `counts` list and the compressed
string) and `opencv-python-headless` (`cv2.findContours`, the contour tracer Datumaro uses
too). Neither is required: without them `load_decoder()` is None and readers drop masks
with `MISSING_DECODER` as the reason. Only outer contours are kept (holes are lost); a
mask larger than MAX_MASK_PIXELS is refused rather than decoded, to bound memory.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from typing import Any

MAX_MASK_PIXELS = 50_000_000
MISSING_DECODER = ("RLE mask dropped: install pycocotools and opencv-python-headless "
                   "to convert masks to polygons")

Decoder = Callable[[dict[str, Any]], list[list[float]]]


def load_decoder() -> Decoder | None:
    try:
        mask_utils = importlib.import_module("pycocotools.mask")
        cv2 = importlib.import_module("cv2")
        np = importlib.import_module("numpy")
    except ImportError:
        return None

    def decode(rle: dict[str, Any]) -> list[list[float]]:
        return _to_polygons(rle, mask_utils, cv2, np)

    return decode


def _to_polygons(rle: dict[str, Any], mask_utils: Any, cv2: Any, np: Any) -> list[list[float]]:
    """Flat [x1, y1, x2, y2, …] outer contours (≥ 3 points) of an RLE mask.
    Raises ValueError with the reason when the RLE is malformed or too large."""
    size = rle.get("size")
    counts = rle.get("counts")
    if (not isinstance(size, list) or len(size) != 2
            or not all(isinstance(v, int) and v > 0 for v in size)):
        raise ValueError("RLE mask without a valid [height, width] size")
    h, w = size
    if h * w > MAX_MASK_PIXELS:
        raise ValueError(f"RLE mask of {w}x{h} px is larger than {MAX_MASK_PIXELS} pixels")
    if isinstance(counts, list):
        if sum(int(c) for c in counts) != h * w:
            raise ValueError("RLE counts do not add up to height x width")
        encoded = mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    elif isinstance(counts, str):
        encoded = {"size": [h, w], "counts": counts.encode("ascii")}
    else:
        raise ValueError("RLE mask whose counts are neither a list nor a string")
    try:
        with warnings.catch_warnings():     # pycocotools' numpy-2 DeprecationWarning
            warnings.simplefilter("ignore")
            mask = np.ascontiguousarray(mask_utils.decode(encoded), dtype=np.uint8)
    except Exception as e:  # pycocotools raises bare exceptions on corrupt strings
        raise ValueError(f"RLE mask could not be decoded: {e}") from e
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons = [[float(v) for v in c.reshape(-1)] for c in contours if len(c) >= 3]
    if not polygons:
        raise ValueError("RLE mask has no region of 3 or more pixels")
    return polygons
