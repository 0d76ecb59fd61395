"""Contender: a pre-labelled COCO detection dataset imported the way the REST tutorial
would extend to annotations: per image, sequentially, with no ``Session``,

1. ``requests.post(…/media/images, files={"file": open(path, "rb")})``, then
2. ``requests.post(…/media/images/{id}/annotations, json=scene)`` with the image's boxes.

    GETI_TOKEN=… python tutorial_annotations.py --url …/datasets/{did}/media/images ROOT

Label ids come from one ``GET`` of the project (labels by name, as the COCO categories
are named). Boxes are clipped to the image as the server sized it (Geti answers a box
past the edge with a 400); an image with no boxes gets the detection task's empty label
("No object") as one full-image box, as GETI_ANNOTATIONS.md §5 says an image known to
have no objects must, so this loop does the same job as geti-bulk. Every request is a
new TCP connection and, over HTTPS, a new TLS context and handshake. A failed image is
counted and the loop goes on.
"""

from __future__ import annotations

import glob
import json
import os
import sys

import requests
from _common import finish, parse_args, token


def project_labels(upload_url: str, headers: dict[str, str]) -> tuple[dict[str, str], str]:
    """(label name → id, id of the empty label) of the project the URL points into."""
    project_url = upload_url.split("/datasets/")[0]
    detail = requests.get(project_url, headers=headers).json()
    names, empty = {}, ""
    for task in detail["pipeline"]["tasks"]:
        for label in task.get("labels", []):
            names[label["name"]] = label["id"]
            if label.get("is_empty"):
                empty = label["id"]
    return names, empty


def boxes_of(root: str) -> tuple[list[tuple[str, list[tuple[str, list[float]]]]], set[str]]:
    """[(image path, [(category name, bbox)])] in file-name order, and the category names."""
    out, cats = [], set()
    for path in sorted(glob.glob(os.path.join(root, "annotations", "instances_*.json"))):
        subset = os.path.basename(path)[len("instances_"):-len(".json")]
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
        names = {c["id"]: c["name"] for c in doc["categories"]}
        cats |= set(names.values())
        per_image: dict[int, list[tuple[str, list[float]]]] = {im["id"]: [] for im in doc["images"]}
        for a in doc["annotations"]:
            per_image[a["image_id"]].append((names[a["category_id"]], a["bbox"]))
        for im in sorted(doc["images"], key=lambda im: im["file_name"]):
            out.append((os.path.join(root, "images", subset, im["file_name"]), per_image[im["id"]]))
    return out, cats


def scene(boxes: list[tuple[str, list[float]]], labels: dict[str, str], empty: str,
          width: int, height: int) -> dict[str, object]:
    annotations = []
    for name, (x, y, w, h) in boxes:
        x0, y0 = max(0.0, x), max(0.0, y)
        x1, y1 = min(float(width), x + w), min(float(height), y + h)
        if x1 - x0 >= 1 and y1 - y0 >= 1:
            annotations.append({"labels": [{"id": labels[name]}],
                                "shape": {"type": "RECTANGLE", "x": x0, "y": y0,
                                          "width": x1 - x0, "height": y1 - y0}})
    if not annotations:
        annotations = [{"labels": [{"id": empty}],
                        "shape": {"type": "RECTANGLE", "x": 0, "y": 0, "width": width,
                                  "height": height}}]
    return {"annotations": annotations}


def main() -> int:
    args = parse_args(__doc__ or "")
    headers = {"x-api-key": token()}
    labels, empty = project_labels(args.url, headers)
    items, cats = boxes_of(args.folder)
    missing = sorted(cats - set(labels))
    if missing:
        sys.exit(f"categories with no project label: {', '.join(missing)}")
    uploaded = failed = 0
    for path, boxes in items[:args.limit] if args.limit else items:
        try:
            response = requests.post(args.url, headers=headers,
                                     files={"file": open(path, "rb")})  # noqa: SIM115 (as taught)
            if not response.ok:
                raise RuntimeError(f"upload: {response.status_code}")
            media = response.json()
            info = media["media_information"]
            body = scene(boxes, labels, empty, info["width"], info["height"])
            response = requests.post(f"{args.url}/{media['id']}/annotations", headers=headers,
                                     json=body)
            if not response.ok:
                raise RuntimeError(f"annotation: {response.status_code} {response.text[:200]}")
        except (requests.RequestException, RuntimeError, KeyError, ValueError) as e:
            print(f"{os.path.basename(path)}: {e}", file=sys.stderr)
            failed += 1
            continue
        uploaded += 1
    return finish(uploaded, failed)


if __name__ == "__main__":
    sys.exit(main())
