"""The projects a server seeds when no ``--seed-file`` is given (see ``seed.py`` for the
format). One of each task type the annotation rules tell apart (GETI_ANNOTATIONS.md §4.3,
§6): single- and multi-label classification, anomaly, detection, rotated detection,
segmentation, instance segmentation, and the two task chains."""

from __future__ import annotations

from typing import Any

DEFAULT_PROJECTS: list[dict[str, Any]] = [
    {
        "name": "Pets classification",
        "task_type": "classification",
        "labels": [{"name": n, "group": "Pets"} for n in ("cat", "dog", "horse")],
        "datasets": [
            {"name": "Dataset", "use_for_training": True},
            {"name": "Holdout", "use_for_training": False},
        ],
    },
    {
        "name": "Attributes multi-label",
        "task_type": "classification",
        "multi_label": True,
        "labels": ["indoor", "outdoor", "person"],
    },
    {"name": "Anomaly inspection", "task_type": "anomaly"},
    {"name": "Vehicle detection", "task_type": "detection", "labels": ["car", "truck"]},
    {
        "name": "Detection then classification",
        "tasks": [
            {"task_type": "detection", "labels": [{"name": "object", "group": "Objects"}]},
            {
                "task_type": "classification",
                "labels": [
                    {"name": n, "group": "Objects___Color", "parent": "object"}
                    for n in ("red", "blue")
                ],
            },
        ],
    },
    {"name": "Parts instance segmentation", "task_type": "instance_segmentation",
     "labels": ["bolt", "nut"]},
    {"name": "Road segmentation", "task_type": "segmentation", "labels": ["road", "sky"]},
    {"name": "Ship rotated detection", "task_type": "rotated_detection", "labels": ["ship"]},
    {
        "name": "Detection then segmentation",
        "tasks": [
            {"task_type": "detection", "labels": [{"name": "region", "group": "Regions"}]},
            {"task_type": "segmentation", "labels": [{"name": "defect", "group": "Defects"}]},
        ],
    },
]
