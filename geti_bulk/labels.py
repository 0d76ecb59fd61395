"""Label names from folders or a manifest → the project's label ids.

Checked before anything is sent (GETI_API.md §3.4): only projects whose first
trainable task is classification or anomaly take labels at upload; elsewhere real
Geti answers 500. Geti does not check exclusivity at upload, so we do: labels of one
group are mutually exclusive, the empty label stands alone, anomaly takes one label.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from geti_bulk.errors import FileError, LabelSetupError
from geti_bulk.geti.models import ANOMALY_TASKS, Label, Project


@dataclass(frozen=True, slots=True)
class LabelPlan:
    project_name: str
    task_type: str
    by_name: dict[str, Label]

    def ids_for(self, names: tuple[str, ...]) -> tuple[str, ...]:
        """The label ids for one file; FileError when the combination is not allowed."""
        if not names:
            return ()
        labels = [self.by_name[n] for n in dict.fromkeys(names)]
        if self.task_type in ANOMALY_TASKS and len(labels) != 1:
            raise FileError(f"anomaly project takes exactly one label (Normal or Anomalous), "
                            f"got {', '.join(names)}")
        if len(labels) > 1:
            empty = [lab.name for lab in labels if lab.is_empty]
            if empty:
                raise FileError(f"the empty label {empty[0]!r} cannot be combined with others")
            groups: dict[str, list[str]] = {}
            for lab in labels:
                groups.setdefault(lab.group, []).append(lab.name)
            clash = {g: n for g, n in groups.items() if len(n) > 1}
            if clash:
                g, n = next(iter(clash.items()))
                raise FileError(f"labels {', '.join(n)} are mutually exclusive (group {g!r}): "
                                "a single-label project takes exactly one of them")
        return tuple(lab.id for lab in labels)


def _match(name: str, labels: tuple[Label, ...]) -> Label | None:
    exact = [lab for lab in labels if lab.name == name]
    if len(exact) == 1:
        return exact[0]
    folded = [lab for lab in labels if lab.name.casefold() == name.casefold()]
    return folded[0] if len(folded) == 1 else None


def plan_labels(project: Project, names: Iterable[str]) -> LabelPlan:
    """Map every label name the source uses; list all problems at once."""
    wanted = sorted(set(names))
    task = project.first_trainable
    task_type = project.task_type
    if not wanted:
        return LabelPlan(project.name, task_type, {})
    if not project.takes_labels_at_upload:
        shown = ", ".join(wanted[:10]) + (" …" if len(wanted) > 10 else "")
        raise LabelSetupError(
            f"project {project.name!r} is a {task_type} project: Geti takes labels at upload only "
            f"for classification and anomaly projects (it answers 500 otherwise). The source "
            f"names labels ({shown}); pass --labels none to upload the files without labels")
    # labels of the first trainable task only: those are what an upload annotates
    candidates = task.labels if task else project.labels
    by_name: dict[str, Label] = {}
    unknown: list[str] = []
    for n in wanted:
        lab = _match(n, candidates)
        if lab is None:
            unknown.append(n)
        else:
            by_name[n] = lab
    if unknown:
        have = ", ".join(lab.name for lab in candidates)
        raise LabelSetupError(f"{len(unknown)} label name(s) not in project {project.name!r}: "
                              f"{', '.join(unknown)} (the project has: {have})")
    return LabelPlan(project.name, task_type, by_name)
