"""Seeded projects, ObjectIds and personal access tokens for the local server.

Everything here is deterministic from one integer seed, so a server restarted on the
same data dir with the same seed sees the same organization, projects and datasets.

Seed file format (``--seed-file``), JSON::

    {"projects": [
      {"name": "Pets", "task_type": "classification",
       "labels": ["cat", "dog"],                  # strings or objects, see below
       "multi_label": false,                      # classification only: one group per label
       "datasets": [{"name": "Dataset", "use_for_training": true}]},
      {"name": "Chain",
       "tasks": [                                 # a task chain; a crop node is added
         {"task_type": "detection", "labels": ["box"]},           # between trainable tasks
         {"task_type": "classification",
          "labels": [{"name": "red", "group": "Color", "parent": "box"}]}]}
    ]}

A label object has ``name`` and optionally ``group``, ``is_empty``, ``is_anomalous``,
``parent`` (name of a label of an earlier task), ``color``, ``hotkey``. Empty labels are
added like Geti does: ``No object`` for (rotated) detection, ``Empty`` for (instance)
segmentation, ``No class`` for multi-label classification; anomaly projects always get ``Normal``/``Anomalous``.
``datasets`` defaults to one training dataset called ``Dataset``.
"""

from __future__ import annotations

import json
import random
import secrets
import string
import uuid
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from .seed_projects import DEFAULT_PROJECTS

GLOBAL_TASK_TYPES = frozenset(
    {"classification", "anomaly", "anomaly_classification", "anomaly_detection",
     "anomaly_segmentation"}
)
# Geti's DOMAIN_TO_EMPTY_LABEL_NAME (GETI_ANNOTATIONS.md §4.3)
_EMPTY_LABEL = {"detection": "No object", "rotated_detection": "No object",
                "segmentation": "Empty", "instance_segmentation": "Empty"}
_TITLES = {
    "dataset": "Dataset",
    "crop": "Crop",
    "classification": "Classification",
    "detection": "Detection",
    "segmentation": "Segmentation",
    "instance_segmentation": "Instance segmentation",
    "rotated_detection": "Rotated detection",
    "keypoint_detection": "Keypoint detection",
    "anomaly": "Anomaly",
}
_BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
_EPOCH = datetime(2025, 6, 2, 9, 0, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Label:
    id: str
    name: str
    group: str
    color: str
    hotkey: str = ""
    is_empty: bool = False
    is_anomalous: bool = False
    parent_id: str | None = None


@dataclass(frozen=True, slots=True)
class Task:
    id: str
    title: str
    task_type: str
    labels: tuple[Label, ...] = ()
    label_schema_id: str | None = None

    @property
    def trainable(self) -> bool:
        return self.task_type not in ("dataset", "crop")


@dataclass(frozen=True, slots=True)
class Dataset:
    id: str
    name: str
    use_for_training: bool
    creation_time: str


@dataclass(frozen=True, slots=True)
class Project:
    id: str
    name: str
    creation_time: str
    creator_id: str
    tasks: tuple[Task, ...]
    datasets: tuple[Dataset, ...]

    @property
    def trainable_tasks(self) -> tuple[Task, ...]:
        return tuple(t for t in self.tasks if t.trainable)

    @property
    def labels(self) -> tuple[Label, ...]:
        return tuple(label for t in self.trainable_tasks for label in t.labels)

    @property
    def task_type(self) -> str:
        """The first trainable task's type (what decides whether upload labels work)."""
        return self.trainable_tasks[0].task_type

    def dataset(self, dataset_id: str) -> Dataset | None:
        return next((d for d in self.datasets if d.id == dataset_id), None)


@dataclass(frozen=True, slots=True)
class World:
    """Everything seeded: the organization, its one workspace, projects, the user."""

    organization_id: str
    workspace_id: str
    workspace_name: str
    user_id: str
    projects: tuple[Project, ...]

    def project(self, project_id: str) -> Project | None:
        return next((p for p in self.projects if p.id == project_id), None)


class IdFactory:
    """ObjectIds and UUIDs from a seeded RNG (deterministic for seeded entities)."""

    def __init__(self, seed: int, stream: str = "seed") -> None:
        self._rng = random.Random(f"geti-bulk:{stream}:{seed}")
        self._counter = self._rng.getrandbits(24)

    def object_id(self, at: datetime | None = None) -> str:
        stamp = int((at or _EPOCH).timestamp()) & 0xFFFFFFFF
        self._counter = (self._counter + 1) & 0xFFFFFF
        return f"{stamp:08x}{self._rng.getrandbits(40):010x}{self._counter:06x}"

    def uuid4(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def color(self) -> str:
        return f"#{self._rng.getrandbits(24):06x}ff"


def generate_pat() -> str:
    """A personal access token in Geti's format: geti_pat_<43 alnum>_<base62 crc32>."""
    alphabet = string.ascii_letters + string.digits
    random_part = "".join(secrets.choice(alphabet) for _ in range(43))
    return f"geti_pat_{random_part}_{_pat_checksum(random_part)}"


def _pat_checksum(random_part: str) -> str:
    value = zlib.crc32(random_part.encode())
    digits = ""
    while value:
        value, rem = divmod(value, 62)
        digits = _BASE62[rem] + digits
    return digits.rjust(6, "0")


def load_seed_file(path: Path) -> list[dict[str, Any]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    projects = data.get("projects") if isinstance(data, dict) else None
    if not isinstance(projects, list) or not projects:
        raise ValueError(f"{path}: expected {{\"projects\": [...]}} with at least one project")
    return projects


def build_world(seed: int, specs: list[dict[str, Any]] | None = None) -> World:
    ids = IdFactory(seed)
    org, ws, user = ids.uuid4(), ids.uuid4(), ids.uuid4()
    projects = tuple(
        _build_project(ids, spec, index, user)
        for index, spec in enumerate(specs if specs is not None else DEFAULT_PROJECTS)
    )
    names = [p.name for p in projects]
    if len(set(names)) != len(names):
        raise ValueError("project names must be unique")
    return World(org, ws, "Default", user, projects)


def _build_project(ids: IdFactory, spec: dict[str, Any], index: int, user: str) -> Project:
    name = spec.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"project #{index}: 'name' must be a non-empty string")
    created = _EPOCH + timedelta(minutes=index)
    task_specs = spec.get("tasks") or [
        {k: spec[k] for k in ("task_type", "labels", "multi_label") if k in spec}
    ]
    tasks = [Task(ids.object_id(created), "Dataset", "dataset")]
    by_name: dict[str, Label] = {}
    for t_index, t_spec in enumerate(task_specs):
        if t_index > 0 and t_spec.get("task_type") != "crop" and tasks[-1].trainable:
            tasks.append(Task(ids.object_id(created), "Crop", "crop"))
        tasks.append(_build_task(ids, t_spec, created, by_name))
    ds_specs = spec.get("datasets") or [{"name": "Dataset", "use_for_training": True}]
    datasets = tuple(
        Dataset(
            ids.object_id(created),
            str(d["name"]),
            bool(d.get("use_for_training", i == 0)),
            _iso(created),
        )
        for i, d in enumerate(ds_specs)
    )
    return Project(ids.object_id(created), name.strip(), _iso(created), user, tuple(tasks), datasets)


def _build_task(
    ids: IdFactory, spec: dict[str, Any], created: datetime, by_name: dict[str, Label]
) -> Task:
    task_type = str(spec.get("task_type", "classification")).lower()
    task_id = ids.object_id(created)
    if task_type == "crop":
        return Task(task_id, "Crop", "crop")
    title = str(spec.get("title") or _TITLES.get(task_type, task_type.title()))
    raw = list(spec.get("labels") or [])
    if task_type.startswith("anomaly"):
        task_type, title = "anomaly", "Anomaly"
        raw = raw or [
            {"name": "Normal", "group": "default - Anomaly"},
            {"name": "Anomalous", "group": "default - Anomaly", "is_anomalous": True},
        ]
    multi = bool(spec.get("multi_label"))
    labels: list[Label] = []
    for item in raw:
        entry = {"name": item} if isinstance(item, str) else dict(item)
        default_group = entry["name"] if multi else f"Default {title}"
        parent = by_name.get(str(entry.get("parent"))) if entry.get("parent") else None
        label = Label(
            id=ids.object_id(created),
            name=str(entry["name"]),
            group=str(entry.get("group", default_group)),
            color=str(entry.get("color") or ids.color()),
            hotkey=str(entry.get("hotkey", "")),
            is_empty=bool(entry.get("is_empty", False)),
            is_anomalous=bool(entry.get("is_anomalous", False)),
            parent_id=parent.id if parent else None,
        )
        labels.append(label)
    has_empty = any(label.is_empty for label in labels)
    empty_name = None
    if task_type in _EMPTY_LABEL:
        empty_name = _EMPTY_LABEL[task_type]
    elif task_type == "classification" and multi:
        empty_name = "No class"
    if empty_name and not has_empty:
        labels.append(
            Label(ids.object_id(created), empty_name, empty_name, ids.color(), is_empty=True)
        )
    for label in labels:
        by_name.setdefault(label.name, label)
    return Task(task_id, title, task_type, tuple(labels), ids.object_id(created))


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds")


def now_iso() -> str:
    """UTC now truncated to milliseconds, rendered like Geti (``...123000+00:00``)."""
    moment = datetime.now(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000).isoformat(
        timespec="microseconds"
    )
