"""Plane geometry on plain point lists: nothing here knows Geti, labels or notes.

Image coordinates: x to the right, y down, so a positive angle turns clockwise on screen,
which is Geti's ROTATED_RECTANGLE convention (GETI_ANNOTATIONS.md §2.3).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence

Point = tuple[float, float]
Rotated = tuple[float, float, float, float, float]     # cx, cy, width, height, angle°


def finite(*values: float) -> bool:
    return all(math.isfinite(v) for v in values)


def area(points: Sequence[Point]) -> float:
    """Absolute shoelace area of a closed polygon."""
    s = 0.0
    for (x0, y0), (x1, y1) in zip(points, [*points[1:], *points[:1]], strict=True):
        s += x0 * y1 - x1 * y0
    return abs(s) / 2


def dedupe(points: Sequence[Point]) -> list[Point]:
    """Drop consecutive repeats, the closing point included."""
    out: list[Point] = []
    for p in points:
        if not out or p != out[-1]:
            out.append(p)
    while len(out) > 1 and out[0] == out[-1]:
        out.pop()
    return out


def inside(p: Point, w: float, h: float, eps: float = 0.0) -> bool:
    return -eps <= p[0] <= w + eps and -eps <= p[1] <= h + eps


def _clip_side(points: list[Point], axis: int, bound: float, keep_below: bool) -> list[Point]:
    def ok(p: Point) -> bool:
        return p[axis] <= bound if keep_below else p[axis] >= bound

    def cross(p: Point, q: Point) -> Point:
        t = (bound - p[axis]) / (q[axis] - p[axis])
        other = p[1 - axis] + t * (q[1 - axis] - p[1 - axis])
        return (bound, other) if axis == 0 else (other, bound)

    out: list[Point] = []
    prev = points[-1]
    for cur in points:
        if ok(cur):
            if not ok(prev):
                out.append(cross(prev, cur))
            out.append(cur)
        elif ok(prev):
            out.append(cross(prev, cur))
        prev = cur
    return out


def clip_polygon(points: Sequence[Point], w: float, h: float) -> list[Point]:
    """Sutherland–Hodgman against the image [0,w]×[0,h]; every point lands in it."""
    out = list(points)
    for axis, bound, below in ((0, 0.0, False), (0, w, True), (1, 0.0, False), (1, h, True)):
        if not out:
            return []
        out = _clip_side(out, axis, bound, below)
    return [(min(max(x, 0.0), w), min(max(y, 0.0), h)) for x, y in out]


def bbox(points: Sequence[Point]) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) of the points."""
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    return min(xs), min(ys), max(xs), max(ys)


def rect_corners(r: Rotated) -> list[Point]:
    """The four corners of a rotated rectangle (centre, size, clockwise angle)."""
    cx, cy, w, h, angle = r
    t = math.radians(angle)
    c, s = math.cos(t), math.sin(t)
    return [(cx + dx * c - dy * s, cy + dx * s + dy * c)
            for dx, dy in ((-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2))]


def ellipse_points(x: float, y: float, w: float, h: float, n: int = 64) -> list[Point]:
    """An inscribed n-gon of the ellipse in the box (its area is never larger)."""
    cx, cy = x + w / 2, y + h / 2
    return [(cx + w / 2 * math.cos(2 * math.pi * k / n), cy + h / 2 * math.sin(2 * math.pi * k / n))
            for k in range(n)]


def convex_hull(points: Sequence[Point]) -> list[Point]:
    """Andrew's monotone chain, counter-clockwise in maths axes, no collinear points."""
    pts = sorted(set(points))
    if len(pts) < 3:
        return pts

    def half(seq: list[Point]) -> list[Point]:
        out: list[Point] = []
        for p in seq:
            while len(out) >= 2 and _cross(out[-2], out[-1], p) <= 0:
                out.pop()
            out.append(p)
        return out

    lower, upper = half(pts), half(pts[::-1])
    return lower[:-1] + upper[:-1]


def _cross(o: Point, a: Point, b: Point) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def min_area_rect(points: Sequence[Point]) -> Rotated | None:
    """The minimum-area enclosing rectangle (rotating calipers over the hull edges), angle
    in [0°, 90°); None when the points span no area."""
    hull = convex_hull(points)
    if len(hull) < 3 or area(hull) <= 0:
        return None
    best: tuple[float, Rotated] | None = None
    for p, q in zip(hull, [*hull[1:], hull[0]], strict=True):
        length = math.hypot(q[0] - p[0], q[1] - p[1])
        ux, uy = (q[0] - p[0]) / length, (q[1] - p[1]) / length
        a = [x * ux + y * uy for x, y in hull]
        b = [-x * uy + y * ux for x, y in hull]
        w, h = max(a) - min(a), max(b) - min(b)
        ma, mb = (max(a) + min(a)) / 2, (max(b) + min(b)) / 2
        cand = (ma * ux - mb * uy, ma * uy + mb * ux, w, h, math.degrees(math.atan2(uy, ux)))
        if best is None or w * h < best[0] - 1e-9:
            best = (w * h, cand)
    assert best is not None
    return normalise_angle(best[1])


def normalise_angle(r: Rotated) -> Rotated:
    """The same rectangle with its angle in [0°, 90°) (swapping width and height)."""
    cx, cy, w, h, angle = r
    angle %= 180.0
    if angle >= 90.0 - 1e-9:
        angle, w, h = angle - 90.0, h, w
    if angle < 1e-9 or angle > 90.0 - 1e-9:
        angle = 0.0
    return cx, cy, w, h, angle


def axis_aligned(angle: float, eps: float = 1e-9) -> bool:
    r = angle % 90.0
    return r < eps or r > 90.0 - eps


def simplify(points: Sequence[Point], limit: int) -> list[Point]:
    """Visvalingam–Whyatt on a closed polygon: remove the point spanning the smallest
    triangle with its neighbours until `limit` points remain (order kept)."""
    n = len(points)
    if n <= limit:
        return list(points)
    prev = [(i - 1) % n for i in range(n)]
    nxt = [(i + 1) % n for i in range(n)]
    alive = [True] * n
    cur = [_tri(points, prev[i], i, nxt[i]) for i in range(n)]
    heap = [(cur[i], i) for i in range(n)]
    heapq.heapify(heap)
    left = n
    while left > limit and heap:
        a, i = heapq.heappop(heap)
        if not alive[i] or a != cur[i]:
            continue
        alive[i] = False
        left -= 1
        p, q = prev[i], nxt[i]
        nxt[p], prev[q] = q, p
        for j in (p, q):
            cur[j] = _tri(points, prev[j], j, nxt[j])
            heapq.heappush(heap, (cur[j], j))
    return [pt for pt, keep in zip(points, alive, strict=True) if keep]


def _tri(points: Sequence[Point], a: int, b: int, c: int) -> float:
    return abs(_cross(points[a], points[b], points[c])) / 2
