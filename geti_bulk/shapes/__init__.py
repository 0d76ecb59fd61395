"""Pure functions from a file's annotation in source terms to the exact Geti 2.x REST
annotation scene, and back to a verdict on what the server holds.

Follows `shared/GETI_ANNOTATIONS.md` §2, §4, §5, §6, §12, §13: scale to Geti's W×H, clip
client-side, keep each task's shape rules, labels and exclusivity; no I/O, no aiohttp.

    build_scene(objects, *, empty, project, width, height, source_size) -> Scene
    scene_matches(expected, got, *, tolerance=1.0, project=None) -> str | None

Choices where the document is silent:
* Corners are rounded half-up (floor(v + 0.5)), so a box's two edges never round in
  opposite directions as Python's round-half-even can.
* A transposed source size is reported in `Scene.mismatch` and still scaled per axis;
  the coordinates are not rotated. Any other size difference is one note.
* Boxes and polygons are clipped; an ELLIPSE is kept as is (its schema allows it past the
  edges) and dropped only with < 1 px inside. A ROTATED_RECTANGLE with a corner outside is
  cut to the image and refitted (an upright one stays upright).
* Polygons are clipped with Sutherland–Hodgman (not by clamping points), and above 5000
  points simplified with Visvalingam–Whyatt to exactly 5000.
* A shapeless object in a local task becomes a full-image box (converted); a classification
  or anomaly project accepts a Box only when it is exactly the full image.
* An explicit empty-label object beside real objects is dropped (objects win); every object
  dropped by the geometry is an `AnnotationError`.
* Anomaly tasks are always global (G2; G with its default flag).
"""

from __future__ import annotations

from geti_bulk.shapes.compare import scene_matches
from geti_bulk.shapes.convert import MAX_POLYGON_POINTS
from geti_bulk.shapes.model import AnnotationError, ResolvedObject, Scene
from geti_bulk.shapes.scene import build_scene

__all__ = ["MAX_POLYGON_POINTS", "AnnotationError", "ResolvedObject", "Scene", "build_scene",
           "scene_matches"]
