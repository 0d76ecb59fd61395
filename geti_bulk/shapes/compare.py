"""Does the server's latest annotation hold what we meant to post?

GETI_ANNOTATIONS.md §2.3 (a GET rounds RECTANGLE/ELLIPSE/POLYGON to integers and
ROTATED_RECTANGLE to 4 decimals; compare with ±1 px; in rotated detection a RECTANGLE comes
back as a ROTATED_RECTANGLE), §2.2 (the server adds the ancestors of hierarchical labels and
fills in `probability`/`source`), §5 and §12.10 (verify with `GET …/annotations/latest`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from geti_bulk.geti.models import Project
from geti_bulk.shapes.model import Scene

ANGLE_TOLERANCE = 1.0      # degrees


@dataclass(frozen=True, slots=True)
class _Ann:
    labels: frozenset[str]
    shape: Mapping[str, Any]


def scene_matches(expected: Scene | Sequence[dict[str, Any]], got: Sequence[dict[str, Any]], *,
                  tolerance: float = 1.0, project: Project | None = None) -> str | None:
    """None when `got` (a GET's `annotations`) holds the expected annotations, in any order;
    else a short reason. Labels are compared as sets of ids; with `project`, labels that are
    ancestors of another label of the same annotation are ignored on both sides (the server
    adds them). Coordinates within ±`tolerance` px, angles within 1°."""
    want = list(expected.annotations if isinstance(expected, Scene) else expected)
    parents = {lab.id: lab.parent_id for lab in project.labels} if project else {}
    names = {lab.id: lab.name for lab in project.labels} if project else {}
    exp = [_norm(a, parents) for a in want]
    have = [_norm(a, parents) for a in got]
    match_e = _matching(exp, have, tolerance)
    missing = [exp[i] for i, m in enumerate(match_e) if m < 0]
    taken = set(match_e)
    extra = [have[j] for j in range(len(have)) if j not in taken]
    if not missing and not extra:
        return None
    return _reason(exp, have, missing, extra, names)


def _norm(a: Mapping[str, Any], parents: dict[str, str | None]) -> _Ann:
    labels = a.get("labels") if isinstance(a, Mapping) else None
    ids = {str(x.get("id")) for x in labels or () if isinstance(x, Mapping)}
    implied: set[str] = set()
    for i in ids:
        seen = {i}
        p = parents.get(i)
        while p and p not in seen:
            seen.add(p)
            implied.add(p)
            p = parents.get(p)
    shape = a.get("shape") if isinstance(a, Mapping) else None
    return _Ann(frozenset(ids - implied), shape if isinstance(shape, Mapping) else {})


def _matching(exp: list[_Ann], have: list[_Ann], tol: float) -> list[int]:
    """A maximum matching (augmenting paths, breadth first): for each expected annotation
    the index of its server annotation, or -1."""
    adj = [[j for j, h in enumerate(have) if e.labels == h.labels and _same(e.shape, h.shape, tol)]
           for e in exp]
    match_e, match_h = [-1] * len(exp), [-1] * len(have)
    for start in range(len(exp)):
        came: dict[int, int] = {}
        queue, free = [start], -1
        for u in queue:
            for j in adj[u]:
                if j in came:
                    continue
                came[j] = u
                if match_h[j] < 0:
                    free = j
                    break
                queue.append(match_h[j])
            if free >= 0:
                break
        j = free
        while j >= 0:                       # flip the path back to `start`
            u = came[j]
            prev = match_e[u]
            match_e[u], match_h[j] = j, u
            j = prev
    return match_e


def _num(d: Mapping[str, Any], key: str) -> float:
    v = d.get(key)
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else math.nan


def _near(a: float, b: float, tol: float) -> bool:
    return abs(a - b) <= tol          # False for NaN


def _same(e: Mapping[str, Any], h: Mapping[str, Any], tol: float) -> bool:
    te, th = e.get("type"), h.get("type")
    if te == "RECTANGLE" and th == "ROTATED_RECTANGLE":
        return _same_rotated(_rect_as_rotated(e), h, tol)
    if te == "ROTATED_RECTANGLE" and th == "RECTANGLE":
        return _same_rotated(e, _rect_as_rotated(h), tol)
    if te != th:
        return False
    if te in ("RECTANGLE", "ELLIPSE"):
        return all(_near(_num(e, k), _num(h, k), tol) for k in ("x", "y", "width", "height"))
    if te == "ROTATED_RECTANGLE":
        return _same_rotated(e, h, tol)
    if te == "POLYGON":
        return _same_polygon(_points(e), _points(h), tol)
    if te == "KEYPOINT":
        return (_near(_num(e, "x"), _num(h, "x"), tol) and _near(_num(e, "y"), _num(h, "y"), tol)
                and e.get("is_visible") == h.get("is_visible"))
    return dict(e) == dict(h)


def _rect_as_rotated(r: Mapping[str, Any]) -> dict[str, Any]:
    """How the server renders a RECTANGLE stored in a rotated detection project."""
    w, h = _num(r, "width"), _num(r, "height")
    return {"x": _num(r, "x") + w / 2, "y": _num(r, "y") + h / 2, "width": w, "height": h,
            "angle": 0.0}


def _canonical(r: Mapping[str, Any]) -> tuple[float, float, float]:
    """(long side, short side, angle of the long side mod 180°)."""
    w, h, a = _num(r, "width"), _num(r, "height"), _num(r, "angle")
    if w < h:
        w, h, a = h, w, a + 90.0
    return w, h, a % 180.0


def _same_rotated(e: Mapping[str, Any], h: Mapping[str, Any], tol: float) -> bool:
    if not (_near(_num(e, "x"), _num(h, "x"), tol) and _near(_num(e, "y"), _num(h, "y"), tol)):
        return False
    (we, he, ae), (wh, hh, ah) = _canonical(e), _canonical(h)
    if _near(we, he, 2 * tol) or _near(wh, hh, 2 * tol):
        # a near-square: which side is "long" is noise, and it looks the same at +90°
        period = 90.0
        sides = ((_near(we, wh, tol) and _near(he, hh, tol))
                 or (_near(we, hh, tol) and _near(he, wh, tol)))
    else:
        period = 180.0
        sides = _near(we, wh, tol) and _near(he, hh, tol)
    d = abs(ae - ah) % period
    return sides and min(d, period - d) <= ANGLE_TOLERANCE


def _points(s: Mapping[str, Any]) -> list[tuple[float, float]]:
    pts = s.get("points")
    if not isinstance(pts, list):
        return []
    return [(_num(p, "x"), _num(p, "y")) for p in pts if isinstance(p, Mapping)]


def _same_polygon(a: list[tuple[float, float]], b: list[tuple[float, float]], tol: float) -> bool:
    """Same points in the same cyclic order, from any starting point, either direction."""
    if len(a) != len(b) or not a:
        return False
    n = len(a)
    for seq in (b, b[::-1]):
        for k in range(n):
            if not (_near(a[0][0], seq[k][0], tol) and _near(a[0][1], seq[k][1], tol)):
                continue
            if all(_near(a[i][0], seq[(k + i) % n][0], tol)
                   and _near(a[i][1], seq[(k + i) % n][1], tol) for i in range(n)):
                return True
    return False


def _describe(a: _Ann, names: dict[str, str]) -> str:
    s = a.shape
    labels = ", ".join(sorted(names.get(i, i) for i in a.labels)) or "no labels"
    kind = str(s.get("type", "no shape"))
    if kind == "POLYGON":
        geo = f"{len(_points(s))} points"
    else:
        keys = ("x", "y", "width", "height", "angle") if kind == "ROTATED_RECTANGLE" else (
            "x", "y", "width", "height")
        geo = " ".join(f"{k}={s.get(k)}" for k in keys if k in s)
    return f"{kind} {geo} [{labels}]"


def _reason(exp: list[_Ann], have: list[_Ann], missing: list[_Ann], extra: list[_Ann],
            names: dict[str, str]) -> str:
    if len(exp) == len(have):
        head = f"{len(missing)} of {len(exp)} annotations differ"
    else:
        head = f"expected {len(exp)} annotations, the server has {len(have)}"
    parts = []
    if missing:
        parts.append(f"expected {_describe(missing[0], names)}" + _more(missing))
    if extra:
        parts.append(f"server has {_describe(extra[0], names)}" + _more(extra))
    return f"{head}: {'; '.join(parts)}"


def _more(items: list[_Ann]) -> str:
    return f" (and {len(items) - 1} more)" if len(items) > 1 else ""
