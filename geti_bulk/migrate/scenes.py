"""A source item's latest annotation (Geti 2 REST terms, label ids of the source
project) → a `SourceAnnotation` in label *names* and source pixels, which the upload
path's `Annotator` maps to the target's labels and shapes. Pure: no I/O."""

from __future__ import annotations

from typing import Any

from geti_bulk.geti.models import Label, Project
from geti_bulk.migrate.plan import Plan, shape_of
from geti_bulk.sources.model import SourceAnnotation, SourceObject


def label_names(project: Project, plan: Plan) -> set[str]:
    """Every name a source annotation can carry after the plan's conversions."""
    if plan.anomaly:
        return {"Normal", "Anomalous"}
    return {lab.name for t in project.tasks if t.trainable for lab in t.labels
            if not lab.is_empty and lab.id not in plan.chain_tail}


def source_annotation(anns: list[dict[str, Any]] | None, project: Project, plan: Plan,
                      width: int, height: int) -> tuple[SourceAnnotation | None, list[str]]:
    """(the annotation to post, notes); None when the source item has no annotation."""
    if anns is None:
        return None, []
    by_id = {lab.id: lab for lab in project.labels}
    notes: list[str] = []
    dropped_tail = refused = converted = 0
    objects: list[SourceObject] = []
    saw_empty = False
    anomalous = False
    global_task = project.task_type in ("classification",) or plan.anomaly
    for a in anns:
        labels: list[Label] = [by_id[x["id"]] for x in a.get("labels", [])
                               if isinstance(x, dict) and x.get("id") in by_id]
        kept = [lab for lab in labels if lab.id not in plan.chain_tail]
        dropped_tail += len(labels) - len(kept)
        if any(lab.is_anomalous for lab in kept):
            anomalous = True
        if any(lab.is_empty for lab in kept):
            saw_empty = True
        real = [lab for lab in kept if not lab.is_empty]
        if not real or plan.anomaly:
            continue
        names = tuple(lab.name for lab in real)
        if global_task:
            objects.append(SourceObject(labels=names))
            continue
        shape, why = shape_of(a.get("shape") or {}, plan)
        if shape is None:
            refused += 1
            notes.append(str(why))
            continue
        converted += why is not None
        objects.append(SourceObject(labels=names, shape=shape))
    if dropped_tail:
        notes.append(f"{dropped_tail} label(s) of later chain tasks dropped (first-task-only)")
    if converted:
        notes.append(f"{converted} shape(s) converted (ellipse or rotated box → polygon)")
    if plan.anomaly:
        name = "Anomalous" if anomalous else "Normal"
        local = sum(1 for a in anns if (a.get("shape") or {}).get("type") != "RECTANGLE"
                    or not _full(a.get("shape") or {}, width, height))
        if local:
            notes.append(f"{local} local anomaly shape(s) dropped: the image is {name}")
        return SourceAnnotation(objects=(SourceObject(labels=(name,)),), width=width,
                                height=height), notes
    if not objects:
        if saw_empty:
            return SourceAnnotation(objects=(), width=width, height=height, empty=True), notes
        if refused:
            return None, notes
        return None, notes + ["no annotation left to move"]
    return SourceAnnotation(objects=tuple(objects), width=width, height=height), notes


def _full(shape: dict[str, Any], width: int, height: int) -> bool:
    return (shape.get("x"), shape.get("y"), shape.get("width"), shape.get("height")) == (
        0, 0, width, height)
