"""The projects a fresh local Geti 3 starts with: one of each task shape an uploader
meets (GETI3_API.md §4): multi-class and multi-label classification, detection, instance
segmentation. Ids are UUIDs derived from the seed, so a restart finds the same projects."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass

from .store import Label, Store


@dataclass(frozen=True)
class ProjectSpec:
    key: str
    name: str
    task_type: str
    exclusive: bool
    labels: tuple[tuple[str, str], ...]  # (name, color)


DEFAULT_PROJECTS = (
    ProjectSpec("multiclass", "Pets classification", "classification", True,
                (("cat", "#F2A93B"), ("dog", "#3B8FF2"), ("horse", "#8E3BF2"))),
    ProjectSpec("multilabel", "Scene attributes", "classification", False,
                (("sunny", "#F2D43B"), ("cloudy", "#9AA5B1"), ("night", "#1F2A44"))),
    ProjectSpec("detection", "Vehicle detection", "detection", True,
                (("car", "#E5484D"), ("truck", "#30A46C"), ("bicycle", "#0091FF"))),
    ProjectSpec("segmentation", "Cell segmentation", "instance_segmentation", True,
                (("cell", "#D6409F"), ("nucleus", "#12A594"))),
)


def seeded_uuid(seed: int, *parts: str) -> str:
    digest = hashlib.sha256(":".join(("geti-bulk", "geti3", str(seed), *parts)).encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def seed_projects(store: Store, seed: int) -> None:
    """Create each default project unless it already exists (idempotent across restarts)."""
    for spec in DEFAULT_PROJECTS:
        project_id = seeded_uuid(seed, spec.key)
        if store.project_exists(project_id):
            continue
        labels = [Label(seeded_uuid(seed, spec.key, name), name, color, None)
                  for name, color in spec.labels]
        store.add_project(project_id, spec.name, spec.task_type, spec.exclusive, labels)
