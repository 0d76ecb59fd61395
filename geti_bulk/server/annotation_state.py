"""Annotation state per task of a stored scene (GETI_ANNOTATIONS.md §5).

The first task is ``annotated`` when the scene holds any of its labels (the empty label
counts), else ``none``. A task after a local one looks at that task's regions of interest
(its annotations with a non-empty label): ``annotated`` when the preceding task has
annotations and every ROI carries a label of this task (global, e.g. classification) or
touches an annotation of it (local, e.g. segmentation); ``none`` when no ROI does;
``partially_annotated`` otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence

from . import geometry
from .annotation_views import Annotation, outline
from .seed import GLOBAL_TASK_TYPES, Project, Task


def scene_states(annotations: Sequence[Annotation], project: Project) -> tuple[tuple[str, str], ...]:
    empty = {label.id for label in project.labels if label.is_empty}
    states: list[tuple[str, str]] = []
    previous: Task | None = None
    for task in project.trainable_tasks:
        if previous is None:
            state = _first_task_state(annotations, task)
        else:
            state = _chained_state(annotations, previous, task, empty)
        states.append((task.id, state))
        previous = task
    return tuple(states)


def _ids(task: Task) -> set[str]:
    return {label.id for label in task.labels}


def _carries(annotation: Annotation, ids: set[str]) -> bool:
    return any(label.id in ids for label in annotation.labels)


def _first_task_state(annotations: Sequence[Annotation], task: Task) -> str:
    ids = _ids(task)
    return "annotated" if any(_carries(a, ids) for a in annotations) else "none"


def _chained_state(annotations: Sequence[Annotation], previous: Task, task: Task,
                   empty: set[str]) -> str:
    first = [a for a in annotations if _carries(a, _ids(previous))]
    rois = [a for a in first if any(label.id not in empty for label in a.labels)]
    current = _ids(task)
    if task.task_type in GLOBAL_TASK_TYPES:
        unannotated = [roi for roi in rois if not _carries(roi, current)]
    else:
        shapes = [outline(a.shape) for a in annotations if _carries(a, current)]
        unannotated = [roi for roi in rois
                       if not any(geometry.intersects(outline(roi.shape), s) for s in shapes)]
    if first and not unannotated:
        return "annotated"
    if len(rois) == len(unannotated):
        return "none"
    return "partially_annotated"
