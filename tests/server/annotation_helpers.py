"""Helpers for the annotation tests: upload media, post and read scenes, task ids."""

from __future__ import annotations

from typing import Any

from geti_bulk.server.samples import image_bytes, mp4_bytes

from .conftest import Api, Reply

W, H = 640, 480
DET = "Vehicle detection"
PETS = "Pets classification"
MULTI = "Attributes multi-label"
CHAIN = "Detection then classification"
DETSEG = "Detection then segmentation"
ROT = "Ship rotated detection"
SEG = "Road segmentation"
INST = "Parts instance segmentation"
ANOMALY = "Anomaly inspection"


def error(status: int, code: str, message: str) -> dict[str, Any]:
    return {"error_code": code, "message": message, "http_status": status}


def rect(x: float, y: float, w: float, h: float) -> dict[str, Any]:
    return {"type": "RECTANGLE", "x": x, "y": y, "width": w, "height": h}


def full() -> dict[str, Any]:
    return rect(0, 0, W, H)


def ann(api: Api, project: str, shape: dict[str, Any], *labels: str,
        **extra: Any) -> dict[str, Any]:
    return {"labels": [{"id": api.label_id(project, n)} for n in labels], "shape": shape,
            **extra}


def task_ids(api: Api, project: str) -> list[str]:
    found = api.server.world.project(api.projects[project]["id"])
    assert found is not None
    return [t.id for t in found.trainable_tasks]


async def upload_image(api: Api, project: str = DET, **kwargs: Any) -> str:
    reply = await api.upload(image_bytes(W, H), "img.jpg", project=project, **kwargs)
    assert reply.status == 200, reply.text
    return str(reply.json()["id"])


async def upload_video(api: Api, project: str = DET, frames: int = 20) -> str:
    reply = await api.upload(mp4_bytes(W, H, frames=frames, fps=5), "clip.mp4",
                             project=project, kind="videos")
    assert reply.status == 200, reply.text
    return str(reply.json()["id"])


def image_path(api: Api, project: str, image_id: str) -> str:
    return f"{api.dataset_path(project)}/media/images/{image_id}/annotations"


def frame_path(api: Api, project: str, video_id: str, frame: int | str) -> str:
    return f"{api.dataset_path(project)}/media/videos/{video_id}/frames/{frame}/annotations"


async def post(api: Api, project: str, image_id: str, body: Any = None, *,
               raw: bytes | None = None) -> Reply:
    path = image_path(api, project, image_id)
    if raw is not None:
        return await api.request("POST", path, data=raw)
    return await api.request("POST", path, json=body)


async def latest(api: Api, project: str, image_id: str, query: str = "") -> Reply:
    return await api.get(image_path(api, project, image_id) + "/latest" + query)


async def annotated(api: Api, project: str, *annotations: dict[str, Any]) -> tuple[str, Reply]:
    """A fresh image of ``project`` and the answer to posting these annotations on it."""
    image_id = await upload_image(api, project)
    return image_id, await post(api, project, image_id, {"annotations": list(annotations)})
