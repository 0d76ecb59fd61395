"""Dataset readers: one module per annotation format (COCO, YOLO, Pascal VOC, Datumaro),
each behind the `DatasetReader` protocol of `model.py`, and `detect` to pick one."""
