"""The documented conversions of what Geti 3 cannot hold (`--convert NAME`). Kept free
of imports: the command line lists them before anything heavy is loaded."""

from __future__ import annotations

# name → (what it does); the flag is `--convert NAME`
CONVERSIONS: dict[str, str] = {
    "anomaly-to-classification": "an anomaly project becomes a multi-class classification "
                                 "project with labels Normal/Anomalous; an image is Anomalous "
                                 "when any of its annotations is, local anomaly shapes dropped",
    "segmentation-to-instance": "semantic segmentation becomes instance segmentation: each "
                                "polygon (ellipses as polygons) one instance",
    "rotated-to-polygon": "rotated detection becomes instance segmentation: each rotated box "
                          "its four corners as a polygon",
    "first-task-only": "a task chain keeps its first task (its shapes and labels); the later "
                       "tasks' labels are dropped and counted",
    "flatten-labels": "a label hierarchy becomes flat labels (parents kept as labels of "
                      "their own, multi-label)",
}
