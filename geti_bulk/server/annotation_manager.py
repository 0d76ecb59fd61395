"""From a validated REST scene (or an upload's labels) to a stored scene version
(GETI_ANNOTATIONS.md §2.2, §3, §5; GETI_API.md §3.4).

Each annotation keeps the id it was posted with (a fresh ObjectId if none); labels get
their ancestors appended (probability 1.0, no source) and the posting user as source, or
the source of the same label on the same annotation id in the previous version. A polygon
of fewer than 3 points, an id MongoDB cannot store or a malformed ``modified`` is Geti's
unhandled 500, after validation and before anything is stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from .annotation_state import scene_states
from .annotation_views import Annotation, Label, Scene, geti_id, shape_from_rest
from .annotation_views import stored_annotation_id as check_id
from .config import ServerState
from .replies import PlainError
from .seed import Label as ProjectLabel
from .seed import Project
from .store import MediaRecord

_FULL_BOX = {"type": "RECTANGLE", "x1": 0.0, "y1": 0.0, "x2": 1.0, "y2": 1.0}


def _now() -> tuple[str, int]:
    """UTC now at millisecond precision: ISO text like Geti's, and epoch milliseconds."""
    moment = datetime.now(UTC)
    moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    return moment.isoformat(timespec="microseconds"), int(moment.timestamp() * 1000)


def new_scene_id(state: ServerState) -> str:
    while True:
        scene_id = state.scene_ids.object_id(datetime.now(UTC))
        if not state.store.scenes.exists(scene_id):
            return scene_id


def build_scene(state: ServerState, project: Project, media: MediaRecord,
                frame_index: int | None, body: dict[str, Any]) -> Scene:
    """The new version for a scene that passed ``check_scene`` and ``check_annotations``."""
    created, created_ms = _now()
    previous = state.store.scenes.latest(media.dataset_id, media.id, frame_index)
    before = {check_id(a.id): a for a in previous.annotations} if previous else {}
    by_id = {label.id: label for label in project.labels}
    annotations = tuple(_annotation(state, item, media, by_id, before, created)
                        for item in body["annotations"])
    revisit = tuple(dict.fromkeys(geti_id(i) for i in body.get("labels_to_revisit_full_scene",
                                                               [])))
    return Scene(id=new_scene_id(state), project_id=project.id, dataset_id=media.dataset_id,
                 media_id=media.id, frame_index=frame_index, width=media.width,
                 height=media.height, created=created, created_ms=created_ms,
                 user_id=state.world.user_id, annotations=annotations,
                 states=scene_states(annotations, project), revisit_full_scene=revisit)


def _annotation(state: ServerState, item: dict[str, Any], media: MediaRecord,
                by_id: dict[str, ProjectLabel], before: dict[str, Annotation],
                created: str) -> Annotation:
    raw_id = item.get("id")
    annotation_id = state.annotation_ids.object_id() if raw_id is None else str(raw_id)
    check_id(annotation_id)
    shape = shape_from_rest(item["shape"], media.width, media.height)
    if shape["type"] == "POLYGON" and len(shape["points"]) < 3:
        raise PlainError()  # Shapely cannot compute the area at save time
    previous = before.get(annotation_id)
    labels = _labels(item["labels"], by_id, state.world.user_id, previous)
    revisit = tuple(dict.fromkeys(geti_id(i) for i in item.get("labels_to_revisit", [])))
    return Annotation(id=annotation_id, modified=_modified(item.get("modified"), created),
                      labels=labels, shape=shape, labels_to_revisit=revisit)


def _modified(value: Any, default: str) -> str:
    """``datetime.fromisoformat`` of a given ``modified``; anything unparsable is a 500."""
    if not value:
        return default
    try:
        return datetime.fromisoformat(value).isoformat()
    except (TypeError, ValueError):
        raise PlainError() from None


def _labels(posted: Sequence[dict[str, Any]], by_id: dict[str, ProjectLabel], user_id: str,
            previous: Annotation | None) -> tuple[Label, ...]:
    given: dict[str, Label] = {}
    for raw in posted:
        label = _posted_label(raw, user_id)
        given[label.id] = _resolve_source(label, previous, user_id)
    ordered: list[str] = []
    for raw in posted:
        current: ProjectLabel | None = by_id[geti_id(raw["id"])]
        while current is not None:  # the label, then its parent, grandparent, ...
            ordered.append(current.id)
            current = by_id.get(current.parent_id or "")
    return tuple(given.get(i) or Label(i) for i in dict.fromkeys(ordered))


def _posted_label(raw: dict[str, Any], user_id: str) -> Label:
    model_id = model_storage_id = None
    if "source" in raw:
        try:
            model_id = geti_id(raw["source"].get("model_id")) or None
            model_storage_id = geti_id(raw["source"].get("model_storage_id")) or None
        except AttributeError:
            raise PlainError() from None
    return Label(geti_id(raw["id"]), raw.get("probability", 1.0), user_id, model_id,
                 model_storage_id)


def _resolve_source(label: Label, previous: Annotation | None, user_id: str) -> Label:
    """Geti's ResolveLabelSourceUseCase: a label already on this annotation keeps its source."""
    match = next((p for p in previous.labels if p.id == label.id), None) if previous else None
    if match is None:
        return label
    return Label(label.id, label.probability, match.user_id or user_id, match.model_id,
                 match.model_storage_id)


def upload_scenes(state: ServerState, project: Project, media: MediaRecord,
                  label_ids: Sequence[str]) -> list[Scene]:
    """An upload's labels as annotations: one full-image box on the image, or on every
    ``frame_stride``-th frame of a video (GETI_API.md §3.4, §3.5)."""
    created, created_ms = _now()
    by_id = {label.id: label for label in project.labels}
    labels = _labels([{"id": i} for i in label_ids], by_id, state.world.user_id, None)
    states = scene_states([Annotation("", created, labels, dict(_FULL_BOX))], project)
    if media.type == "image":
        frames: list[int | None] = [None]
    else:
        frames = list(range(0, media.frame_count or 0, max(media.frame_stride or 1, 1)))
    return [Scene(id=new_scene_id(state), project_id=project.id, dataset_id=media.dataset_id,
                  media_id=media.id, frame_index=frame, width=media.width, height=media.height,
                  created=created, created_ms=created_ms, user_id=state.world.user_id,
                  annotations=(Annotation(state.annotation_ids.object_id(), created, labels,
                                          dict(_FULL_BOX)),),
                  states=states) for frame in frames]


def save_scenes(state: ServerState, project: Project, scenes: Sequence[Scene]) -> None:
    """Store the versions; each one counts for the auto-training of its tasks (§8)."""
    state.store.scenes.add_many(scenes)
    state.configurations.record_annotations(project, len(scenes))

