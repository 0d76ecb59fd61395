"""What the target can hold of the source project, decided before anything is sent.

Geti 3 holds classification (multi-class or multi-label), detection and instance
segmentation, one task per project, no label hierarchy, no empty labels (GETI3_API.md
§4). Everything else in a Geti 2 project is listed up front: each documented conversion
has a flag (`--convert NAME`); without it, or without any conversion, the run stops
before the first byte. Pure: no I/O.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field

from geti_bulk.errors import ConfigError
from geti_bulk.geti.models import ANOMALY_TASKS, Label, Project
from geti_bulk.migrate.conversions import CONVERSIONS
from geti_bulk.sources.model import Box, Ellipse, Polygon, RotatedBox, Shape

GETI3_TASKS = frozenset({"classification", "detection", "instance_segmentation"})
ELLIPSE_POINTS = 64
NAMESPACE = uuid.UUID("6f1c3c1e-9a2b-4f7e-8c51-0d5b7a1e2f30")   # ids of created projects


@dataclass(frozen=True, slots=True)
class Shape3:
    """The target's task: its type, exclusivity and label names (for --create-project)."""

    task_type: str
    exclusive: bool
    labels: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Plan:
    """How the source's annotations go to the target."""

    task: Shape3
    conversions: frozenset[str]         # the documented conversions in use
    chain_tail: frozenset[str]          # label ids of later chain tasks (dropped)
    keep_ellipses: bool                 # the target holds ellipses (Geti 2)
    keep_rotated: bool                  # the target holds rotated boxes (Geti 2)
    anomaly: bool                       # anomaly labels → Normal/Anomalous classification
    notes: tuple[str, ...] = ()
    frames: bool = True                 # video frame annotations are moved
    refused: tuple[str, ...] = field(default=())   # listed, moved without that part


def _trainable(project: Project) -> list[tuple[str, tuple[Label, ...]]]:
    return [(t.task_type, t.labels) for t in project.tasks if t.trainable]


def _exclusive(labels: tuple[Label, ...]) -> bool:
    groups = {lab.group for lab in labels if not lab.is_empty}
    return len(groups) <= 1


def plan_migration(source: Project, target_dialect: str, wanted: frozenset[str]) -> Plan:
    """The plan, or ConfigError listing everything the target cannot hold unconverted."""
    unknown = sorted(wanted - CONVERSIONS.keys())
    if unknown:
        raise ConfigError(f"convert: unknown conversion(s) {', '.join(unknown)}; known: "
                          f"{', '.join(CONVERSIONS)}")
    tasks = _trainable(source)
    if not tasks:
        raise ConfigError(f"source project {source.name!r} has no trainable task")
    task_type, labels = tasks[0]
    geti3 = target_dialect == "geti3"
    if not geti3:       # Geti 2 → Geti 2: the same project shape, nothing to convert
        every = tuple(lab.name for _, ls in tasks for lab in ls if not lab.is_empty)
        return Plan(Shape3(task_type, _exclusive(labels), every), frozenset(), frozenset(),
                    True, True, False)
    need: list[tuple[str, str | None]] = []        # (what cannot be held, conversion)
    used: set[str] = set()
    tail: set[str] = set()
    notes: list[str] = []
    if len(tasks) > 1:
        need.append((f"a task chain ({' → '.join(t for t, _ in tasks)})", "first-task-only"))
        tail = {lab.id for _, ls in tasks[1:] for lab in ls}
    anomaly = task_type in ANOMALY_TASKS
    out_type = task_type
    if anomaly:
        need.append((f"an anomaly task ({task_type})", "anomaly-to-classification"))
        out_type = "classification"
    elif task_type == "segmentation":
        need.append(("semantic segmentation", "segmentation-to-instance"))
        out_type = "instance_segmentation"
    elif task_type == "rotated_detection":
        need.append(("rotated boxes (rotated detection)", "rotated-to-polygon"))
        out_type = "instance_segmentation"
    elif task_type not in GETI3_TASKS:
        need.append((f"a {task_type} task", None))
    if any(lab.parent_id for lab in labels if not lab.is_empty):
        need.append(("a label hierarchy", "flatten-labels"))
    missing = [(what, conv) for what, conv in need if conv is None or conv not in wanted]
    if missing:
        lines = [f"{what}: " + (f"pass --convert {conv} ({CONVERSIONS[conv]})" if conv
                                else "no documented conversion") for what, conv in missing]
        raise ConfigError(f"Geti 3 cannot hold what source project {source.name!r} has, "
                          "nothing was sent:\n  " + "\n  ".join(lines))
    used = {conv for _, conv in need if conv}
    for conv in sorted(used):
        notes.append(f"converting: {CONVERSIONS[conv]}")
    flat = "flatten-labels" in used
    if anomaly:
        names: tuple[str, ...] = ("Normal", "Anomalous")
        exclusive = True
    else:
        names = tuple(lab.name for lab in labels if not lab.is_empty)
        exclusive = out_type != "classification" or (_exclusive(labels) and not flat)
    return Plan(Shape3(out_type, exclusive, names), frozenset(used), frozenset(tail),
                keep_ellipses=False, keep_rotated=False, anomaly=anomaly,
                notes=tuple(notes))


def project_id_for(source_host: str, source_project_id: str, name: str) -> str:
    """The created project's id, the same on every try and every run of this migration
    (GETI3_API.md §4: a client-chosen id makes a retried create safe)."""
    return str(uuid.uuid5(NAMESPACE, f"{source_host}|{source_project_id}|{name}"))


def create_body(plan: Plan, project_id: str, name: str,
                label_map: dict[str, tuple[str, ...]] | None = None) -> dict[str, object]:
    """`POST /api/projects` (§4): the source's labels, renamed by `--label-map` (a label
    mapped to nothing is left out)."""
    t = plan.task
    names: list[str] = []
    for n in t.labels:
        for new in (label_map or {}).get(n, (n,)):
            if new not in names:
                names.append(new)
    return {"id": project_id, "name": name,
            "task": {"task_type": t.task_type, "exclusive_labels": t.exclusive,
                     "labels": [{"name": n} for n in names]}}


def ellipse_polygon(e: Ellipse, n: int = ELLIPSE_POINTS) -> Polygon:
    """An ellipse's outline as `n` points (its bounding box's inscribed ellipse)."""
    cx, cy, rx, ry = e.x + e.width / 2, e.y + e.height / 2, e.width / 2, e.height / 2
    return Polygon(tuple((cx + rx * math.cos(2 * math.pi * i / n),
                          cy + ry * math.sin(2 * math.pi * i / n)) for i in range(n)))


def rotated_polygon(r: RotatedBox) -> Polygon:
    """A rotated box's four corners (clockwise angle in degrees, image y down)."""
    a = math.radians(r.angle)
    ca, sa = math.cos(a), math.sin(a)
    pts = []
    for dx, dy in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
        x, y = dx * r.width / 2, dy * r.height / 2
        pts.append((r.cx + x * ca - y * sa, r.cy + x * sa + y * ca))
    return Polygon(tuple(pts))


def shape_of(d: dict[str, object], plan: Plan) -> tuple[Shape | None, str | None]:
    """A Geti 2 REST shape → a source shape (and a conversion note), or (None, why) when
    the target cannot hold it."""
    kind = str(d.get("type", "")).upper()

    def num(k: str) -> float:
        v = d.get(k, 0)
        return float(v) if isinstance(v, int | float) else 0.0

    if kind == "RECTANGLE":
        return Box(num("x"), num("y"), num("width"), num("height")), None
    if kind == "POLYGON":
        pts = d.get("points") or []
        assert isinstance(pts, list)
        return Polygon(tuple((float(p["x"]), float(p["y"])) for p in pts)), None
    if kind == "ELLIPSE":
        e = Ellipse(num("x"), num("y"), num("width"), num("height"))
        if plan.keep_ellipses:
            return e, None
        return ellipse_polygon(e), "ellipse sent as a polygon"
    if kind == "ROTATED_RECTANGLE":
        r = RotatedBox(num("x"), num("y"), num("width"), num("height"), num("angle"))
        if plan.keep_rotated:
            return r, None
        return rotated_polygon(r), "rotated box sent as a polygon"
    return None, f"a {kind or 'shapeless'} annotation cannot be moved"
