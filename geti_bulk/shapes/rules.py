"""The label rules one annotation must pass before it is sent.

GETI_ANNOTATIONS.md §4.2–4.3 (task compatibility, empty labels), §6 (chains: a second-task
label needs a label of the preceding task on the same annotation) and §12.6 (never two labels
of one exclusive group, ancestors included). Each broken rule is an `AnnotationError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from geti_bulk.geti.models import ANOMALY_TASKS, GLOBAL_TASKS, Label, Project, Task
from geti_bulk.shapes.convert import Target
from geti_bulk.shapes.model import AnnotationError

LOCAL_TARGETS: dict[str, Target] = {
    "detection": "rect", "rotated_detection": "rotated",
    "segmentation": "seg", "instance_segmentation": "seg",
}


@dataclass(frozen=True, slots=True)
class TaskView:
    """The project's trainable tasks in pipeline order and where each label belongs."""

    project: Project
    tasks: tuple[Task, ...]
    task_of: dict[str, int]
    by_id: dict[str, Label]

    @classmethod
    def of(cls, project: Project) -> TaskView:
        tasks = tuple(t for t in project.tasks if t.trainable)
        if not tasks:
            raise AnnotationError(f"project {project.name!r} has no trainable task to annotate")
        for t in tasks:
            _supported(project, t)
        task_of = {lab.id: i for i, t in enumerate(tasks) for lab in t.labels}
        by_id = {lab.id: lab for lab in project.labels}
        return cls(project, tasks, task_of, by_id)

    def is_global(self, i: int) -> bool:
        kind = self.tasks[i].task_type
        return kind in GLOBAL_TASKS or kind in ANOMALY_TASKS

    def target(self, i: int) -> Target:
        return LOCAL_TARGETS[self.tasks[i].task_type]

    def empty_label(self) -> Label | None:
        """The first trainable task's empty label (`No object`, `Empty`, `No class`)."""
        return next((lab for lab in self.tasks[0].labels if lab.is_empty), None)

    def known(self, labels: Sequence[Label], who: str) -> tuple[Label, ...]:
        """The project's own labels for these (by id, once each, order kept)."""
        out: dict[str, Label] = {}
        for lab in labels:
            if lab.id not in self.task_of:
                raise AnnotationError(f"{who}: label {lab.name!r} ({lab.id}) is not a label "
                                      f"of a trainable task of project {self.project.name!r}")
            out.setdefault(lab.id, self.by_id[lab.id])
        return tuple(out.values())


def _supported(project: Project, task: Task) -> None:
    kind = task.task_type
    if kind == "keypoint_detection":
        raise AnnotationError(f"project {project.name!r}: keypoint detection annotations are "
                              "not supported (GETI_ANNOTATIONS.md §4.3, §11)")
    if kind not in LOCAL_TARGETS and kind not in GLOBAL_TASKS and kind not in ANOMALY_TASKS:
        raise AnnotationError(f"project {project.name!r}: task type {kind!r} is not supported")


def check_annotation(labels: Sequence[Label], view: TaskView, who: str) -> None:
    """Every rule one annotation's label list must pass (§4.2, §6, §12.6)."""
    _check_empty(labels, view, who)
    _check_chain(labels, view, who)
    _check_anomaly(labels, view, who)
    _check_exclusive(labels, view, who)


def _names(labels: Sequence[Label]) -> str:
    return ", ".join(repr(lab.name) for lab in labels)


def _check_empty(labels: Sequence[Label], view: TaskView, who: str) -> None:
    """An empty label stands alone: alone on the annotation for the first task, alone
    among its own task's labels for a later task (§4.2, §12.5)."""
    for lab in labels:
        if not lab.is_empty:
            continue
        t = view.task_of[lab.id]
        rivals = [x for x in labels if x.id != lab.id and (t == 0 or view.task_of[x.id] == t)]
        if rivals:
            raise AnnotationError(f"{who}: the empty label {lab.name!r} cannot be combined "
                                  f"with {_names(rivals)}")


def _check_chain(labels: Sequence[Label], view: TaskView, who: str) -> None:
    """A later global task's label, or a later task's empty label, needs a non-empty label
    of the preceding task on the same annotation (§4.2, §6)."""
    present = {view.task_of[lab.id] for lab in labels if not lab.is_empty}
    for lab in labels:
        t = view.task_of[lab.id]
        if t == 0 or not (view.is_global(t) or lab.is_empty) or t - 1 in present:
            continue
        prev = view.tasks[t - 1]
        raise AnnotationError(f"{who}: label {lab.name!r} of task {view.tasks[t].title!r} needs "
                              f"a label of the preceding task {prev.title!r} on the same object")


def _check_anomaly(labels: Sequence[Label], view: TaskView, who: str) -> None:
    """An anomaly task takes exactly one of Normal / Anomalous (§4.3)."""
    for i, task in enumerate(view.tasks):
        mine = [lab for lab in labels if view.task_of[lab.id] == i]
        if task.task_type in ANOMALY_TASKS and len(mine) > 1:
            raise AnnotationError(f"{who}: an anomaly task takes one label, got {_names(mine)}")


def _check_exclusive(labels: Sequence[Label], view: TaskView, who: str) -> None:
    """Never two labels of one group on one annotation, counting the ancestors the server
    adds (§12.6, `conflicting_exclusive_labels`)."""
    groups: dict[str, list[str]] = {}
    for lab, via in _with_ancestors(labels, view.by_id):
        text = repr(lab.name) + (f" (ancestor of {via.name!r})" if via else "")
        groups.setdefault(lab.group, []).append(text)
    for group, members in groups.items():
        if len(members) > 1:
            raise AnnotationError(f"{who}: labels {', '.join(members)} are mutually exclusive "
                                  f"(group {group!r}); one annotation may hold only one of them")


def _with_ancestors(labels: Sequence[Label],
                    by_id: dict[str, Label]) -> list[tuple[Label, Label | None]]:
    """Each label once, with the label it was reached from when it is only an ancestor."""
    out: dict[str, tuple[Label, Label | None]] = {lab.id: (lab, None) for lab in labels}
    for lab in labels:
        seen = {lab.id}
        parent = lab.parent_id
        while parent and parent in by_id and parent not in seen:
            seen.add(parent)
            out.setdefault(parent, (by_id[parent], lab))
            parent = by_id[parent].parent_id
    return list(out.values())
