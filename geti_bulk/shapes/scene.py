"""A file's resolved objects → the exact annotation scene Geti 2.x accepts.

GETI_ANNOTATIONS.md §2 (body), §4.3 (per task), §5 (an image with no objects gets the empty
label), §6 (chains), §12 (the importer's rules), §13 (no annotation ids: the server makes
them). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from geti_bulk.geti.models import Label, Project
from geti_bulk.shapes.convert import GetiShape, Scale, Tally, Target, convert, px
from geti_bulk.shapes.model import AnnotationError, ResolvedObject, Scene
from geti_bulk.shapes.rules import TaskView, check_annotation
from geti_bulk.sources.model import Box, Ellipse, Polygon, RotatedBox, Shape

_KIND = {Box: "box", Polygon: "polygon", RotatedBox: "rotated box", Ellipse: "ellipse"}


@dataclass(frozen=True, slots=True)
class _Ctx:
    view: TaskView
    scale: Scale
    width: int
    height: int
    tally: Tally


@dataclass(frozen=True, slots=True)
class _Obj:
    who: str                       # "box 3 (dog)": 1-based position in the file, label names
    labels: tuple[Label, ...]
    shape: Shape | None


def build_scene(objects: Sequence[ResolvedObject], *, empty: bool, project: Project,
                width: int, height: int, source_size: tuple[int, int] | None) -> Scene:
    """The scene for one image of `width`×`height` (the size Geti stored, §2.3).

    `source_size` is the (w, h) the annotation file records, or None (then source pixels
    are Geti's pixels). No objects and not `empty`: a scene with no annotations (nothing
    to post). Raises `AnnotationError` when the file as a whole cannot be annotated.
    """
    view = TaskView.of(project)
    if width < 1 or height < 1:
        raise AnnotationError(f"Geti reports an image size of {width}x{height}")
    scale, mismatch, note = _scale(width, height, source_size)
    ctx = _Ctx(view, scale, width, height, Tally())
    if note:
        ctx.tally.notes.append(note)
    objs = [_resolve(i, o, view) for i, o in enumerate(objects)]
    annotations = _annotations(objs, empty, ctx)
    t = ctx.tally
    return Scene(annotations=tuple(annotations), notes=tuple(t.notes), clipped=t.clipped,
                 dropped=t.dropped, converted=t.converted, mismatch=mismatch)


def _scale(width: int, height: int,
           source_size: tuple[int, int] | None) -> tuple[Scale, str | None, str | None]:
    """Scale, EXIF mismatch, note (§12.2). A transposed size is reported as a mismatch and
    still scaled per axis (W/w, H/h): the coordinates are not rotated."""
    if source_size is None or tuple(source_size) == (width, height):
        return Scale(), None, None
    sw, sh = source_size
    if sw < 1 or sh < 1:
        raise AnnotationError(f"the annotation file records an image size of {sw}x{sh}")
    scale = Scale(width / sw, height / sh)
    said = f"annotation file says {sw}x{sh}, Geti stored {width}x{height}"
    if (sw, sh) == (height, width):
        return scale, f"{said} (EXIF rotation?)", None
    return scale, None, f"{said}: shapes scaled by {scale.sx:.4g} x {scale.sy:.4g}"


def _resolve(i: int, o: ResolvedObject, view: TaskView) -> _Obj:
    kind = "object" if o.shape is None else _KIND[type(o.shape)]
    who = f"{kind} {i + 1} ({', '.join(lab.name for lab in o.labels)})"
    if not o.labels:
        raise AnnotationError(f"{who}: an object needs at least one label")
    return _Obj(who, view.known(o.labels, who), o.shape)


def _annotations(objs: list[_Obj], empty: bool, ctx: _Ctx) -> list[dict[str, Any]]:
    """Empty-label objects vs real ones (§4.3, §12.5): objects win over "empty"."""
    head_empty = ctx.view.empty_label()
    empties = [o for o in objs if any(lab.is_empty and ctx.view.task_of[lab.id] == 0
                                      for lab in o.labels)]
    for o in empties:
        check_annotation(o.labels, ctx.view, o.who)
    real = [o for o in objs if o not in empties]
    if not real:
        if not (empty or empties):
            return []
        return [_empty_annotation(head_empty, empties, ctx)]
    if empty:
        ctx.tally.notes.append(f"the file is marked as having no objects but lists {len(real)}:"
                               " the objects are sent, not the empty label")
    for o in empties:
        ctx.tally.drop(f"{o.who} dropped: the empty label cannot share the image with "
                       f"{len(real)} other object(s)")
    out = _global(real, ctx) if ctx.view.is_global(0) else _local(real, ctx)
    if not out:
        raise AnnotationError("every object was dropped: " + "; ".join(ctx.tally.notes))
    return out


def _empty_annotation(label: Label | None, empties: list[_Obj], ctx: _Ctx) -> dict[str, Any]:
    """The first task's empty label as a lone full-image RECTANGLE (§2.4, §12.5)."""
    if label is None:
        p = ctx.view.project
        raise AnnotationError(f"the image has no objects, but project {p.name!r} "
                              f"({p.task_type}) has no empty label to say so")
    for o in empties:
        if o.shape is not None:
            ctx.tally.convert(f"{o.who} sent as a full-image box (the empty label needs one)")
    return _annotation([label], _full_box(ctx))


def _full_box(ctx: _Ctx) -> GetiShape:
    """Exactly `generate_full_box_rest`: ints, no extra keys (§4.3)."""
    return {"type": "RECTANGLE", "x": 0, "y": 0, "width": ctx.width, "height": ctx.height}


def _annotation(labels: Sequence[Label], shape: GetiShape) -> dict[str, Any]:
    """Labels as `{"id": …}` only, no annotation id (§2.2, §13)."""
    return {"labels": [{"id": lab.id} for lab in labels], "shape": shape}


def _global(real: list[_Obj], ctx: _Ctx) -> list[dict[str, Any]]:
    """Classification / anomaly first: ONE full-image box holding every label (§4.3)."""
    labels: dict[str, Label] = {}
    for o in real:
        if o.shape is not None and not _is_full_image(o.shape, ctx):
            task = ctx.view.tasks[0].task_type
            raise AnnotationError(f"{o.who}: a {task} project takes whole-image labels only, "
                                  f"not a {_KIND[type(o.shape)]}")
        for lab in o.labels:
            labels.setdefault(lab.id, lab)
    check_annotation(list(labels.values()), ctx.view, "the image")
    return [_annotation(list(labels.values()), _full_box(ctx))]


def _is_full_image(shape: Shape, ctx: _Ctx) -> bool:
    if not isinstance(shape, Box):
        return False
    s = ctx.scale.shape(shape, "", ctx.tally)
    assert isinstance(s, Box)
    corners = (px(s.x), px(s.y), px(s.x + s.width), px(s.y + s.height))
    return corners == (0, 0, ctx.width, ctx.height)


def _local(real: list[_Obj], ctx: _Ctx) -> list[dict[str, Any]]:
    """Local first task: one annotation per object carrying the first task's label(s)
    plus any later global / empty label (det→cls); a later local task's labels
    (det→seg) go on an annotation of their own (§6)."""
    out: list[dict[str, Any]] = []
    for o in real:
        view = ctx.view
        head = sorted((lab for lab in o.labels
                       if view.task_of[lab.id] == 0 or view.is_global(view.task_of[lab.id])
                       or lab.is_empty), key=lambda lab: view.task_of[lab.id])
        if head:
            check_annotation(head, view, o.who)
            out.extend(_emit(o, head, view.target(0), ctx))
        for t in range(1, len(view.tasks)):
            own = [lab for lab in o.labels if lab not in head and view.task_of[lab.id] == t]
            if own:
                check_annotation(own, view, o.who)
                out.extend(_emit(o, own, view.target(t), ctx))
    return out


def _emit(o: _Obj, labels: list[Label], target: Target, ctx: _Ctx) -> list[dict[str, Any]]:
    """Zero or one annotation: the object's shape for this task, or nothing if dropped."""
    w, h, tally = ctx.width, ctx.height, ctx.tally
    if o.shape is None:
        tally.convert(f"{o.who} has no shape: sent as a full-image box")
        shape = convert(Box(0, 0, w, h), target, w, h, o.who, tally)
    else:
        shape = convert(ctx.scale.shape(o.shape, o.who, tally), target, w, h, o.who, tally)
    return [] if shape is None else [_annotation(labels, shape)]
