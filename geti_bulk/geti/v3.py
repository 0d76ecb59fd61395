"""Geti 3 (the single-user application, GETI3_API.md): the same operations as the
Geti 2 client, so the pipeline never says "if geti3".

What differs (§14): no token and no organization, workspace or dataset; UUID ids; the
upload is a multipart `file` part alone (its name sent literally, §15) answered 201;
labels always come as a second request, which *replaces* the item's annotations and
carries its subset; shapes are `full_image`, `rectangle` and `polygon` with `{x, y}`
points; "no objects" is an empty list, not a label; and there is no name filter, so
reconciliation lists the media created since the run started (`start_date` minus 1 s,
§15), and matches name, format and size.

Annotations cross this seam in Geti 2 terms (what `geti_bulk.shapes` builds and
compares), converted here both ways.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from geti_bulk.errors import AmbiguousError, FileError, TargetNotFoundError
from geti_bulk.geti import tus
from geti_bulk.geti.client import GetiClient, Secret, Target, pick_one
from geti_bulk.geti.models import Dataset, Label, MediaItem, Project, Task
from geti_bulk.geti.tus import (
    TUS_CHUNK,
    TUS_THRESHOLD,
    MemoryResumeStore,
    ResumeStore,
    TusSupport,
    TusTransfer,
)
from geti_bulk.media import WIRE_ESCAPES, media_name

EMPTY_ID = "00000000-0000-0000-0000-000000000000"   # stands for "no objects": sent as []
UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                  r"[0-9a-fA-F]{12}$")
PAGE = 100                                          # the largest page (§8)
SUBSETS = {"train": "training", "training": "training", "val": "validation",
           "valid": "validation", "validation": "validation", "test": "testing",
           "testing": "testing"}


def project_from_v3(d: dict[str, Any]) -> Project:
    """A `ProjectView` (§4) as our model: one task; exclusive labels share one group;
    detection and segmentation get a stand-in empty label for images with no objects."""
    task = d.get("task") or {}
    task_type = str(task.get("task_type", "")).lower()
    exclusive = bool(task.get("exclusive_labels", True))
    labels = [Label(id=str(x["id"]), name=str(x["name"]),
                    group="labels" if exclusive else str(x["name"]))
              for x in task.get("labels", [])]
    if task_type in ("detection", "instance_segmentation") or (
            task_type == "classification" and not exclusive):
        labels.append(Label(id=EMPTY_ID, name="(no objects)", group="(empty)", is_empty=True))
    return Project(id=str(d["id"]), name=str(d.get("name", "")),
                   tasks=(Task(id=str(d["id"]), title=task_type, task_type=task_type,
                               labels=tuple(labels)),),
                   datasets=(Dataset(id="dataset", name="dataset", use_for_training=True),))


def media_from_v3(d: dict[str, Any]) -> MediaItem:
    fmt = str(d.get("format", "")).lower()
    size = d.get("size")
    return MediaItem(id=str(d["id"]), name=str(d.get("name", "")), type=str(d.get("type", "")),
                     extension=f".{fmt}" if fmt else "",
                     size=int(size) if isinstance(size, int) else None,
                     width=int(d.get("width") or 0), height=int(d.get("height") or 0))


class Geti3Client(GetiClient):
    """Speaks Geti 3 over one aiohttp session; never sends a token."""

    dialect = "geti3"

    def __init__(self, session: Any, host: str, *, version: str = "",
                 proxy: str | None = None) -> None:
        super().__init__(session, host, Secret(""), proxy=proxy)
        self.version = version
        self.started_utc = time.time()

    def _headers(self) -> dict[str, str]:
        return {"Accept": "application/json"}

    # large files go over TUS when the server offers it (§6); set per client
    tus_threshold: int = TUS_THRESHOLD
    tus_chunk_size: int = TUS_CHUNK
    tus_checksum: bool = True          # send Upload-Checksum when the server checks one
    resume_store: ResumeStore | None = None   # None: in memory, lost with the process
    _tus: TusSupport | None = None
    _tus_lock: asyncio.Lock | None = None
    _memory_resume: MemoryResumeStore | None = None

    async def upload(self, target: Target, kind: str, body: Any) -> MediaItem:
        try:
            if body.size >= self.tus_threshold and (await self.tus_support()).takes(body.size):
                return await self._upload_tus(target, kind, body)
            return await super().upload(target, kind, body)
        except AmbiguousError as e:
            raise _as_locked(e) from None

    async def tus_support(self) -> TusSupport:
        """`OPTIONS /api/uploads`, asked once per client (§6); an error is not remembered."""
        if self._tus is None:
            if self._tus_lock is None:
                self._tus_lock = asyncio.Lock()
            async with self._tus_lock:
                if self._tus is None:
                    self._tus = await tus.probe(self.session, self.host, proxy=self.proxy,
                                                api_timeout=self.api_timeout)
        return self._tus

    def resumes(self) -> ResumeStore:
        """Where upload URLs are kept: `resume_store`, else one in memory per client."""
        if self.resume_store is not None:
            return self.resume_store
        if self._memory_resume is None:
            self._memory_resume = MemoryResumeStore()
        return self._memory_resume

    def tus_transfer(self, body: Any, support: TusSupport) -> TusTransfer:
        if not self.tus_checksum:
            support = replace(support, checksum=None)
        return TusTransfer(self.session, self.host, body, filename=_wire_filename(body),
                           store=self.resumes(), support=support, proxy=self.proxy,
                           chunk_size=self.tus_chunk_size, api_timeout=self.api_timeout,
                           stall_timeout=self.stall_timeout)

    async def _upload_tus(self, target: Target, kind: str, body: Any) -> MediaItem:
        transfer = self.tus_transfer(body, await self.tus_support())
        await transfer.send()
        wait = self.video_response_timeout if kind == "video" else self.response_timeout
        # the name multipart would store, so reconciliation finds either (§15)
        data = await transfer.consume(f"{self.host}{target.dataset_path}/media:from-upload",
                                      media_name(transfer.filename), wait)
        try:
            return media_from_v3(data)
        except (KeyError, TypeError, ValueError):
            raise AmbiguousError("server answered a from-upload with an unreadable body",
                                 status=201) from None

    def forget_upload(self, path: str, size: int, mtime_ns: int) -> None:
        """The file is in the dataset (adopted after an ambiguous answer): a resumable
        upload URL kept for it (a `media:from-upload` whose answer was lost) is dropped."""
        if size < self.tus_threshold:
            return
        key = tus.resume_key(path, size, mtime_ns)
        store = self.resumes()
        if store.get(key) is not None:
            store.drop(key)

    def _upload_url(self, target: Target, kind: str) -> str:
        return f"{self.host}{target.dataset_path}/media"

    def _media(self, data: Any) -> MediaItem:
        return media_from_v3(data)

    async def resolve(self, project: str, dataset: str | None = None,
                      workspace: str | None = None) -> Target:
        if dataset or workspace:
            raise TargetNotFoundError("Geti 3 has no workspaces and one dataset per project: "
                                      "drop --dataset/--workspace (subsets go with "
                                      "--subset-dataset or the dataset's own splits)")
        listed = await self._call("GET", "/api/projects", what="server")
        items = [p for p in listed if isinstance(p, dict)] if isinstance(listed, list) else []
        if UUID.match(project):
            chosen = {"id": project.lower()}
        else:
            chosen = pick_one("project", project, items)
        # the run starts by the server's clock: its first answer's Date header (§15), so a
        # client clock that is off cannot hide this run's media from reconciliation
        self.started_utc = server_time(self.last_date) or time.time()
        data = await self._call("GET", f"/api/projects/{chosen['id']}", what="project")
        proj = project_from_v3(data)
        return Target(self.host, "", "", "", proj, proj.datasets[0], dialect="geti3",
                      version=self.version)

    async def list_projects(self) -> list[dict[str, Any]]:
        """Every project on the server (id, name, ...), as `GET /api/projects` lists them."""
        listed = await self._call("GET", "/api/projects", what="server")
        return [p for p in listed if isinstance(p, dict)] if isinstance(listed, list) else []

    async def query_media(self, target: Target, rules: list[dict[str, Any]] | None = None,
                          limit: int = PAGE, since: float | None = None
                          ) -> AsyncIterator[list[MediaItem]]:
        """Every media item, oldest first (new uploads land after the pages read, §15)."""
        params: dict[str, Any] = {"limit": min(limit, PAGE), "offset": 0,
                                  "sort_direction": "asc"}
        if since is not None:
            params["start_date"] = _iso(since - 1.0)   # second-granular, strict (§15)
        for _ in range(10_000_000):
            data = await self._call("GET", f"{target.dataset_path}/media", what="dataset",
                                    params=dict(params))
            page = [media_from_v3(m) for m in (data or {}).get("items", [])]
            if page:
                yield page
            pag = (data or {}).get("pagination") or {}
            params["offset"] += len(page)
            if not page or params["offset"] >= int(pag.get("total", 0)):
                return

    async def find_by_name(self, target: Target, name: str, kind: str,
                           recent: bool = False) -> list[MediaItem]:
        """No name filter in Geti 3 (§8): list (only what this run may have created, when
        `recent`) and compare here."""
        out: list[MediaItem] = []
        async for page in self.query_media(target, since=self.started_utc if recent else None):
            out.extend(m for m in page if m.name == name and m.type == kind)
        return out

    async def probe(self, target: Target) -> None:
        await self._call("GET", f"{target.dataset_path}/media", what="dataset",
                         params={"limit": 1, "offset": 0})

    async def media_detail(self, target: Target, kind: str, media_id: str) -> MediaItem:
        data = await self._call("GET", f"{target.dataset_path}/media/{media_id}", what="media")
        return media_from_v3(data)

    async def auto_training(self, target: Target) -> dict[str, bool]:
        return {}       # Geti 3 has no per-task auto-training switch in its REST API

    async def set_auto_training(self, target: Target, enabled: dict[str, bool]) -> None:
        return None

    async def post_annotation(self, target: Target, media_id: str,
                              annotations: list[dict[str, Any]],
                              subset: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"annotations": to_v3(annotations, target.project)}
        if subset and subset.lower() in SUBSETS:
            body["subset"] = SUBSETS[subset.lower()]
        try:
            data = await self._call("POST",
                                    f"{target.dataset_path}/media/{media_id}/annotations",
                                    what="annotation", json_body=body)
        except AmbiguousError as e:
            raise _as_locked(e) from None
        return data if isinstance(data, dict) else {}

    def as_stored(self, annotations: list[dict[str, Any]], target: Target,
                  size: tuple[int, int] | None = None) -> list[dict[str, Any]]:
        """Through Geti 3's shapes and back: a box sent to an instance-segmentation
        project is stored as its four corners, a classification as `full_image`."""
        try:
            return from_v3(to_v3(annotations, target.project), target.project, size)
        except (FileError, KeyError, TypeError, ValueError):
            return annotations          # not sendable to Geti 3: compared as it is

    async def latest_annotation(self, target: Target, media_id: str,
                                size: tuple[int, int] | None = None
                                ) -> list[dict[str, Any]] | None:
        try:
            data = await self._call(
                "GET", f"{target.dataset_path}/media/{media_id}/annotations", what="annotation")
        except TargetNotFoundError:          # "Media has not been annotated yet."
            return None
        if not isinstance(data, dict):
            return None
        return from_v3(list(data.get("annotations") or []), target.project, size)

    # --- reading a project back and creating one, for `migrate` (§4, §5, §7) ----------

    def download_path(self, target: Target, item: MediaItem) -> str:
        return f"{target.dataset_path}/media/{item.id}/binary"

    async def frame_annotations(self, target: Target, video_id: str
                                ) -> list[tuple[int, list[dict[str, Any]]]]:
        """Geti 3 lists no video's annotated frames (§7, §8), but its `MediaView` counts
        them (`annotated_frame_count`, §5): frames are read one by one (`?frame_index`)
        until that many are found. One GET per frame up to the last annotated one."""
        data = await self._call("GET", f"{target.dataset_path}/media/{video_id}", what="media")
        want = int((data or {}).get("annotated_frame_count") or 0)
        frames = int((data or {}).get("frame_count") or 0)
        size = (int(data.get("width") or 0), int(data.get("height") or 0)) if want else None
        out: list[tuple[int, list[dict[str, Any]]]] = []
        for frame in range(frames):
            if len(out) >= want:
                break
            got = await self.latest_frame_annotation(target, video_id, frame, size)
            if got is not None:
                out.append((frame, got))
        return out

    async def latest_frame_annotation(self, target: Target, video_id: str, frame: int,
                                      size: tuple[int, int] | None = None
                                      ) -> list[dict[str, Any]] | None:
        try:
            data = await self._call("GET", f"{target.dataset_path}/media/{video_id}/annotations",
                                    what="annotation", params={"frame_index": frame})
        except TargetNotFoundError:
            return None
        if not isinstance(data, dict):
            return None
        return from_v3(list(data.get("annotations") or []), target.project, size)

    async def post_frame_annotation(self, target: Target, video_id: str, frame: int,
                                    annotations: list[dict[str, Any]]) -> dict[str, Any]:
        body = {"annotations": to_v3(annotations, target.project)}
        try:
            data = await self._call("POST", f"{target.dataset_path}/media/{video_id}/annotations",
                                    what="annotation", params={"frame_index": frame},
                                    json_body=body)
        except AmbiguousError as e:
            raise _as_locked(e) from None
        return data if isinstance(data, dict) else {}

    async def create_project(self, body: dict[str, Any]) -> dict[str, Any]:
        """`POST /api/projects` with a client-chosen `id` (§4): a retry after a lost
        answer gets 409 for that id, and the project is then read back, not made twice."""
        try:
            data = await self._call("POST", "/api/projects", what="server", json_body=body)
        except FileError as e:
            if "409" not in str(e):
                raise
            data = await self._call("GET", f"/api/projects/{body['id']}", what="project")
            if not isinstance(data, dict) or data.get("name") != body.get("name"):
                raise
        return data if isinstance(data, dict) else {}


def to_v3(annotations: list[dict[str, Any]], project: Project) -> list[dict[str, Any]]:
    """Geti 2 shapes (as `geti_bulk.shapes` builds them) → Geti 3's (§7)."""
    task = project.task_type
    out = []
    for a in annotations:
        labels = [{"id": x["id"]} for x in a.get("labels", []) if x.get("id") != EMPTY_ID]
        if not labels:
            continue                        # the empty label: "no objects" is []
        shape = a["shape"]
        if task == "classification":
            out.append({"labels": labels, "shape": {"type": "full_image"}})
            continue
        if shape["type"] == "RECTANGLE" and task == "detection":
            v3 = {"type": "rectangle", **{k: int(shape[k]) for k in ("x", "y", "width",
                                                                     "height")}}
        elif shape["type"] == "RECTANGLE":  # instance segmentation takes polygons only
            x, y, w, h = (shape[k] for k in ("x", "y", "width", "height"))
            v3 = {"type": "polygon", "points": [{"x": x, "y": y}, {"x": x + w, "y": y},
                                                {"x": x + w, "y": y + h}, {"x": x, "y": y + h}]}
        elif shape["type"] == "POLYGON":
            v3 = {"type": "polygon", "points": [{"x": p["x"], "y": p["y"]}
                                                for p in shape["points"]]}
        else:
            raise FileError(f"Geti 3 cannot hold a {shape['type']} shape")
        out.append({"labels": labels, "shape": v3})
    return out


def from_v3(annotations: list[dict[str, Any]], project: Project,
            size: tuple[int, int] | None) -> list[dict[str, Any]]:
    """Geti 3 annotations → Geti 2 terms, so `scene_matches` compares like with like."""
    w, h = size or (0, 0)
    if not annotations:
        empty = [lab for lab in project.labels if lab.is_empty]
        full = {"type": "RECTANGLE", "x": 0, "y": 0, "width": w, "height": h}
        return [{"labels": [{"id": empty[0].id}], "shape": full}] if empty else []
    out = []
    for a in annotations:
        s = a.get("shape") or {}
        kind = str(s.get("type", "")).lower()
        if kind == "full_image":
            shape: dict[str, Any] = {"type": "RECTANGLE", "x": 0, "y": 0, "width": w, "height": h}
        elif kind == "rectangle":
            shape = {"type": "RECTANGLE", **{k: s.get(k, 0) for k in ("x", "y", "width",
                                                                       "height")}}
        elif kind == "polygon":
            shape = {"type": "POLYGON", "points": [{"x": p["x"], "y": p["y"]}
                                                   for p in s.get("points", [])]}
        else:
            shape = {"type": kind.upper()}
        out.append({"labels": [{"id": x["id"]} for x in a.get("labels", [])], "shape": shape})
    return out


def _as_locked(e: AmbiguousError) -> AmbiguousError:
    """A Geti 3 write answered 500: most likely SQLite's "database is locked" after its
    30 s timeout under parallel writes (§5, issue #7614). The commit may have happened, so
    it stays ambiguous (reconciled first), and it tells the limiter to back off."""
    if e.status != 500:
        return e
    return AmbiguousError(f"{e} (Geti 3 writes to one SQLite file: too many parallel writes?)",
                          status=500, retry_after=e.retry_after, cause="500-locked?")


def _wire_filename(body: Any) -> str:
    """The file's name as a multipart upload of it would be stored, escapes included
    (`media.media_name`, §15): a body's `filename`, else read back from its part header
    (whose quoted-string doubles backslashes)."""
    name = getattr(body, "filename", None)
    if isinstance(name, str):
        return name.translate(WIRE_ESCAPES)
    found = _FILENAME.search(getattr(body, "preamble", b""))
    if found is None:
        return os.path.basename(str(body.path)).translate(WIRE_ESCAPES)
    return found.group(1).decode("utf-8", "replace").replace("\\\\", "\\")


_FILENAME = re.compile(rb'name="file"; filename="([^"]*)"\r\n')


def server_time(date: str | None) -> float | None:
    """An HTTP `Date` header as a Unix time, or None if absent or unreadable."""
    if not date:
        return None
    try:
        when = parsedate_to_datetime(date)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S")
