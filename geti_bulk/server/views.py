"""JSON views of projects, datasets and media, shaped like Geti 2.11's REST views."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .seed import Dataset, Label, Project, Task, World
from .store import MediaRecord


def _label(label: Label) -> dict[str, Any]:
    return {
        "id": label.id,
        "name": label.name,
        "is_anomalous": label.is_anomalous,
        "color": label.color,
        "hotkey": label.hotkey,
        "is_empty": label.is_empty,
        "group": label.group,
        "parent_id": label.parent_id,
    }


def _task(task: Task) -> dict[str, Any]:
    data: dict[str, Any] = {"id": task.id, "title": task.title, "task_type": task.task_type}
    if task.label_schema_id is not None:
        data["labels"] = [_label(label) for label in task.labels]
        data["label_schema_id"] = task.label_schema_id
    return data


def dataset_to_rest(dataset: Dataset) -> dict[str, Any]:
    return {
        "id": dataset.id,
        "name": dataset.name,
        "use_for_training": dataset.use_for_training,
        "creation_time": dataset.creation_time,
    }


def project_to_rest(
    world: World, project: Project, *, with_datasets: bool, size: int | None = None
) -> dict[str, Any]:
    connections = [
        {"from": a.id, "to": b.id} for a, b in zip(project.tasks, project.tasks[1:], strict=False)
    ]
    data: dict[str, Any] = {
        "id": project.id,
        "name": project.name,
        "creation_time": project.creation_time,
        "creator_id": project.creator_id,
        "pipeline": {"tasks": [_task(t) for t in project.tasks], "connections": connections},
        "thumbnail": f"/api/v1/organizations/{world.organization_id}/workspaces/"
        f"{world.workspace_id}/projects/{project.id}/thumbnail",
        "performance": {
            "score": None,
            "task_performances": [
                {"task_id": t.id, "score": None} for t in project.trainable_tasks
            ],
        },
        "storage_info": {} if size is None else {"size": size},
    }
    if with_datasets:
        data["datasets"] = [dataset_to_rest(d) for d in project.datasets]
    return data


def media_base_url(world: World, record: MediaRecord) -> str:
    kind = "images" if record.type == "image" else "videos"
    return (
        f"/api/v1/organizations/{world.organization_id}/workspaces/{world.workspace_id}"
        f"/projects/{record.project_id}/datasets/{record.dataset_id}/media/{kind}/{record.id}"
    )


@dataclass(frozen=True, slots=True)
class MediaAnnotation:
    """What the latest annotation scene(s) say about a media item (GETI_API.md §3.7):
    an image's latest scene id and task states; for a video, each annotated frame's."""

    scene_id: str | None = None
    states: tuple[tuple[str, str], ...] = ()
    frames: tuple[tuple[tuple[str, str], ...], ...] = ()


def media_to_rest(
    world: World, project: Project, record: MediaRecord,
    annotation: MediaAnnotation = MediaAnnotation(), *, in_query: bool = False,
) -> dict[str, Any]:
    base = media_base_url(world, record)
    info: dict[str, Any] = {
        "height": record.height,
        "width": record.width,
        "display_url": f"{base}/display/full" if record.type == "image" else f"{base}/display/stream",
        "size": record.size,
        "extension": record.extension,
    }
    states = dict(annotation.states)
    if record.type == "video":  # "videos do not have a sensible annotation state" (§5)
        info.update(frame_count=record.frame_count, frame_stride=record.frame_stride,
                    frame_rate=record.frame_rate, duration=record.duration)
    data: dict[str, Any] = {
        "id": record.id,
        "name": record.name,
        "type": record.type,
        "media_information": info,
        "annotation_state_per_task": [
            {"task_id": t.id, "state": states.get(t.id, "none") if record.type == "image"
             else None}
            for t in project.trainable_tasks
        ],
        "upload_time": record.upload_time,
        "uploader_id": record.uploader_id,
        "thumbnail": f"{base}/display/thumb",
        "preprocessing": {"status": "FINISHED"},
    }
    if record.type == "video":
        data["annotation_statistics"] = _frame_statistics(record, annotation.frames)
    elif in_query:
        scene_id = annotation.scene_id
        data["annotation_scene_id"] = scene_id
        data["roi_id"] = _derived_id(record.id, 2) if scene_id else None
        data["last_annotator_id"] = record.uploader_id if scene_id else None
    return data


def _frame_statistics(record: MediaRecord,
                      frames: tuple[tuple[tuple[str, str], ...], ...]) -> dict[str, int]:
    """Frames whose latest scene is annotated for every task, for some, and the rest."""
    annotated = sum(1 for f in frames if f and all(s == "annotated" for _, s in f))
    partial = sum(1 for f in frames if any(s != "none" for _, s in f)) - annotated
    total = record.frame_count or 0
    return {"annotated": annotated, "partially_annotated": partial,
            "unannotated": max(total - annotated - partial, 0)}


def _derived_id(media_id: str, salt: int) -> str:
    """A stable ObjectId-looking id derived from a media id (annotation scene, ROI)."""
    return f"{(int(media_id, 16) + salt) % (1 << 96):024x}"
