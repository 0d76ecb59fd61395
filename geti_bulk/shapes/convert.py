"""One source shape → one Geti shape dict for a task's geometry, scaled and clipped.

GETI_ANNOTATIONS.md §2.3 (shape fields and bounds), §4.3 (what each task takes) and
§12.2–3 (absolute pixels of Geti's W×H, clip client-side, no epsilon). Every change is
recorded in the `Tally` with its reason; a dropped shape returns None.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from geti_bulk.shapes import geometry as g
from geti_bulk.sources.model import Box, Ellipse, Polygon, RotatedBox, Shape

MAX_POLYGON_POINTS = 5000          # §2.3, §4.2: maxItems 5000
Target = Literal["rect", "rotated", "seg"]   # detection, rotated detection, segmentation
GetiShape = dict[str, Any]


@dataclass(slots=True)
class Tally:
    """Notes and counts while one scene is built (internal, mutable)."""

    notes: list[str] = field(default_factory=list)
    clipped: int = 0
    dropped: int = 0
    converted: int = 0

    def clip(self, text: str) -> None:
        self.clipped += 1
        self.notes.append(text)

    def drop(self, text: str) -> None:
        self.dropped += 1
        self.notes.append(text)

    def convert(self, text: str) -> None:
        self.converted += 1
        self.notes.append(text)


@dataclass(frozen=True, slots=True)
class Scale:
    """Source pixels → Geti pixels, independent factors per axis (§12.2)."""

    sx: float = 1.0
    sy: float = 1.0

    @property
    def uniform(self) -> bool:
        return math.isclose(self.sx, self.sy, rel_tol=1e-9)

    def shape(self, s: Shape, who: str, tally: Tally) -> Shape:
        sx, sy = self.sx, self.sy
        if sx == 1.0 and sy == 1.0:
            return s
        if isinstance(s, Box):
            return Box(s.x * sx, s.y * sy, s.width * sx, s.height * sy)
        if isinstance(s, Ellipse):
            return Ellipse(s.x * sx, s.y * sy, s.width * sx, s.height * sy)
        if isinstance(s, Polygon):
            return Polygon(tuple((x * sx, y * sy) for x, y in s.points))
        return self._rotated(s, who, tally)

    def _rotated(self, s: RotatedBox, who: str, tally: Tally) -> RotatedBox:
        """Exact unless the scale is non-uniform and the box is tilted: then the scaled
        parallelogram is refitted as its minimum-area rectangle (converted)."""
        if self.uniform or not g.finite(s.angle) or g.axis_aligned(s.angle):
            upright = abs(s.angle % 180.0 - 90.0) > 1e-6
            fw, fh = (self.sx, self.sy) if upright else (self.sy, self.sx)
            return RotatedBox(s.cx * self.sx, s.cy * self.sy, s.width * fw, s.height * fh,
                              s.angle)
        corners = [(x * self.sx, y * self.sy)
                   for x, y in g.rect_corners((s.cx, s.cy, s.width, s.height, s.angle))]
        fit = g.min_area_rect(corners)
        if fit is None:
            return RotatedBox(s.cx * self.sx, s.cy * self.sy, 0.0, 0.0, s.angle)
        tally.convert(f"{who} refitted as a rectangle after the non-uniform scale "
                      f"{self.sx:.4g} x {self.sy:.4g}")
        return RotatedBox(*fit)


def convert(s: Shape, target: Target, w: int, h: int, who: str, tally: Tally) -> GetiShape | None:
    """The Geti shape for `s` (already in Geti pixels) under the task's geometry rule."""
    if target == "rotated":
        return _to_rotated(s, w, h, who, tally)
    if target == "rect" or isinstance(s, Box):
        return _to_rectangle(s, w, h, who, tally)
    if isinstance(s, Ellipse):                 # segmentation takes any shape (§4.3)
        return _ellipse(s, w, h, who, tally)
    if isinstance(s, Polygon):
        return _polygon(s.points, w, h, who, tally)
    tally.convert(f"{who} converted to its 4 corners as a POLYGON")
    return _polygon(tuple(g.rect_corners(_rot(s))), w, h, who, tally)


def _rot(s: RotatedBox) -> g.Rotated:
    return s.cx, s.cy, s.width, s.height, s.angle


def _to_rectangle(s: Shape, w: int, h: int, who: str, tally: Tally) -> GetiShape | None:
    """Detection takes RECTANGLE only (§4.3): anything else becomes its bounding box."""
    if isinstance(s, Box | Ellipse):
        if isinstance(s, Ellipse):
            tally.convert(f"{who} converted to its bounding box "
                          "(detection takes rectangles only)")
        return _rectangle(s.x, s.y, s.x + s.width, s.y + s.height, w, h, who, tally)
    points = s.points if isinstance(s, Polygon) else tuple(g.rect_corners(_rot(s)))
    if not points or not all(g.finite(x, y) for x, y in points):
        return _drop(tally, who, "its coordinates are missing or not finite")
    tally.convert(f"{who} converted to its bounding box (detection takes rectangles only)")
    x0, y0, x1, y1 = g.bbox(points)
    return _rectangle(x0, y0, x1, y1, w, h, who, tally)


def px(v: float) -> int:
    """Half-up rounding to a pixel edge (Python's round() sends 1.5 and 2.5 both to 2, so a
    box's two corners could round in opposite directions)."""
    return math.floor(v + 0.5)


def _drop(tally: Tally, who: str, why: str) -> GetiShape | None:
    tally.drop(f"{who} dropped: {why}")
    return None


def _rectangle(x0: float, y0: float, x1: float, y1: float, w: int, h: int,
               who: str, tally: Tally) -> GetiShape | None:
    """Corners rounded first, then clipped to [0,W]×[0,H], then the size derived, so
    x+width ≤ W and y+height ≤ H hold exactly (§12.3)."""
    if not g.finite(x0, y0, x1, y1):
        return _drop(tally, who, "its coordinates are not finite")
    if x1 <= x0 or y1 <= y0:
        return _drop(tally, who, "it has no area")
    if x1 <= 0 or y1 <= 0 or x0 >= w or y0 >= h:
        return _drop(tally, who, f"it lies outside the {w}x{h} image")
    ix0, iy0, ix1, iy1 = px(x0), px(y0), px(x1), px(y1)
    over = [text for bad, text in ((ix0 < 0, f"x {ix0} < 0"), (iy0 < 0, f"y {iy0} < 0"),
                                   (ix1 > w, f"x+width {ix1} > {w}"),
                                   (iy1 > h, f"y+height {iy1} > {h}")) if bad]
    cx0, cy0, cx1, cy1 = max(ix0, 0), max(iy0, 0), min(ix1, w), min(iy1, h)
    if cx1 - cx0 < 1 or cy1 - cy0 < 1:
        return _drop(tally, who, "less than 1 px wide or high inside the image after rounding")
    if over:
        tally.clip(f"{who} clipped to the image: {', '.join(over)}")
    return {"type": "RECTANGLE", "x": cx0, "y": cy0, "width": cx1 - cx0, "height": cy1 - cy0}


def _ellipse(s: Ellipse, w: int, h: int, who: str, tally: Tally) -> GetiShape | None:
    """ELLIPSE may reach past the edges (x,y may be negative) but needs ≥ 1 px of its area
    inside (§2.3): kept as is, measured with an inscribed polygon (never an overestimate)."""
    if not g.finite(s.x, s.y, s.width, s.height):
        return _drop(tally, who, "its coordinates are not finite")
    ix0, iy0 = px(s.x), px(s.y)
    iw, ih = px(s.x + s.width) - ix0, px(s.y + s.height) - iy0
    if iw < 1 or ih < 1:
        return _drop(tally, who, "less than 1 px wide or high after rounding")
    if g.area(g.clip_polygon(g.ellipse_points(ix0, iy0, iw, ih), w, h)) < 1:
        return _drop(tally, who, f"less than 1 px of it lies inside the {w}x{h} image")
    return {"type": "ELLIPSE", "x": ix0, "y": iy0, "width": iw, "height": ih}


def _polygon(points: tuple[g.Point, ...], w: int, h: int, who: str,
             tally: Tally) -> GetiShape | None:
    """Clipped to [0,W]×[0,H] (Sutherland–Hodgman), points rounded; dropped with < 3
    distinct points or no area; above 5000 points simplified (§2.3, §12.2)."""
    if not all(g.finite(x, y) for x, y in points):
        return _drop(tally, who, "its coordinates are not finite")
    if len(set(points)) < 3:
        return _drop(tally, who, "it has fewer than 3 distinct points")
    out = sum(not g.inside(p, w, h) for p in points)
    kept = g.clip_polygon(points, w, h) if out else list(points)
    pts = g.dedupe([(px(x), px(y)) for x, y in kept])
    if out and g.area(kept) <= 0:
        return _drop(tally, who, f"it has no area inside the {w}x{h} image")
    if len(set(pts)) < 3 or g.area(pts) <= 0:
        return _drop(tally, who, "it has no area after rounding to pixels")
    if len(pts) > MAX_POLYGON_POINTS:
        before, pts = len(pts), g.simplify(pts, MAX_POLYGON_POINTS)
        tally.convert(f"{who} simplified from {before} to {len(pts)} points "
                      f"(Geti takes at most {MAX_POLYGON_POINTS})")
    if out:
        tally.clip(f"{who} clipped to the image: {out} of {len(points)} points outside {w}x{h}")
    return {"type": "POLYGON", "points": [{"x": x, "y": y} for x, y in pts]}


def _to_rotated(s: Shape, w: int, h: int, who: str, tally: Tally) -> GetiShape | None:
    """Rotated detection: ROTATED_RECTANGLE (§4.3; a RECTANGLE is stored displaced)."""
    if isinstance(s, RotatedBox):
        return _rotated(_rot(s), w, h, who, tally)
    if isinstance(s, Box | Ellipse):
        if isinstance(s, Ellipse):
            tally.convert(f"{who} converted to its bounding box as a ROTATED_RECTANGLE")
        return _rotated((s.x + s.width / 2, s.y + s.height / 2, s.width, s.height, 0.0),
                        w, h, who, tally)
    return _polygon_to_rotated(s.points, w, h, who, tally)


def _polygon_to_rotated(points: tuple[g.Point, ...], w: int, h: int, who: str,
                        tally: Tally) -> GetiShape | None:
    """The minimum-area rectangle of the polygon's part inside the image (converted)."""
    if not all(g.finite(x, y) for x, y in points) or len(set(points)) < 3:
        return _drop(tally, who, "it has fewer than 3 distinct finite points")
    out = sum(not g.inside(p, w, h) for p in points)
    kept = g.clip_polygon(points, w, h) if out else list(points)
    fit = g.min_area_rect(kept)
    if fit is None or g.area(kept) < 1:
        return _drop(tally, who, f"less than 1 px of it lies inside the {w}x{h} image")
    tally.convert(f"{who} converted to its minimum-area ROTATED_RECTANGLE")
    if out:
        tally.clip(f"{who} clipped to the image: {out} of {len(points)} points outside {w}x{h}")
    return _rotated_json(fit)


def _rotated(r: g.Rotated, w: int, h: int, who: str, tally: Tally) -> GetiShape | None:
    """Kept whole when its corners are inside; else cut to the image and refitted (an
    upright box stays upright), dropped with < 1 px inside (§2.3)."""
    cx, cy, rw, rh, angle = r
    if not g.finite(*r) or rw <= 0 or rh <= 0:
        return _drop(tally, who, "it has no area or coordinates that are not finite")
    corners = g.rect_corners(r)
    out = sum(not g.inside(c, w, h, eps=1e-6) for c in corners)
    if not out:
        if rw * rh < 1:
            return _drop(tally, who, "it covers less than 1 px")
        return _rotated_json(r)
    part = g.clip_polygon(corners, w, h)
    if g.area(part) < 1:
        return _drop(tally, who, f"less than 1 px of it lies inside the {w}x{h} image")
    fit = _upright_fit(part, angle) if g.axis_aligned(angle, 1e-6) else g.min_area_rect(part)
    assert fit is not None
    tally.clip(f"{who} clipped to the image: {out} of 4 corners outside {w}x{h}")
    return _rotated_json(fit)


def _upright_fit(part: list[g.Point], angle: float) -> g.Rotated:
    x0, y0, x1, y1 = g.bbox(part)
    quarter = abs(angle % 180.0 - 90.0) < 1e-6
    bw, bh = (y1 - y0, x1 - x0) if quarter else (x1 - x0, y1 - y0)
    return (x0 + x1) / 2, (y0 + y1) / 2, bw, bh, angle


def _r4(v: float) -> float:
    return round(v, 4) + 0.0        # + 0.0 turns -0.0 into 0.0


def _rotated_json(r: g.Rotated) -> GetiShape:
    cx, cy, rw, rh, angle = r
    return {"type": "ROTATED_RECTANGLE", "x": _r4(cx), "y": _r4(cy), "width": _r4(rw),
            "height": _r4(rh), "angle": _r4(angle)}
