"""geti_bulk.shapes: source annotations → the exact Geti 2.x scene body, and the verify check.

Each test pins one rule of shared/GETI_ANNOTATIONS.md (§2.3, §4.3, §5, §6, §12, §13).
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from geti_bulk.errors import FileError
from geti_bulk.geti.models import Label, Project, Task
from geti_bulk.shapes import (
    MAX_POLYGON_POINTS,
    AnnotationError,
    ResolvedObject,
    Scene,
    build_scene,
    geometry,
    scene_matches,
)
from geti_bulk.sources.model import Box, Ellipse, Polygon, RotatedBox, Shape

FIXTURES = Path(__file__).parent / "geti_fixtures"
W, H = 640, 480
FULL = {"type": "RECTANGLE", "x": 0, "y": 0, "width": W, "height": H}


def fixture(name: str) -> Project:
    return Project.from_json(json.loads((FIXTURES / f"project_detail_{name}.json").read_text()))


def label(n: int, name: str, group: str, **kw: Any) -> Label:
    return Label(id=f"{n:024x}", name=name, group=group, **kw)


def project(*tasks: tuple[str, tuple[Label, ...]]) -> Project:
    chain = tuple(Task(id=f"{i + 100:024x}", title=f"{kind} task", task_type=kind, labels=labs)
                  for i, (kind, labs) in enumerate(tasks))
    return Project(id="f" * 24, name="test", datasets=(),
                   tasks=(Task(id="d" * 24, title="Dataset", task_type="dataset", labels=()),
                          *chain))


DOG, CAT = label(1, "dog", "default"), label(2, "cat", "default")
NO_OBJECT = label(3, "No object", "No object", is_empty=True)
DETECTION = project(("detection", (DOG, CAT, NO_OBJECT)))
CAR, NO_CAR = label(4, "car", "default"), label(5, "No object", "No object", is_empty=True)
ROTATED = project(("rotated_detection", (CAR, NO_CAR)))
ROAD, TREE = label(6, "road", "default"), label(7, "tree", "default")
EMPTY_SEG = label(8, "Empty", "Empty", is_empty=True)
PERSON = label(9, "person", "det")
HAIR = label(10, "hair", "seg", parent_id=PERSON.id)
SEG_EMPTY = label(11, "Empty", "Empty", is_empty=True, parent_id=PERSON.id)
DET_SEG = project(("detection", (PERSON,)), ("segmentation", (HAIR, SEG_EMPTY)))
ANIMAL, VEHICLE = label(12, "animal", "top"), label(13, "vehicle", "top")
HDOG = label(14, "dog", "animals", parent_id=ANIMAL.id)
HCAT = label(15, "cat", "animals", parent_id=ANIMAL.id)
HIERARCHY = project(("classification", (ANIMAL, VEHICLE, HDOG, HCAT)))

CLS = fixture("classification")
ANOMALY = fixture("anomaly")
CHAIN = fixture("task_chain_detection_classification")


def lab(p: Project, name: str) -> Label:
    return next(x for x in p.labels if x.name == name)


def obj(shape: Shape | None, *labels: Label) -> ResolvedObject:
    return ResolvedObject(labels=labels, shape=shape)


def scene(p: Project, *objects: ResolvedObject, empty: bool = False,
          size: tuple[int, int] | None = None, w: int = W, h: int = H) -> Scene:
    return build_scene(objects, empty=empty, project=p, width=w, height=h, source_size=size)


def shapes(s: Scene) -> list[dict[str, Any]]:
    return [a["shape"] for a in s.annotations]


def ids(a: dict[str, Any]) -> list[str]:
    return [x["id"] for x in a["labels"]]


def rect(x: int, y: int, w: int, h: int) -> dict[str, Any]:
    return {"type": "RECTANGLE", "x": x, "y": y, "width": w, "height": h}


# --- 1. scaling (§12.2) ---------------------------------------------------------------

def test_source_pixels_scale_by_independent_x_and_y_factors():
    s = scene(DETECTION, obj(Box(100, 100, 200, 100), DOG), size=(1000, 500), w=500, h=500)
    assert shapes(s) == [rect(50, 100, 100, 100)]
    assert s.mismatch is None
    assert s.notes == ("annotation file says 1000x500, Geti stored 500x500: "
                       "shapes scaled by 0.5 x 1",)


def test_without_a_source_size_source_pixels_are_getis_pixels():
    s = scene(DETECTION, obj(Box(10.4, 20.6, 30, 40), DOG))
    assert shapes(s) == [rect(10, 21, 30, 40)]
    assert s.notes == () and s.mismatch is None
    assert scene(DETECTION, obj(Box(10.4, 20.6, 30, 40), DOG), size=(W, H)) == s


def test_a_transposed_source_size_is_an_exif_mismatch_and_still_scaled_per_axis():
    s = scene(DETECTION, obj(Box(48, 64, 96, 128), DOG), size=(480, 640))
    assert s.mismatch == "annotation file says 480x640, Geti stored 640x480 (EXIF rotation?)"
    assert shapes(s) == [rect(64, 48, 128, 96)]       # x * 640/480, y * 480/640
    assert s.notes == ()


def test_an_impossible_source_size_is_an_annotation_error():
    with pytest.raises(AnnotationError, match="0x480"):
        scene(DETECTION, obj(Box(1, 1, 5, 5), DOG), size=(0, 480))


# --- 2. clipping (§12.3) --------------------------------------------------------------

def test_rounding_the_corners_never_overshoots_the_edge():
    # rounding x and width separately would give 1 + 640 = 641 > 640 (§10, geti-sdk)
    assert round(0.6) + round(639.6) == 641
    s = scene(DETECTION, obj(Box(0.6, 0, 639.6, 480), DOG))
    (r,) = shapes(s)
    assert r == rect(1, 0, 639, 480) and r["x"] + r["width"] == W
    assert s.clipped == 0 and s.notes == ()


def test_a_sub_pixel_overshoot_after_rounding_is_clipped_and_noted():
    s = scene(DETECTION, obj(Box(0.4, 0, 640.2, 480), DOG))
    assert shapes(s) == [rect(0, 0, 640, 480)]
    assert s.clipped == 1 and s.notes == ("box 1 (dog) clipped to the image: x+width 641 > 640",)


def test_a_box_past_the_edges_is_clipped_with_its_reason():
    s = scene(DETECTION, obj(Box(1, 1, 5, 5), DOG), obj(Box(2, 2, 5, 5), CAT),
              obj(Box(600, 470, 45, 20), DOG), obj(Box(-5.2, -3, 20, 10), CAT))
    assert shapes(s)[2:] == [rect(600, 470, 40, 10), rect(0, 0, 15, 7)]
    assert s.clipped == 2 and s.dropped == 0
    assert s.notes == ("box 3 (dog) clipped to the image: x+width 645 > 640, y+height 490 > 480",
                       "box 4 (cat) clipped to the image: x -5 < 0, y -3 < 0")
    for r in shapes(s):
        assert r["x"] >= 0 and r["y"] >= 0 and r["width"] >= 1 and r["height"] >= 1
        assert r["x"] + r["width"] <= W and r["y"] + r["height"] <= H


def test_boxes_outside_without_area_or_thinner_than_a_pixel_are_dropped():
    s = scene(DETECTION, obj(Box(1, 1, 5, 5), DOG), obj(Box(700, 0, 10, 10), DOG),
              obj(Box(10, 10, 0, 5), DOG), obj(Box(10, 10, 0.3, 5), DOG),
              obj(Box(math.nan, 1, 2, 2), DOG))
    assert shapes(s) == [rect(1, 1, 5, 5)]
    assert s.dropped == 4 and s.clipped == 0
    assert s.notes == ("box 2 (dog) dropped: it lies outside the 640x480 image",
                       "box 3 (dog) dropped: it has no area",
                       "box 4 (dog) dropped: less than 1 px wide or high inside the image "
                       "after rounding",
                       "box 5 (dog) dropped: its coordinates are not finite")


def test_a_file_whose_every_object_is_dropped_cannot_be_annotated():
    with pytest.raises(AnnotationError, match="every object was dropped: box 1 .* outside"):
        scene(DETECTION, obj(Box(700, 0, 10, 10), DOG))


def test_polygon_points_are_clipped_to_the_image():
    s = scene(project(("segmentation", (ROAD, EMPTY_SEG))),
              obj(Polygon(((100, 100), (700, 100), (100, 300))), ROAD))
    (p,) = shapes(s)
    pts = [(q["x"], q["y"]) for q in p["points"]]
    assert p["type"] == "POLYGON"
    assert pts == [(100, 100), (640, 100), (640, 120), (100, 300)]
    assert all(type(v) is int for q in p["points"] for v in q.values())
    assert s.clipped == 1
    assert s.notes == ("polygon 1 (road) clipped to the image: 1 of 3 points outside 640x480",)


def test_degenerate_polygons_are_dropped_with_their_reason():
    seg = project(("segmentation", (ROAD, EMPTY_SEG)))
    s = scene(seg, obj(Polygon(((1, 1), (9, 1), (5, 8))), ROAD),
              obj(Polygon(((0, 0), (10, 10), (20, 20))), ROAD),
              obj(Polygon(((0, 0), (10, 10), (0, 0))), ROAD),
              obj(Polygon(((700, 0), (800, 0), (750, 50))), ROAD),
              obj(Polygon(((5, 5), (5.2, 5.1), (5.1, 5.3))), ROAD))
    assert len(s.annotations) == 1 and s.dropped == 4
    assert s.notes == ("polygon 2 (road) dropped: it has no area after rounding to pixels",
                       "polygon 3 (road) dropped: it has fewer than 3 distinct points",
                       "polygon 4 (road) dropped: it has no area inside the 640x480 image",
                       "polygon 5 (road) dropped: it has no area after rounding to pixels")


def _circle(n: int, r: float, c: float) -> tuple[tuple[float, float], ...]:
    return tuple((c + r * math.cos(2 * math.pi * k / n), c + r * math.sin(2 * math.pi * k / n))
                 for k in range(n))


def test_a_polygon_over_5000_points_is_simplified_keeping_its_shape():
    big = _circle(12000, 3900, 4000)
    s = scene(project(("segmentation", (ROAD,))), obj(Polygon(big), ROAD), w=8000, h=8000)
    pts = [(q["x"], q["y"]) for q in shapes(s)[0]["points"]]
    rounded = geometry.dedupe([(math.floor(x + 0.5), math.floor(y + 0.5)) for x, y in big])
    assert len(rounded) > MAX_POLYGON_POINTS
    assert len(pts) == MAX_POLYGON_POINTS
    assert set(pts) <= set(rounded)
    assert geometry.area(pts) == pytest.approx(math.pi * 3900 ** 2, rel=1e-3)
    assert s.converted == 1
    assert s.notes == (f"polygon 1 (road) simplified from {len(rounded)} to 5000 points "
                       "(Geti takes at most 5000)",)


def test_a_polygon_of_exactly_5000_points_is_kept_whole():
    exact = tuple((float(x), float(y)) for x, y in geometry.dedupe(
        [(round(x), round(y)) for x, y in _circle(5000, 3900, 4000)]))
    assert len(exact) == 5000
    s = scene(project(("segmentation", (ROAD,))), obj(Polygon(exact), ROAD), w=8000, h=8000)
    assert len(shapes(s)[0]["points"]) == 5000 and s.converted == 0


# --- 3. what each task takes (§4.3) -----------------------------------------------------

def test_detection_takes_rectangles_only_other_shapes_become_bounding_boxes():
    s = scene(DETECTION, obj(Polygon(((10, 10), (50, 12), (30, 40))), DOG),
              obj(Ellipse(100, 100, 20.4, 30), CAT), obj(RotatedBox(200, 200, 40, 20, 90), DOG))
    assert shapes(s) == [rect(10, 10, 40, 30), rect(100, 100, 20, 30), rect(190, 180, 20, 40)]
    assert s.converted == 3 and s.clipped == 0
    assert s.notes[0] == ("polygon 1 (dog) converted to its bounding box "
                          "(detection takes rectangles only)")


def test_rotated_detection_turns_a_box_into_an_angle_0_rectangle_with_its_true_centre():
    s = scene(ROTATED, obj(Box(10, 20, 100, 50), CAR))
    # the server's own RECTANGLE conversion would put the centre at (x+width)/2 = 55 (§4.3)
    assert shapes(s) == [{"type": "ROTATED_RECTANGLE", "x": 60.0, "y": 45.0, "width": 100.0,
                          "height": 50.0, "angle": 0.0}]
    assert s.converted == 0 and s.notes == ()


def test_rotated_detection_fits_a_polygon_with_its_minimum_area_rectangle():
    corners = tuple(geometry.rect_corners((200, 200, 100, 40, 30)))
    s = scene(ROTATED, obj(Polygon(corners), CAR))
    (r,) = shapes(s)
    assert r["type"] == "ROTATED_RECTANGLE"
    assert (r["x"], r["y"], r["width"], r["height"], r["angle"]) == pytest.approx(
        (200, 200, 100, 40, 30), abs=1e-3)
    assert s.converted == 1


def test_the_fitted_rectangle_of_an_irregular_polygon_has_the_least_area():
    pentagon = ((10.0, 100.0), (120.0, 60.0), (200.0, 150.0), (150.0, 200.0), (40.0, 170.0))
    (r,) = shapes(scene(ROTATED, obj(Polygon(pentagon), CAR)))

    def area_at(deg: float) -> float:
        t = math.radians(deg)
        a = [x * math.cos(t) + y * math.sin(t) for x, y in pentagon]
        b = [-x * math.sin(t) + y * math.cos(t) for x, y in pentagon]
        return (max(a) - min(a)) * (max(b) - min(b))

    best = min(area_at(k / 100) for k in range(18000))
    assert r["width"] * r["height"] == pytest.approx(best, rel=1e-4)
    fitted = geometry.convex_hull(
        [*geometry.rect_corners((r["x"], r["y"], r["width"], r["height"], r["angle"])),
         *pentagon])
    assert geometry.area(fitted) == pytest.approx(r["width"] * r["height"], rel=1e-4)  # encloses


def test_rotated_rectangle_values_are_rounded_to_4_decimals():
    s = scene(ROTATED, obj(RotatedBox(100.123456, 50.987654, 10.555555, 5.111111, 12.3456789),
                           CAR))
    assert shapes(s) == [{"type": "ROTATED_RECTANGLE", "x": 100.1235, "y": 50.9877,
                          "width": 10.5556, "height": 5.1111, "angle": 12.3457}]


def test_rotated_boxes_are_clipped_to_keep_their_part_inside_or_dropped():
    s = scene(ROTATED, obj(RotatedBox(630, 240, 40, 20, 0), CAR),
              obj(RotatedBox(635, 240, 40, 20, 30), CAR), obj(RotatedBox(900, 900, 10, 10, 45), CAR))
    upright, tilted = shapes(s)
    assert upright == {"type": "ROTATED_RECTANGLE", "x": 625.0, "y": 240.0, "width": 30.0,
                       "height": 20.0, "angle": 0.0}
    inside = geometry.clip_polygon(geometry.rect_corners(
        (tilted["x"], tilted["y"], tilted["width"], tilted["height"], tilted["angle"])), W, H)
    assert geometry.area(inside) >= 1
    assert tilted["width"] * tilted["height"] < 40 * 20
    assert s.clipped == 2 and s.dropped == 1
    assert s.notes[-1] == "rotated box 3 (car) dropped: less than 1 px of it lies inside the " \
                          "640x480 image"


def test_a_rotated_box_keeps_its_sides_under_a_non_uniform_scale():
    upright = scene(ROTATED, obj(RotatedBox(200, 200, 100, 40, 90), CAR), size=(1280, 480))
    assert shapes(upright) == [{"type": "ROTATED_RECTANGLE", "x": 100.0, "y": 200.0,
                                "width": 100.0, "height": 20.0, "angle": 90.0}]
    assert upright.converted == 0
    tilted = scene(ROTATED, obj(RotatedBox(200, 200, 100, 40, 30), CAR), size=(1280, 480))
    (r,) = shapes(tilted)
    assert (r["x"], r["y"]) == pytest.approx((100, 200))
    assert tilted.converted == 1
    assert "refitted as a rectangle after the non-uniform scale 0.5 x 1" in tilted.notes[1]


@pytest.mark.parametrize("kind", ["segmentation", "instance_segmentation"])
def test_segmentation_keeps_boxes_ellipses_and_polygons(kind: str):
    s = scene(project((kind, (ROAD, TREE, EMPTY_SEG))), obj(Box(1, 2, 3, 4), ROAD),
              obj(Ellipse(10.2, 20.7, 30, 40), TREE), obj(Polygon(((1, 1), (9, 1), (5, 8))), ROAD),
              obj(RotatedBox(50, 50, 20, 10, 0), TREE))
    assert shapes(s) == [
        rect(1, 2, 3, 4),
        {"type": "ELLIPSE", "x": 10, "y": 21, "width": 30, "height": 40},
        {"type": "POLYGON", "points": [{"x": 1, "y": 1}, {"x": 9, "y": 1}, {"x": 5, "y": 8}]},
        {"type": "POLYGON", "points": [{"x": 40, "y": 45}, {"x": 60, "y": 45}, {"x": 60, "y": 55},
                                       {"x": 40, "y": 55}]},
    ]
    assert s.converted == 1 and s.notes == ("rotated box 4 (tree) converted to its 4 corners "
                                            "as a POLYGON",)


def test_an_ellipse_may_reach_past_the_edge_but_needs_a_pixel_inside():
    seg = project(("segmentation", (ROAD,)))
    s = scene(seg, obj(Ellipse(-50, -50, 60, 60), ROAD), obj(Ellipse(-100, -100, 60, 60), ROAD))
    assert shapes(s) == [{"type": "ELLIPSE", "x": -50, "y": -50, "width": 60, "height": 60}]
    assert s.dropped == 1 and s.clipped == 0
    assert "less than 1 px of it lies inside" in s.notes[0]


def test_a_whole_image_object_in_a_local_task_becomes_a_full_box_and_is_noted():
    s = scene(DETECTION, obj(None, DOG))
    assert shapes(s) == [FULL] and s.converted == 1
    assert s.notes == ("object 1 (dog) has no shape: sent as a full-image box",)


def test_classification_is_one_full_image_rectangle_holding_every_label():
    horse, saddled = lab(CLS, "horse"), lab(CLS, "saddled")
    s = scene(CLS, obj(None, horse), obj(None, saddled, horse))
    assert list(s.annotations) == [{"labels": [{"id": horse.id}, {"id": saddled.id}],
                                    "shape": FULL}]
    assert all(type(v) is int for k, v in s.annotations[0]["shape"].items() if k != "type")


def test_classification_accepts_a_full_image_box_but_rejects_a_local_shape():
    horse = lab(CLS, "horse")
    full = scene(CLS, obj(Box(0, 0, 1280, 960), horse), size=(1280, 960))
    assert shapes(full) == [FULL]
    with pytest.raises(AnnotationError, match="box 1 \\(horse\\): a classification project "
                                              "takes whole-image labels only, not a box"):
        scene(CLS, obj(Box(1, 1, 10, 10), horse))
    with pytest.raises(AnnotationError, match="not a polygon"):
        scene(CLS, obj(Polygon(((0, 0), (640, 0), (640, 480))), horse))


def test_anomaly_is_global_with_one_label():
    normal, anomalous = lab(ANOMALY, "Normal"), lab(ANOMALY, "Anomalous")
    s = scene(ANOMALY, obj(None, anomalous))
    assert list(s.annotations) == [{"labels": [{"id": anomalous.id}], "shape": FULL}]
    with pytest.raises(AnnotationError, match="'Normal', 'Anomalous'"):
        scene(ANOMALY, obj(None, normal), obj(None, anomalous))
    with pytest.raises(AnnotationError, match="whole-image labels only"):
        scene(ANOMALY, obj(Box(5, 5, 10, 10), anomalous))


def test_an_anomaly_task_takes_one_label_even_when_its_labels_sit_in_two_groups():
    normal = label(30, "Normal", "normal")
    anomalous = label(31, "Anomalous", "anomalous", is_anomalous=True)
    odd = project(("anomaly_classification", (normal, anomalous)))
    with pytest.raises(AnnotationError, match="an anomaly task takes one label, got 'Normal', "
                                              "'Anomalous'"):
        scene(odd, obj(None, normal, anomalous))
    assert ids(scene(odd, obj(None, normal)).annotations[0]) == [normal.id]


def test_keypoint_and_dataset_only_projects_cannot_be_annotated():
    kp = project(("keypoint_detection", (label(20, "nose", "kp"),)))
    with pytest.raises(AnnotationError, match="keypoint detection annotations are not supported"):
        scene(kp, obj(Box(1, 1, 2, 2), kp.labels[0]))
    with pytest.raises(AnnotationError, match="no trainable task"):
        scene(project(), empty=True)


def test_a_label_outside_the_project_is_an_annotation_error():
    with pytest.raises(AnnotationError, match="'road' .* is not a label"):
        scene(DETECTION, obj(Box(1, 1, 2, 2), ROAD))
    assert issubclass(AnnotationError, FileError)


# --- 4. empty images (§5, §12.5) --------------------------------------------------------

def test_an_empty_image_gets_the_first_tasks_empty_label_as_a_lone_full_box():
    s = scene(DETECTION, empty=True)
    assert list(s.annotations) == [{"labels": [{"id": NO_OBJECT.id}], "shape": FULL}]
    cls = scene(CLS, empty=True)
    assert list(cls.annotations) == [{"labels": [{"id": lab(CLS, "No class").id}],
                                      "shape": FULL}]
    chain = scene(CHAIN, empty=True)
    assert ids(chain.annotations[0]) == [lab(CHAIN, "No object").id]
    rotated = scene(ROTATED, empty=True)
    assert shapes(rotated) == [FULL]       # x=y=0: the server's conversion is right here


def test_an_empty_image_without_an_empty_label_is_an_annotation_error():
    with pytest.raises(AnnotationError, match="has no empty label"):
        scene(ANOMALY, empty=True)
    with pytest.raises(AnnotationError, match="'test' \\(detection\\) has no empty label"):
        scene(project(("detection", (DOG,))), empty=True)


def test_objects_win_over_the_empty_flag_and_never_meet_an_empty_box():
    s = scene(DETECTION, obj(Box(1, 1, 5, 5), DOG), empty=True)
    assert shapes(s) == [rect(1, 1, 5, 5)] and ids(s.annotations[0]) == [DOG.id]
    assert s.notes == ("the file is marked as having no objects but lists 1: the objects are "
                       "sent, not the empty label",)
    both = scene(DETECTION, obj(None, NO_OBJECT), obj(Box(1, 1, 5, 5), CAT))
    assert [ids(a) for a in both.annotations] == [[CAT.id]]
    assert both.dropped == 1
    assert "object 1 (No object) dropped: the empty label cannot share" in both.notes[0]


def test_the_empty_label_cannot_share_an_annotation():
    with pytest.raises(AnnotationError, match="the empty label 'No class' cannot be combined "
                                              "with 'horse'"):
        scene(CLS, obj(None, lab(CLS, "No class"), lab(CLS, "horse")))
    with pytest.raises(AnnotationError, match="the empty label 'No object'"):
        scene(DETECTION, obj(Box(1, 1, 5, 5), NO_OBJECT, DOG))


def test_an_explicit_empty_object_alone_is_the_full_box():
    s = scene(DETECTION, obj(Box(1, 1, 5, 5), NO_OBJECT))
    assert list(s.annotations) == [{"labels": [{"id": NO_OBJECT.id}], "shape": FULL}]
    assert s.converted == 1


def test_no_objects_and_not_empty_is_nothing_to_post():
    s = scene(DETECTION)
    assert s.annotations == () and s.body() == {"annotations": []}


# --- 5. task chains (§6) -----------------------------------------------------------------

def test_det_cls_puts_the_class_labels_on_the_detection_box():
    card, hearts, seven = lab(CHAIN, "Card"), lab(CHAIN, "Hearts"), lab(CHAIN, "Seven")
    s = scene(CHAIN, obj(Box(10, 10, 50, 80), hearts, card, seven),
              obj(Polygon(((100, 100), (150, 100), (120, 160))), card, lab(CHAIN, "Spades")),
              obj(Box(300, 10, 50, 80), card))
    assert [ids(a) for a in s.annotations] == [[card.id, hearts.id, seven.id],
                                               [card.id, lab(CHAIN, "Spades").id], [card.id]]
    assert shapes(s) == [rect(10, 10, 50, 80), rect(100, 100, 50, 60), rect(300, 10, 50, 80)]
    assert s.converted == 1


def test_a_class_label_without_the_detection_label_is_an_annotation_error():
    with pytest.raises(AnnotationError, match="label 'Hearts' of task 'Classification task' "
                                              "needs a label of the preceding task"):
        scene(CHAIN, obj(Box(10, 10, 50, 80), lab(CHAIN, "Hearts")))
    with pytest.raises(AnnotationError, match="'No class'.*preceding task"):
        scene(CHAIN, obj(Box(10, 10, 50, 80), lab(CHAIN, "No class")))
    ok = scene(CHAIN, obj(Box(10, 10, 50, 80), lab(CHAIN, "Card"), lab(CHAIN, "No class")))
    assert ids(ok.annotations[0]) == [lab(CHAIN, "Card").id, lab(CHAIN, "No class").id]


def test_det_seg_sends_the_box_and_the_polygon_as_separate_annotations():
    poly = Polygon(((10, 10), (50, 12), (30, 40)))
    s = scene(DET_SEG, obj(poly, PERSON, HAIR), obj(Box(100, 100, 10, 10), PERSON),
              obj(poly, HAIR))
    assert [(ids(a), a["shape"]["type"]) for a in s.annotations] == [
        ([PERSON.id], "RECTANGLE"), ([HAIR.id], "POLYGON"), ([PERSON.id], "RECTANGLE"),
        ([HAIR.id], "POLYGON")]
    assert shapes(s)[0] == rect(10, 10, 40, 30)
    carried = scene(DET_SEG, obj(Box(1, 1, 5, 5), PERSON, SEG_EMPTY))
    assert [ids(a) for a in carried.annotations] == [[PERSON.id, SEG_EMPTY.id]]


# --- 6. exclusivity (§12.6) ---------------------------------------------------------------

def test_rival_labels_of_one_group_are_an_annotation_error():
    with pytest.raises(AnnotationError, match="labels 'horse', 'donkey' are mutually exclusive "
                                              "\\(group 'species'\\)"):
        scene(CLS, obj(None, lab(CLS, "horse")), obj(None, lab(CLS, "donkey")))
    with pytest.raises(AnnotationError, match="'dog', 'cat' are mutually exclusive"):
        scene(DETECTION, obj(Box(1, 1, 5, 5), DOG, CAT))
    with pytest.raises(AnnotationError, match="'Hearts', 'Spades'"):
        scene(CHAIN, obj(Box(1, 1, 5, 5), lab(CHAIN, "Card"), lab(CHAIN, "Hearts"),
                         lab(CHAIN, "Spades")))
    ok = scene(CLS, obj(None, lab(CLS, "horse"), lab(CLS, "unsaddled")))
    assert len(ids(ok.annotations[0])) == 2


def test_exclusivity_counts_the_ancestors_the_server_adds():
    with pytest.raises(AnnotationError, match="'vehicle', 'animal' \\(ancestor of 'dog'\\) are "
                                              "mutually exclusive \\(group 'top'\\)"):
        scene(HIERARCHY, obj(None, HDOG, VEHICLE))
    assert ids(scene(HIERARCHY, obj(None, HDOG, ANIMAL)).annotations[0]) == [HDOG.id, ANIMAL.id]
    det = next(t for t in CHAIN.tasks if t.task_type == "detection")
    joker = Label(id="62946c62003ddb3967f1475c", name="Joker", group=det.labels[0].group)
    tasks = tuple(replace(t, labels=(*t.labels, joker)) if t is det else t for t in CHAIN.tasks)
    chain = replace(CHAIN, tasks=tasks)
    with pytest.raises(AnnotationError, match="'Joker', 'Card' \\(ancestor of 'Hearts'\\)"):
        scene(chain, obj(Box(1, 1, 5, 5), joker, lab(chain, "Hearts")))


# --- 7. the body (§2.2, §13) --------------------------------------------------------------

def test_labels_are_ids_only_and_annotations_carry_no_id():
    s = scene(CHAIN, obj(Box(10, 10, 50, 80), lab(CHAIN, "Card"), lab(CHAIN, "Hearts")),
              obj(Box(1, 1, 5, 5), lab(CHAIN, "Card")))
    for a in s.annotations:
        assert set(a) == {"labels", "shape"}
        assert all(set(x) == {"id"} and len(x["id"]) == 24 for x in a["labels"])
    assert json.loads(json.dumps(s.body())) == {"annotations": list(s.annotations)}


# --- scene_matches (§2.3, §5, §12.10) ----------------------------------------------------

def served(annotations: list[dict[str, Any]] | tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    """What a GET …/annotations/latest gives back: ids, probability, source, order reversed."""
    out = []
    for n, a in enumerate(reversed(annotations)):
        labels = [{"id": x["id"], "probability": 1.0, "source": {"user_id": "u"}}
                  for x in a["labels"]]
        out.append({"id": f"{n:024x}", "modified": "2025-06-13T10:11:12+00:00",
                    "labels": labels, "labels_to_revisit": [], "shape": dict(a["shape"])})
    return out


def test_a_scene_matches_what_the_server_serves_back_in_any_order():
    s = scene(DETECTION, obj(Box(1, 1, 5, 5), DOG), obj(Box(10, 10, 50, 50), CAT))
    assert scene_matches(s, served(s.annotations)) is None
    assert scene_matches(list(s.annotations), served(s.annotations)) is None
    assert scene_matches([], []) is None


def test_coordinates_match_within_the_tolerance_only():
    s = scene(DETECTION, obj(Box(1, 1, 5, 5), DOG), obj(Box(10, 10, 50, 50), CAT))
    got = served(s.annotations)
    got[0]["shape"]["x"] += 1
    assert scene_matches(s, got) is None
    got[0]["shape"]["x"] += 1
    assert scene_matches(s, got) == ("1 of 2 annotations differ: expected RECTANGLE x=10 y=10 "
                                     f"width=50 height=50 [{CAT.id}]; server has RECTANGLE "
                                     f"x=12 y=10 width=50 height=50 [{CAT.id}]")
    assert scene_matches(s, got, tolerance=2.0) is None


def test_different_labels_or_counts_do_not_match():
    s = scene(DETECTION, obj(Box(1, 1, 5, 5), DOG))
    got = served(s.annotations)
    got[0]["labels"][0]["id"] = CAT.id
    assert scene_matches(s, got, project=DETECTION) == (
        "1 of 1 annotations differ: expected RECTANGLE x=1 y=1 width=5 height=5 [dog]; "
        "server has RECTANGLE x=1 y=1 width=5 height=5 [cat]")
    assert scene_matches(s, []) == ("expected 1 annotations, the server has 0: expected "
                                    "RECTANGLE x=1 y=1 width=5 height=5 [" + DOG.id + "]")
    twice = served(s.annotations) * 2
    assert scene_matches(s, twice) is not None
    assert scene_matches(s, twice).startswith("expected 1 annotations, the server has 2")


def test_server_added_ancestors_are_ignored_when_the_project_is_given():
    s = scene(HIERARCHY, obj(None, HDOG))
    got = served(s.annotations)
    got[0]["labels"].append({"id": ANIMAL.id, "probability": 1.0})
    assert scene_matches(s, got, project=HIERARCHY) is None
    assert scene_matches(s, got) is not None
    explicit = scene(HIERARCHY, obj(None, HDOG, ANIMAL))
    assert scene_matches(explicit, got, project=HIERARCHY) is None
    got[0]["labels"].append({"id": VEHICLE.id})
    assert scene_matches(s, got, project=HIERARCHY) is not None


def test_rotated_rectangles_match_within_one_degree_and_in_equivalent_forms():
    s = scene(ROTATED, obj(RotatedBox(200, 200, 100, 40, 30), CAR))
    def with_(**kw: float) -> list[dict[str, Any]]:
        got = served(s.annotations)
        got[0]["shape"].update(kw)
        return got
    assert scene_matches(s, with_(angle=30.9)) is None
    assert scene_matches(s, with_(angle=31.5)) is not None
    assert scene_matches(s, with_(angle=210.0)) is None                     # same rectangle
    assert scene_matches(s, with_(width=40.0, height=100.0, angle=120.0)) is None
    assert scene_matches(s, with_(width=40.0, height=100.0, angle=30.0)) is not None
    assert scene_matches(s, with_(x=201.0, y=199.0)) is None
    assert scene_matches(s, with_(x=202.0)) is not None


def test_a_rotated_square_matches_at_a_quarter_turn():
    s = scene(ROTATED, obj(RotatedBox(200, 200, 50, 50, 10), CAR))
    got = served(s.annotations)
    got[0]["shape"]["angle"] = 100.0
    assert scene_matches(s, got) is None
    got[0]["shape"].update(width=50.5, height=49.6, angle=280.0)
    assert scene_matches(s, got) is None
    got[0]["shape"]["angle"] = 55.0
    assert scene_matches(s, got) is not None


def test_a_full_box_rectangle_matches_the_rotated_form_a_rotated_project_serves():
    s = scene(ROTATED, empty=True)
    got = served(s.annotations)
    got[0]["shape"] = {"type": "ROTATED_RECTANGLE", "x": 320.0, "y": 240.0, "width": 640.0,
                       "height": 480.0, "angle": 0.0}
    assert scene_matches(s, got) is None
    got[0]["shape"]["x"] = 160.0           # the displaced centre of §4.3's conversion bug
    assert scene_matches(s, got) is not None


def test_polygons_match_from_any_starting_point_but_not_with_a_point_moved():
    s = scene(project(("segmentation", (ROAD,))),
              obj(Polygon(((1, 1), (9, 1), (9, 9), (1, 9))), ROAD))
    got = served(s.annotations)
    pts = got[0]["shape"]["points"]
    got[0]["shape"]["points"] = pts[2:] + pts[:2]
    assert scene_matches(s, got) is None
    got[0]["shape"]["points"] = list(reversed(pts))
    assert scene_matches(s, got) is None
    got[0]["shape"]["points"] = [*pts[:3], {"x": 3, "y": 9}]
    assert scene_matches(s, got) is not None
    got[0]["shape"]["points"] = pts[:3]
    assert scene_matches(s, got) is not None


def test_matching_pairs_near_duplicates_optimally_not_greedily():
    expected = [{"labels": [{"id": DOG.id}], "shape": rect(10, 0, 5, 5)},
                {"labels": [{"id": DOG.id}], "shape": rect(9, 0, 5, 5)}]
    got = [{"labels": [{"id": DOG.id}], "shape": rect(10, 0, 5, 5)},
           {"labels": [{"id": DOG.id}], "shape": rect(11, 0, 5, 5)}]
    # greedy pairing would give (10↔10) and leave 9 without a partner
    assert scene_matches(expected, got) is None
    got[1]["shape"]["x"] = 12
    assert scene_matches(expected, got) is not None
