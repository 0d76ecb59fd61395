"""Label names from folders or a manifest → the project's label ids.

Checked before anything is sent (GETI_API.md §3.4): only projects whose first
trainable task is classification or anomaly take labels at upload; elsewhere real
Geti answers 500. Geti does not check exclusivity at upload, so we do: labels of one
group are mutually exclusive, the empty label stands alone, anomaly takes one label.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from geti_bulk.errors import ConfigError, FileError, LabelSetupError
from geti_bulk.geti.models import ANOMALY_TASKS, Label, Project


@dataclass(frozen=True, slots=True)
class LabelPlan:
    project_name: str
    task_type: str
    by_name: dict[str, Label]

    def ids_for(self, names: tuple[str, ...]) -> tuple[str, ...]:
        """The label ids for one file; FileError when the combination is not allowed."""
        labels = [self.by_name[n] for n in dict.fromkeys(names) if n in self.by_name]
        if not labels:
            return ()
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


def plan_labels(project: Project, names: Iterable[str],
                label_map: dict[str, tuple[str, ...]] | None = None,
                skip_unknown: bool = False) -> LabelPlan:
    """Map every label name the source uses (through `label_map`, so ImageNet synsets
    can name project labels); list all problems at once."""
    label_map = label_map or {}
    wanted = sorted(n for n in set(names) if label_map.get(n, (n,)))
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
        target = label_map.get(n, (n,))
        lab = _match(target[0], candidates) if len(target) == 1 else None
        if lab is None:
            unknown.append(n if target == (n,) else f"{n} (mapped to {', '.join(target)})")
        else:
            by_name[n] = lab
    if unknown and skip_unknown:
        unknown = []
    if unknown:
        have = ", ".join(lab.name for lab in candidates)
        raise LabelSetupError(f"{len(unknown)} label name(s) not in project {project.name!r}: "
                              f"{', '.join(unknown)} (the project has: {have})")
    return LabelPlan(project.name, task_type, by_name)


# --- annotation labels: dataset category names → the project's labels -------------------

LabelMap = dict[str, tuple[str, ...]]


def parse_label_map(entries: Iterable[str], read_file: bool = True) -> LabelMap:
    """`old=new` pairs, or files of such lines (`#` comments). `new` may name several
    labels, comma-separated: a detection → classification chain needs the detection
    label and the class label (`cat=animal,cat`). An empty `new` drops the category."""
    from pathlib import Path

    out: LabelMap = {}
    for entry in entries:
        if "=" not in entry and read_file:
            path = Path(entry)
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except OSError as e:
                raise ConfigError(f"label_map: cannot read {entry}: {e.strerror}") from None
            for n, line in enumerate(lines, 1):
                line = line.split("#", 1)[0].strip()
                if not line:
                    continue
                if "=" not in line:
                    raise ConfigError(f"label_map: {path.name}:{n}: expected old=new, got {line!r}")
                out.update(parse_label_map([line], read_file=False))
            continue
        old, _, new = entry.partition("=")
        if not old.strip():
            raise ConfigError(f"label_map: {entry!r}: the name before '=' is empty")
        out[old.strip()] = tuple(x.strip() for x in new.split(",") if x.strip())
    return out


def unused_label_map(label_map: LabelMap, names: Iterable[str]) -> str | None:
    """One warning line naming the `--label-map` entries no source label has (a typo such
    as `truk=bicycle` would otherwise do nothing, silently), or None."""
    have = set(names)
    unused = sorted(k for k in label_map if k not in have)
    if not unused:
        return None
    shown = ", ".join(repr(k) for k in unused[:10]) + (" …" if len(unused) > 10 else "")
    near = sorted(have, key=str.casefold)[:10]
    return (f"--label-map: {len(unused)} entr{'y' if len(unused) == 1 else 'ies'} "
            f"name{'s' if len(unused) == 1 else ''} no label of the source, unused: {shown} "
            f"(the source's labels: {', '.join(near) or 'none'}"
            f"{' …' if len(have) > 10 else ''})")


@dataclass(frozen=True, slots=True)
class AnnotationLabels:
    """How every category name of a dataset becomes project labels."""

    project: Project
    by_name: dict[str, tuple[Label, ...]]
    skipped: frozenset[str] = frozenset()      # unknown, dropped by --skip-unknown-labels
    notes: tuple[str, ...] = ()                # case-only matches, labels added for chains

    def resolve(self, names: tuple[str, ...]) -> tuple[Label, ...] | None:
        """The labels for one object, or None when all its names were skipped."""
        out: list[Label] = []
        for n in names:
            for lab in self.by_name.get(n, ()):
                if lab not in out:
                    out.append(lab)
        return tuple(out) or None


def _find(name: str, labels: tuple[Label, ...]) -> tuple[Label | None, str | None]:
    exact = [lab for lab in labels if lab.name == name]
    if len(exact) == 1:
        return exact[0], None
    folded = [lab for lab in labels if lab.name.casefold() == name.casefold()]
    if len(folded) == 1:
        return folded[0], f"{name!r} matched the project label {folded[0].name!r} (case differs)"
    return None, None


def _chain_head(project: Project, labels: list[Label]) -> tuple[Label | None, str | None]:
    """A class label of a chain's second task needs a first-task label beside it (§6):
    add the first task's only label, or say that the map must name it."""
    tasks = [t for t in project.tasks if t.trainable]
    if len(tasks) < 2:
        return None, None
    first_ids = {lab.id for lab in tasks[0].labels}
    if any(lab.id in first_ids for lab in labels):
        return None, None
    heads = [lab for lab in tasks[0].labels if not lab.is_empty]
    if len(heads) == 1:
        return heads[0], None
    names = ", ".join(lab.name for lab in heads)
    return None, f"names a {tasks[1].task_type} label but no {tasks[0].task_type} label " \
                 f"(one of: {names}); map it as NAME={heads[0].name if heads else '?'},LABEL"


def plan_annotation_labels(project: Project, names: Iterable[str], label_map: LabelMap,
                           skip_unknown: bool = False) -> AnnotationLabels:
    """Map every category name before anything is sent; list all problems at once."""
    candidates = tuple(lab for t in project.tasks if t.trainable for lab in t.labels)
    by_name: dict[str, tuple[Label, ...]] = {}
    unknown: list[str] = []
    problems: list[str] = []
    notes: list[str] = []
    skipped: set[str] = set()
    for name in sorted(set(names)):
        targets = label_map.get(name, (name,))
        if not targets:                       # mapped to nothing: dropped on purpose
            skipped.add(name)
            continue
        found: list[Label] = []
        for t in targets:
            lab, note = _find(t, candidates)
            if lab is None:
                unknown.append(name if t == name else f"{name} (mapped to {t})")
            else:
                found.append(lab)
                if note:
                    notes.append(note)
        if len(found) != len(targets):
            continue
        head, problem = _chain_head(project, found)
        if problem:
            problems.append(f"{name!r} {problem}")
            continue
        if head is not None:
            found.insert(0, head)
            notes.append(f"{name!r} → {head.name} + {', '.join(lab.name for lab in found[1:])}")
        by_name[name] = tuple(found)
    if unknown and skip_unknown:
        skipped.update(u.split(" (mapped", 1)[0] for u in unknown)
        notes.append(f"skipping objects labelled {', '.join(sorted(skipped))} "
                     "(--skip-unknown-labels)")
        unknown = []
    if unknown or problems:
        have = ", ".join(lab.name for lab in candidates if not lab.is_empty)
        parts = []
        if unknown:
            parts.append(f"{len(unknown)} category name(s) not in project {project.name!r}: "
                         f"{', '.join(unknown)} (the project has: {have}); map them with "
                         "--label-map OLD=NEW, or pass --skip-unknown-labels")
        parts.extend(problems)
        raise LabelSetupError("; ".join(parts))
    return AnnotationLabels(project, by_name, frozenset(skipped), tuple(notes))
