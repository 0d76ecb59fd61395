"""Contender: a pre-labelled COCO detection dataset imported with the Geti SDK, as a user
of the SDK would write it (geti-sdk 2.13.1 ships no COCO reader).

    GETI_TOKEN=… python geti_sdk_coco.py --url https://… --project NAME DATASET_ROOT

1. ``Geti(host, token, verify_certificate=True)`` (the CA bundle comes from
   ``REQUESTS_CA_BUNDLE``) and ``get_project``;
2. ``ImageClient.upload_folder(root, max_threads=5)``: every ``**/*.jpg`` (and the SDK's
   other extensions, case-sensitively), one multipart POST per image from 5 threads;
3. ``AnnotationClient(..., annotation_reader=CocoReader(...))``
   ``.upload_annotations_for_images(uploaded, max_threads=5)``: one annotation POST per
   image that has boxes, from 5 threads. The reader is the minimal ``AnnotationReader``
   subclass: it reads ``annotations/instances_*.json`` once, keys images by file name
   without extension (the SDK asks for ``media_item.name``), and returns each box as a
   ``Rectangle`` with its category as a ``ScoredLabel`` looked up by name. An image with
   no boxes gets no annotation (the SDK posts nothing for an empty scene).

``--clip`` (the default) clips every box to the image as the server sized it
(``media_information``), rounding the corners to whole pixels first: Geti rejects a box
past the edge with a 400 ("Shape out of bounds"), which the SDK does not catch, and
``Rectangle`` rounds x and width separately, which can push a clipped box one pixel
past the edge. ``--no-clip`` sends the boxes as the COCO file has them, to show what
the SDK does then. Auto-training is left as the project has it (a user calling the
clients directly does not touch it; ``Geti.create_single_task_project_from_dataset``
switches it off while uploading, but only for a project it creates).
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import sys
from collections import defaultdict
from typing import Any

from _common import finish, token


def _reader_class() -> type:
    from geti_sdk.annotation_readers import AnnotationReader
    from geti_sdk.data_models import Annotation, ScoredLabel
    from geti_sdk.data_models.shapes import Rectangle

    class CocoReader(AnnotationReader):
        """Boxes of one COCO instances file, by image file name without extension."""

        def __init__(self, base_data_folder: str, clip: bool = True) -> None:
            super().__init__(base_data_folder=base_data_folder, annotation_format=".json",
                             task_type="detection")
            files = sorted(glob.glob(os.path.join(base_data_folder, "annotations",
                                                  "instances_*.json")))
            self.clip = clip
            self.boxes: dict[str, list[tuple[str, list[float]]]] = defaultdict(list)
            self.names: list[str] = []
            for path in files:
                with open(path, encoding="utf-8") as fh:
                    doc = json.load(fh)
                cats = {c["id"]: c["name"] for c in doc["categories"]}
                self.names += [n for n in cats.values() if n not in self.names]
                stem = {im["id"]: os.path.splitext(os.path.basename(im["file_name"]))[0]
                        for im in doc["images"]}
                for a in doc["annotations"]:
                    self.boxes[stem[a["image_id"]]].append((cats[a["category_id"]], a["bbox"]))

        def get_all_label_names(self) -> list[str]:
            return list(self.names)

        def get_keypoint_joints(self) -> set[tuple[int, int]]:
            return set()

        def get_data(self, filename: str, label_name_to_id_mapping: dict,
                     media_information: Any, preserve_shape_for_global_labels: bool = False,
                     ) -> list[Any]:
            out = []
            w, h = media_information.width, media_information.height
            for name, (x, y, bw, bh) in self.boxes.get(filename, []):
                if self.clip:
                    x0, y0 = max(0, round(x)), max(0, round(y))
                    x1, y1 = min(w, round(x + bw)), min(h, round(y + bh))
                    if x1 - x0 < 1 or y1 - y0 < 1:
                        continue
                    x, y, bw, bh = x0, y0, x1 - x0, y1 - y0
                label = ScoredLabel(name=name, id=label_name_to_id_mapping[name], probability=1.0)
                out.append(Annotation(labels=[label],
                                      shape=Rectangle(x=x, y=y, width=bw, height=bh)))
            return out

    return CocoReader


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True, help="the server's base URL (https://…)")
    p.add_argument("--project", required=True)
    p.add_argument("--concurrency", type=int, default=5)
    clip = p.add_mutually_exclusive_group()
    clip.add_argument("--clip", dest="clip", action="store_true", default=True)
    clip.add_argument("--no-clip", dest="clip", action="store_false")
    p.add_argument("root", help="COCO dataset root: images/… and annotations/instances_*.json")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from geti_sdk import Geti
    from geti_sdk.rest_clients import AnnotationClient, ImageClient

    geti = Geti(host=args.url, token=token(), verify_certificate=True)
    project = geti.get_project(project_name=args.project)
    images = ImageClient(session=geti.session, workspace_id=geti.workspace_id,
                         project=project)
    uploaded = images.upload_folder(args.root, max_threads=args.concurrency)
    reader = _reader_class()(args.root, clip=args.clip)
    annotations = AnnotationClient(session=geti.session, workspace_id=geti.workspace_id,
                                   project=project, annotation_reader=reader)
    annotations.upload_annotations_for_images(uploaded, max_threads=args.concurrency)
    with_boxes = sum(1 for m in uploaded if reader.boxes.get(m.name))
    found = sum(1 for _ in glob.iglob(os.path.join(args.root, "images", "**", "*"),
                                      recursive=True) if os.path.isfile(_))
    # files under images/ that upload_folder did not send (other extensions, .JPG, …)
    # count as failed
    return finish(len(uploaded), max(0, found - len(uploaded)), files_found=found,
                  images_with_boxes=with_boxes, clipped=args.clip)


if __name__ == "__main__":
    sys.exit(main())
