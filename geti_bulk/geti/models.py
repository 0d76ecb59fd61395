"""Typed views of the JSON Geti returns (only the fields geti-bulk relies on)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

GLOBAL_TASKS = frozenset({"classification"})
ANOMALY_TASKS = frozenset({"anomaly", "anomaly_classification", "anomaly_detection",
                           "anomaly_segmentation"})
NON_TRAINABLE = frozenset({"dataset", "crop"})


@dataclass(frozen=True, slots=True)
class Label:
    id: str
    name: str
    group: str
    is_empty: bool = False
    is_anomalous: bool = False
    parent_id: str | None = None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Label:
        return cls(id=str(d["id"]), name=str(d["name"]), group=str(d.get("group", "")),
                   is_empty=bool(d.get("is_empty", False)),
                   is_anomalous=bool(d.get("is_anomalous", False)),
                   parent_id=d.get("parent_id"))


@dataclass(frozen=True, slots=True)
class Task:
    id: str
    title: str
    task_type: str
    labels: tuple[Label, ...]

    @property
    def trainable(self) -> bool:
        return self.task_type not in NON_TRAINABLE


@dataclass(frozen=True, slots=True)
class Dataset:
    id: str
    name: str
    use_for_training: bool


@dataclass(frozen=True, slots=True)
class Project:
    id: str
    name: str
    tasks: tuple[Task, ...]
    datasets: tuple[Dataset, ...]

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Project:
        tasks = tuple(
            Task(id=str(t["id"]), title=str(t.get("title", "")),
                 task_type=str(t.get("task_type", "")).lower(),
                 labels=tuple(Label.from_json(x) for x in t.get("labels", [])))
            for t in d.get("pipeline", {}).get("tasks", [])
        )
        datasets = tuple(Dataset(id=str(x["id"]), name=str(x.get("name", "")),
                                 use_for_training=bool(x.get("use_for_training", False)))
                         for x in d.get("datasets", []))
        return cls(id=str(d["id"]), name=str(d["name"]), tasks=tasks, datasets=datasets)

    @property
    def first_trainable(self) -> Task | None:
        return next((t for t in self.tasks if t.trainable), None)

    @property
    def task_type(self) -> str:
        t = self.first_trainable
        return t.task_type if t else "dataset"

    @property
    def takes_labels_at_upload(self) -> bool:
        """Real Geti answers 500 to labels unless the first task is global or anomaly (§3.4)."""
        return self.task_type in GLOBAL_TASKS or self.task_type in ANOMALY_TASKS

    @property
    def labels(self) -> tuple[Label, ...]:
        return tuple(lab for t in self.tasks for lab in t.labels)


@dataclass(frozen=True, slots=True)
class MediaItem:
    id: str
    name: str
    type: str
    extension: str
    size: int | None
    width: int = 0      # as Geti decoded the media: annotations use these pixels
    height: int = 0

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> MediaItem:
        info = d.get("media_information") or {}
        size = info.get("size")
        return cls(id=str(d["id"]), name=str(d.get("name", "")), type=str(d.get("type", "")),
                   extension=str(info.get("extension", "")).lower(),
                   size=int(size) if isinstance(size, int | float) else None,
                   width=_int(info.get("width")), height=_int(info.get("height")))


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0
