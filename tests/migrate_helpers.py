"""Seeding a local Geti 2 source over its REST API (raw aiohttp, not our client), and
reading a Geti 3 target back, for the migrate tests and benchmark."""

from __future__ import annotations

import hashlib
import io
import ssl
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from geti_bulk.sampledata import image_bytes
from geti_bulk.server import LocalGeti, LocalGeti3
from geti_bulk.server.samples import mp4_bytes


@dataclass
class Seeded:
    """What the source holds, as the test wrote it: name → bytes and annotations."""

    data: dict[str, bytes] = field(default_factory=dict)             # "name.ext" → bytes
    annotations: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    frames: dict[str, dict[int, list[dict[str, Any]]]] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)               # "name.ext" → source id


def _multipart(data: bytes, filename: str) -> tuple[bytes, str]:
    b = uuid.uuid4().hex
    body = (f'--{b}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"'
            "\r\nContent-Type: application/octet-stream\r\n\r\n").encode() + data + \
        f"\r\n--{b}--\r\n".encode()
    return body, f"multipart/form-data; boundary={b}"


class Source2:
    """One Geti 2 project on a LocalGeti, written to with plain requests."""

    def __init__(self, server: LocalGeti, token: str, project: str,
                 dataset: str | None = None) -> None:
        self.server = server
        info = next(p for p in server.info["projects"] if p["name"] == project)
        self.project = info
        ds = next(d for d in info["datasets"] if (d["name"] == dataset if dataset
                                                   else d["use_for_training"]))
        self.base = (f"{server.base_url}/api/v1/organizations/{server.info['organization_id']}"
                     f"/workspaces/{server.info['workspace_id']}/projects/{info['id']}"
                     f"/datasets/{ds['id']}")
        self.headers = {"x-api-key": token}
        self.labels = {lab["name"]: lab["id"] for lab in info["labels"]}
        self.session = aiohttp.ClientSession()

    async def close(self) -> None:
        await self.session.close()

    async def upload(self, filename: str, data: bytes, kind: str = "images") -> dict[str, Any]:
        body, ctype = _multipart(data, filename)
        async with self.session.post(f"{self.base}/media/{kind}", data=body,
                                     headers={**self.headers, "Content-Type": ctype}) as r:
            assert r.status == 200, await r.text()
            return dict(await r.json())

    async def annotate(self, media_id: str, annotations: list[dict[str, Any]],
                       frame: int | None = None) -> None:
        path = (f"/media/images/{media_id}/annotations" if frame is None else
                f"/media/videos/{media_id}/frames/{frame}/annotations")
        async with self.session.post(self.base + path, json={"annotations": annotations},
                                     headers=self.headers) as r:
            assert r.status == 200, await r.text()


def box(label_id: str, x: int, y: int, w: int, h: int) -> dict[str, Any]:
    return {"labels": [{"id": label_id}],
            "shape": {"type": "RECTANGLE", "x": x, "y": y, "width": w, "height": h}}


async def seed_detection(src: Source2, n: int, *, video: bool = True, tiff: bool = True,
                         seed: int = 0) -> Seeded:
    """`n` JPEGs: most with 1-2 boxes, one with the empty label, one unannotated; a TIFF
    (stored re-encoded by Geti 2); a video with two annotated frames."""
    out = Seeded()
    car, truck, empty = src.labels["car"], src.labels["truck"], src.labels["No object"]
    for i in range(n):
        w, h = 64 + (i % 3) * 8, 48 + (i % 2) * 8
        name = f"img_{i:04d}.jpg"
        data = image_bytes(w, h, seed=seed * 100_000 + i, noise=0.3)
        item = await src.upload(name, data)
        out.data[name], out.ids[name] = data, item["id"]
        if i == 1:
            anns = [{"labels": [{"id": empty}],
                     "shape": {"type": "RECTANGLE", "x": 0, "y": 0, "width": w, "height": h}}]
        elif i == 2:
            continue                                   # no annotation at all
        else:
            anns = [box(car if i % 2 else truck, 2 + i % 5, 3, 20, 15)]
            if i % 3 == 0:
                anns.append(box(truck, 30, 20, 12 + i % 4, 10))
        await src.annotate(item["id"], anns)
        out.annotations[name] = anns
    if tiff:
        from PIL import Image

        buf = io.BytesIO()
        Image.new("RGB", (40, 36), (10, 200, 30)).save(buf, "TIFF")
        item = await src.upload("scan.tif", buf.getvalue())
        stored = f"scan{item['media_information']['extension']}"
        anns = [box(car, 1, 1, 10, 10)]
        await src.annotate(item["id"], anns)
        out.ids[stored] = item["id"]
        out.data[stored] = b""                    # what Geti 2 stored: read it back
        out.annotations[stored] = anns
    if video:
        item = await src.upload("clip.mp4", mp4_bytes(64, 48, frames=10, fps=5), "videos")
        out.ids["clip.mp4"] = item["id"]
        out.frames["clip.mp4"] = {}
        for frame in (0, 5):
            anns = [box(car, 5 + frame, 5, 10, 10)]
            await src.annotate(item["id"], anns, frame=frame)
            out.frames["clip.mp4"][frame] = anns
        out.data["clip.mp4"] = b""
    return out


async def download(session: aiohttp.ClientSession, url: str, **kw: Any) -> bytes:
    async with session.get(url, **kw) as r:
        assert r.status == 200, url
        return await r.read()


class Target3:
    """Reads a LocalGeti3 project back with plain requests."""

    def __init__(self, server: LocalGeti3) -> None:
        self.server = server
        self.ssl = ssl.create_default_context(cafile=str(server.cert_path))
        self.session = aiohttp.ClientSession()

    async def close(self) -> None:
        await self.session.close()

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.session.get(self.server.base_url + path, ssl=self.ssl) as r:
            return r.status, (await r.json() if r.content_type == "application/json" else None)

    async def project(self, name: str) -> dict[str, Any]:
        _, projects = await self.get("/api/projects")
        return next(p for p in projects if p["name"] == name)

    async def media(self, pid: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            _, page = await self.get(f"/api/projects/{pid}/dataset/media?limit=100&offset="
                                     f"{len(out)}&sort_direction=asc")
            out.extend(page["items"])
            if not page["items"] or len(out) >= page["pagination"]["total"]:
                return out

    async def binary(self, pid: str, media_id: str) -> bytes:
        return await download(self.session, f"{self.server.base_url}/api/projects/{pid}/"
                              f"dataset/media/{media_id}/binary", ssl=self.ssl)

    async def annotations(self, pid: str, media_id: str) -> list[dict[str, Any]] | None:
        status, body = await self.get(f"/api/projects/{pid}/dataset/media/{media_id}/"
                                      "annotations")
        return None if status == 404 else list(body["annotations"])


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
