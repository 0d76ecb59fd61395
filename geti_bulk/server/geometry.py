"""Plane geometry for annotation checks: shape outlines, overlap and area inside the image.

Geti uses Shapely on normalised shapes (GETI_ANNOTATIONS.md §4.2 bounds, §4.3 empty-label
overlap, §5 ROI states). Outlines here are point lists: a polygon (ellipses approximated by
64 vertices), a segment, or a single point; touching counts as intersecting, as in Shapely.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Point = tuple[float, float]
ELLIPSE_VERTICES = 64


def rectangle(x1: float, y1: float, x2: float, y2: float) -> list[Point]:
    return [(x1, y1), (x2, y1), (x2, y2), (x1, y2)]


def ellipse(x1: float, y1: float, x2: float, y2: float) -> list[Point]:
    cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
    steps = [2 * math.pi * i / ELLIPSE_VERTICES for i in range(ELLIPSE_VERTICES)]
    return [(cx + rx * math.cos(t), cy + ry * math.sin(t)) for t in steps]


def rotated_corners(cx: float, cy: float, width: float, height: float,
                    angle_deg: float) -> list[Point]:
    """The four corners Geti stores for a rotated rectangle, in its order (§2.3)."""
    a = math.radians(angle_deg)
    dx = (width / 2 * math.cos(a), width / 2 * math.sin(a))
    dy = (-height / 2 * math.sin(a), height / 2 * math.cos(a))
    return [
        (cx + dx[0] + dy[0], cy + dx[1] + dy[1]),
        (cx - dx[0] + dy[0], cy - dx[1] + dy[1]),
        (cx - dx[0] - dy[0], cy - dx[1] - dy[1]),
        (cx + dx[0] - dy[0], cy + dx[1] - dy[1]),
    ]


def area(polygon: Sequence[Point]) -> float:
    """Shoelace area (orientation ignored)."""
    total = 0.0
    for (x1, y1), (x2, y2) in zip(polygon, [*polygon[1:], *polygon[:1]], strict=True):
        total += x1 * y2 - x2 * y1
    return abs(total) / 2


def clip_to_unit_box(polygon: Sequence[Point]) -> list[Point]:
    """Sutherland-Hodgman clip of ``polygon`` to [0, 1] x [0, 1]."""
    result = list(polygon)
    edges = [(0, 0.0, 1), (0, 1.0, -1), (1, 0.0, 1), (1, 1.0, -1)]  # axis, bound, side
    for axis, bound, side in edges:
        if not result:
            break
        source, result = result, []
        for index, current in enumerate(source):
            previous = source[index - 1]
            inside_now = (current[axis] - bound) * side >= 0
            inside_before = (previous[axis] - bound) * side >= 0
            if inside_now != inside_before:
                t = (bound - previous[axis]) / (current[axis] - previous[axis])
                result.append((previous[0] + t * (current[0] - previous[0]),
                               previous[1] + t * (current[1] - previous[1])))
            if inside_now:
                result.append(current)
    return result


def intersects(a: Sequence[Point], b: Sequence[Point]) -> bool:
    """True if the outlines touch or overlap (either one may be a point or a segment)."""
    if any(_segments_meet(p, q) for p in _edges(a) for q in _edges(b)):
        return True
    return any(_covers(b, p) for p in a[:1]) or any(_covers(a, p) for p in b[:1])


def _edges(outline: Sequence[Point]) -> list[tuple[Point, Point]]:
    if len(outline) < 2:
        return []
    if len(outline) == 2:
        return [(outline[0], outline[1])]
    return list(zip(outline, [*outline[1:], *outline[:1]], strict=True))


def _covers(outline: Sequence[Point], point: Point) -> bool:
    """Point in (or on) the outline; for a point or segment outline, on it."""
    if len(outline) == 1:
        return outline[0] == point
    if any(_on_segment(s, e, point) for s, e in _edges(outline)):
        return True
    if len(outline) < 3:
        return False
    inside = False
    x, y = point
    for (x1, y1), (x2, y2) in _edges(outline):
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
    return inside


def _cross(o: Point, a: Point, b: Point) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def _on_segment(s: Point, e: Point, p: Point) -> bool:
    return (_cross(s, e, p) == 0 and min(s[0], e[0]) <= p[0] <= max(s[0], e[0])
            and min(s[1], e[1]) <= p[1] <= max(s[1], e[1]))


def _segments_meet(p: tuple[Point, Point], q: tuple[Point, Point]) -> bool:
    d1, d2 = _cross(q[0], q[1], p[0]), _cross(q[0], q[1], p[1])
    d3, d4 = _cross(p[0], p[1], q[0]), _cross(p[0], p[1], q[1])
    if ((d1 > 0 > d2) or (d1 < 0 < d2)) and ((d3 > 0 > d4) or (d3 < 0 < d4)):
        return True
    return (_on_segment(q[0], q[1], p[0]) or _on_segment(q[0], q[1], p[1])
            or _on_segment(p[0], p[1], q[0]) or _on_segment(p[0], p[1], q[1]))
