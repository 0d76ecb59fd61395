"""The Geti 2.x REST client: one session, auth headers, TLS, and the one place where
aiohttp errors and HTTP statuses become geti-bulk errors (httpx's
`map_httpcore_exceptions`). No retries, sleeps or prints here: `pipeline` decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import ssl
import time
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import certifi

from geti_bulk.errors import (
    AmbiguousError,
    ConfigError,
    FatalError,
    FileError,
    GetiBulkError,
    TargetNotFoundError,
)
from geti_bulk.geti.body import MultipartFileBody
from geti_bulk.geti.mapping import map_network_error, map_status
from geti_bulk.geti.models import Dataset, MediaItem, Project

OBJECT_ID = re.compile(r"^[0-9a-fA-F]{24}$")
MAX_FILTER_STRING = 255


class Secret:
    """A token that never shows in repr, str, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value.strip()

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass(frozen=True, slots=True)
class Target:
    host: str
    organization_id: str
    workspace_id: str
    workspace_name: str
    project: Project
    dataset: Dataset
    dialect: str = "geti2"     # "geti3": one dataset per project, no organization
    version: str = ""          # the server's version, when it says

    @property
    def dataset_path(self) -> str:
        if self.dialect == "geti3":
            return f"/api/projects/{self.project.id}/dataset"
        return (f"/api/v1/organizations/{self.organization_id}/workspaces/{self.workspace_id}"
                f"/projects/{self.project.id}/datasets/{self.dataset.id}")

    def describe(self) -> str:
        if self.dialect == "geti3":
            return f"{self.host} (Geti {self.version or '3'}) / {self.project.name}"
        return f"{self.host} / {self.project.name} / {self.dataset.name}"


def normalize_host(host: str) -> str:
    host = host.strip().rstrip("/")
    if not host:
        raise ConfigError("host: no Geti host given (--host, GETI_HOST or target.host)")
    if "://" not in host:
        host = "https://" + host
    parts = urlsplit(host)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"host: not an http(s) URL: {host!r}")
    return f"{parts.scheme}://{parts.netloc}"


def env_proxy(host: str) -> str | None:
    """The proxy the environment names for `host` (HTTPS_PROXY, NO_PROXY, ...), looked up
    once per run: aiohttp's trust_env would look it up in a thread for every request."""
    parts = urlsplit(host)
    if parts.hostname is None or urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(parts.scheme)


def make_ssl(ca_bundle: str | None, insecure: bool) -> ssl.SSLContext | bool:
    if insecure:
        return False
    try:
        return ssl.create_default_context(cafile=ca_bundle or certifi.where())
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"ca_bundle: cannot load {ca_bundle!r}: {e}") from None


class GetiClient:
    """Speaks Geti 2.x over one aiohttp session. Never follows redirects, so the token
    cannot be carried to another host."""

    # where an upload's state outlives the process (`geti.tus.ResumeStore`), set by the
    # pipeline to the journal; Geti 2 uploads are single requests and keep none
    resume_store: Any = None
    dialect = "geti2"
    _org_task: asyncio.Future[str] | None = None   # see prefetch_organization

    def __init__(self, session: aiohttp.ClientSession, host: str, token: Secret, *,
                 api_timeout: float = 300.0, stall_timeout: float = 120.0,
                 response_timeout: float = 960.0, video_response_timeout: float = 3660.0,
                 proxy: str | None = None) -> None:
        self.session = session
        self.host = normalize_host(host)
        self.proxy = proxy
        self._token = token
        self.api_timeout = api_timeout
        self.stall_timeout = stall_timeout
        self.response_timeout = response_timeout
        self.video_response_timeout = video_response_timeout
        self.last_date: str | None = None     # the Date header of the last API answer

    def __repr__(self) -> str:
        return f"GetiClient(host={self.host!r})"

    def _headers(self) -> dict[str, str]:
        token = self._token.get()
        h = {"Accept": "application/json", "x-geti-csrf-protection": "1"}
        if token.startswith("geti_pat"):
            h["x-api-key"] = token
        else:
            h["Authorization"] = f"Bearer {token}"
        return h

    def _scrub(self, exc: Exception) -> Exception:
        """Servers may echo request headers in error bodies: never pass the token on."""
        token = self._token.get()
        if token:
            exc.args = tuple(a.replace(token, "***") if isinstance(a, str) else a
                             for a in exc.args)
        return exc

    async def _call(self, method: str, path: str, *, what: str,
                    params: dict[str, Any] | None = None, json_body: Any = None) -> Any:
        try:
            return await self._call_unscrubbed(method, path, what=what, params=params,
                                               json_body=json_body)
        except GetiBulkError as e:
            raise self._scrub(e) from None

    async def _call_unscrubbed(self, method: str, path: str, *, what: str,
                               params: dict[str, Any] | None, json_body: Any) -> Any:
        url = self.host + path
        try:
            async with asyncio.timeout(self.api_timeout):
                async with self.session.request(method, url, params=params, json=json_body,
                                                headers=self._headers(), proxy=self.proxy,
                                                allow_redirects=False) as resp:
                    body = await resp.read()
                    status, headers = resp.status, resp.headers
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            raise map_network_error(e, self.host, body_complete=False) from None
        self.last_date = headers.get("Date")      # the server's clock (Geti 3 reconciles by it)
        if 300 <= status < 400:
            raise FatalError(f"{self.host} redirected {path} to {headers.get('Location', '?')}; "
                             "point --host at the final address (redirects are not followed so "
                             "the token never goes to another host)")
        if status >= 300:
            raise map_status(status, body, headers, what=what, body_complete=True)
        if status == 204 or (not body and method in ("PATCH", "DELETE")):
            return None     # "no content": e.g. no annotation yet (GETI_ANNOTATIONS.md §1)
        try:
            return json.loads(body)
        except ValueError:
            raise FatalError(f"{url} answered {status} with a non-JSON body; "
                             "is --host a Geti 2.x server?") from None

    # --- target resolution (GETI_API.md §1.3, §3.1, §3.2) -------------------------

    def prefetch_organization(self) -> None:
        """Ask for the token's organization now, while something else is asked (the
        dialect): `resolve` then waits for this answer instead of sending the request."""
        self._org_task = asyncio.ensure_future(self._organization_id())

    def drop_prefetch(self) -> None:
        """Not a Geti 2 after all: cancel the prefetch, and ignore how it ended."""
        task, self._org_task = self._org_task, None
        if task is not None:
            task.cancel()
            task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def organization_id(self) -> str:
        task, self._org_task = self._org_task, None
        if task is not None:
            return await task
        return await self._organization_id()

    async def _organization_id(self) -> str:
        data = await self._call("GET", "/api/v1/personal_access_tokens/organization",
                                what="server")
        org = data.get("organizationId") if isinstance(data, dict) else None
        if not org:
            raise FatalError("the server did not name the token's organization")
        return str(org)

    async def workspaces(self, org: str) -> list[dict[str, Any]]:
        data = await self._call("GET", f"/api/v1/organizations/{org}/workspaces",
                                what="organization")
        return list(data.get("workspaces", [])) if isinstance(data, dict) else []

    async def projects(self, org: str, ws: str, name: str | None = None) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        skip = 0
        while True:
            params: dict[str, Any] = {"limit": 100, "skip": skip}
            if name:
                params["name"] = name
            data = await self._call("GET", f"/api/v1/organizations/{org}/workspaces/{ws}/projects",
                                    what="workspace", params=params)
            page = data.get("projects", [])
            found.extend(page)
            skip += len(page)
            if not page or skip >= int(data.get("project_counts", 0)) or skip > 100_000:
                return found

    async def project(self, org: str, ws: str, project_id: str) -> Project:
        data = await self._call(
            "GET", f"/api/v1/organizations/{org}/workspaces/{ws}/projects/{project_id}",
            what="project")
        return Project.from_json(data)

    async def resolve(self, project: str, dataset: str | None = None,
                      workspace: str | None = None) -> Target:
        org = await self.organization_id()
        spaces = await self.workspaces(org)
        ws = pick_one("workspace", workspace, spaces)
        if OBJECT_ID.match(project):
            proj = await self.project(org, str(ws["id"]), project.lower())
        else:
            listed = await self.projects(org, str(ws["id"]), name=project)
            if not any(p.get("name", "").casefold() == project.casefold() for p in listed):
                listed = await self.projects(org, str(ws["id"]))   # to name the choices
            chosen = pick_one("project", project, listed)
            proj = await self.project(org, str(ws["id"]), str(chosen["id"]))
        ds = pick_dataset(proj, dataset)
        return Target(self.host, org, str(ws["id"]), str(ws.get("name", "")), proj, ds)

    # --- media ----------------------------------------------------------------

    async def query_media(self, target: Target, rules: list[dict[str, Any]] | None = None,
                          limit: int = 1000) -> AsyncIterator[list[MediaItem]]:
        """Pages of `media:query`; `next_page` omits the filter, so the same body is re-posted."""
        body: dict[str, Any] = {"condition": "and", "rules": rules} if rules else {}
        path = f"{target.dataset_path}/media:query"
        params: dict[str, Any] | None = {"limit": limit, "skip": 0}
        for _ in range(1_000_000):
            data = await self._call("POST", path, what="dataset", params=params, json_body=body)
            page = [MediaItem.from_json(m) for m in data.get("media", [])]
            if page:
                yield page
            nxt = data.get("next_page")
            if not nxt or not page:
                return
            split = urlsplit(str(nxt))
            path, params = split.path, dict(_parse_qs(split.query))

    async def probe(self, target: Target) -> None:
        """Is the media service answering? One `media:query` of one item."""
        await self._call("POST", f"{target.dataset_path}/media:query", what="dataset",
                         params={"limit": 1, "skip": 0}, json_body={})

    async def find_by_name(self, target: Target, name: str, kind: str,
                           recent: bool = False) -> list[MediaItem]:
        """Media whose stored name is exactly `name`. Names over 255 characters cannot be
        filtered with `equal` (§3.6): query `contains` on a prefix and compare here."""
        if len(name) <= MAX_FILTER_STRING:
            rule = {"field": "media_name", "operator": "equal", "value": name}
        else:
            rule = {"field": "media_name", "operator": "contains",
                    "value": name[:MAX_FILTER_STRING]}
        rules = [rule, {"field": "media_type", "operator": "equal", "value": kind}]
        out: list[MediaItem] = []
        async for page in self.query_media(target, rules):
            out.extend(m for m in page if m.name == name)
        return out

    async def media_detail(self, target: Target, kind: str, media_id: str) -> MediaItem:
        data = await self._call("GET", f"{target.dataset_path}/media/{kind}s/{media_id}",
                                what="media")
        return MediaItem.from_json(data)

    # --- auto-training (GETI_ANNOTATIONS.md §8, §13: Geti >= 2.12) --------------------

    def _project_path(self, target: Target) -> str:
        return (f"/api/v1/organizations/{target.organization_id}/workspaces/"
                f"{target.workspace_id}/projects/{target.project.id}")

    async def auto_training(self, target: Target) -> dict[str, bool]:
        """task id → whether auto-training is on, from `project_configuration`."""
        data = await self._call("GET", self._project_path(target) + "/project_configuration",
                                what="project configuration")
        out: dict[str, bool] = {}
        for task in (data or {}).get("task_configs", []):
            for param in task.get("auto_training") or []:
                if isinstance(param, dict) and param.get("key") == "enable":
                    out[str(task.get("task_id"))] = bool(param.get("value"))
        return out

    async def set_auto_training(self, target: Target, enabled: dict[str, bool]) -> None:
        body = {"task_configs": [
            {"task_id": task_id, "auto_training": [{"key": "enable", "value": value}]}
            for task_id, value in enabled.items()]}
        await self._call("PATCH", self._project_path(target) + "/project_configuration",
                         what="project configuration", json_body=body)

    # --- annotations (GETI_ANNOTATIONS.md §1, §2, §5) -------------------------------

    async def post_annotation(self, target: Target, media_id: str,
                              annotations: list[dict[str, Any]],
                              subset: str | None = None) -> dict[str, Any]:
        """One POST = one new version that replaces the latest: safe to repeat (§5)."""
        data = await self._call("POST", f"{target.dataset_path}/media/images/{media_id}/annotations",
                                what="annotation", json_body={"annotations": annotations})
        return data if isinstance(data, dict) else {}

    def as_stored(self, annotations: list[dict[str, Any]], target: Target,
                  size: tuple[int, int] | None = None) -> list[dict[str, Any]]:
        """`annotations` as `latest_annotation` would read them back once posted, to
        compare like with like: Geti 2 stores what it is sent."""
        return annotations

    async def latest_annotation(self, target: Target, media_id: str,
                                size: tuple[int, int] | None = None
                                ) -> list[dict[str, Any]] | None:
        """The latest annotation's shapes, or None when the media has none (204)."""
        data = await self._call(
            "GET", f"{target.dataset_path}/media/images/{media_id}/annotations/latest",
            what="annotation")
        if not isinstance(data, dict):
            return None
        return list(data.get("annotations") or [])

    # --- reading a project back, for `migrate` (GETI_API.md §3.7, GETI_ANNOTATIONS.md §1) --

    def download_path(self, target: Target, item: MediaItem) -> str:
        """The stored original: `display/full` for images, `display/stream` for videos."""
        what = "full" if item.type == "image" else "stream"
        return f"{target.dataset_path}/media/{item.type}s/{item.id}/display/{what}"

    @contextlib.asynccontextmanager
    async def open_download(self, target: Target, item: MediaItem
                            ) -> AsyncIterator[aiohttp.ClientResponse]:
        """The download's response, headers read and status checked; the caller streams
        the body. 404 is this item's failure (deleted meanwhile), not the run's."""
        url = self.host + self.download_path(target, item)
        try:
            async with asyncio.timeout(self.api_timeout):
                resp = await self.session.get(url, headers=self._headers(), proxy=self.proxy,
                                              allow_redirects=False)
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            raise self._scrub(map_network_error(e, self.host, body_complete=False)) from None
        try:
            if resp.status == 404:
                raise FileError(f"the source no longer has {item.type} {item.id} (404)")
            if resp.status >= 300:
                body = await resp.read()
                err = map_status(resp.status, body, resp.headers, what="media",
                                 body_complete=False)
                raise self._scrub(err)
            yield resp
        finally:
            resp.release()

    async def frame_annotations(self, target: Target, video_id: str
                                ) -> list[tuple[int, list[dict[str, Any]]]]:
        """(frame index, annotations) of every annotated frame's latest scene, read in
        windows (the server answers at most 500 scenes a call, 204 when none)."""
        path = f"{target.dataset_path}/media/videos/{video_id}/annotations/latest"
        out: list[tuple[int, list[dict[str, Any]]]] = []
        start = 0
        for _ in range(1_000_000):
            data = await self._call("GET", path, what="annotation",
                                    params={"start_frame": start})
            scenes = (data or {}).get("video_annotations") or [] if isinstance(data, dict) \
                else []
            frames = [(int((s.get("media_identifier") or {}).get("frame_index", -1)),
                       list(s.get("annotations") or [])) for s in scenes]
            out.extend(f for f in frames if f[0] >= 0)
            if len(scenes) < 500 or not frames:
                return out
            start = max(f[0] for f in frames) + 1
        return out

    async def latest_frame_annotation(self, target: Target, video_id: str, frame: int,
                                      size: tuple[int, int] | None = None
                                      ) -> list[dict[str, Any]] | None:
        data = await self._call(
            "GET", f"{target.dataset_path}/media/videos/{video_id}/frames/{frame}/annotations/"
            "latest", what="annotation")
        return list(data.get("annotations") or []) if isinstance(data, dict) else None

    async def post_frame_annotation(self, target: Target, video_id: str, frame: int,
                                    annotations: list[dict[str, Any]]) -> dict[str, Any]:
        data = await self._call(
            "POST", f"{target.dataset_path}/media/videos/{video_id}/frames/{frame}/annotations",
            what="annotation", json_body={"annotations": annotations})
        return data if isinstance(data, dict) else {}

    async def upload(self, target: Target, kind: str, body: MultipartFileBody) -> MediaItem:
        try:
            return await self._upload(target, kind, body)
        except GetiBulkError as e:
            raise self._scrub(e) from None

    def forget_upload(self, path: str, size: int, mtime_ns: int) -> None:
        """The file is in the dataset by another way than this client's answer (adopted):
        forget any state kept to resume sending it. Geti 2 keeps none."""
        return None

    def _upload_url(self, target: Target, kind: str) -> str:
        return f"{self.host}{target.dataset_path}/media/{kind}s"

    def _media(self, data: Any) -> MediaItem:
        return MediaItem.from_json(data)

    async def _upload(self, target: Target, kind: str, body: MultipartFileBody) -> MediaItem:
        url = self._upload_url(target, kind)
        headers = self._headers()
        headers["Content-Type"] = body.content_type
        headers["Content-Length"] = str(body.content_length)
        loop = asyncio.get_running_loop()
        wait_answer = self.video_response_timeout if kind == "video" else self.response_timeout
        try:
            async with asyncio.timeout(self.stall_timeout) as deadline:
                user_progress = body.on_progress

                def progress(n: int) -> None:
                    # while bytes flow, a stall is what times out; once the last byte is
                    # out, the server gets as long as the real gateway gives it (§5)
                    done = body.sent >= body.size
                    deadline.reschedule(loop.time() + (wait_answer if done else self.stall_timeout))
                    if user_progress is not None:
                        user_progress(n)

                body.on_progress = progress
                async with self.session.post(url, data=body.payload(), headers=headers,
                                             proxy=self.proxy, allow_redirects=False) as resp:
                    body.answered_at = time.monotonic()
                    deadline.reschedule(loop.time() + self.api_timeout)
                    data = await resp.read()
                    status, rheaders = resp.status, resp.headers
                # the answer came; any later stall is not the body's
                deadline.reschedule(None)
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            if body.failure is not None:
                raise body.failure from None
            raise map_network_error(e, self.host, body_complete=body.complete) from None
        if body.failure is not None:
            raise body.failure
        if 300 <= status < 400:
            raise FatalError(f"{self.host} redirected an upload to {rheaders.get('Location', '?')}; "
                             "point --host at the final address")
        if status >= 300:
            raise map_status(status, data, rheaders, what="dataset", body_complete=body.complete)
        try:
            return self._media(json.loads(data))
        except (ValueError, KeyError, TypeError):
            raise AmbiguousError(f"server answered {status} with an unreadable body",
                                 status=status) from None


def _parse_qs(query: str) -> list[tuple[str, str]]:
    return parse_qsl(query, keep_blank_values=True)


def pick_one(what: str, wanted: str | None, items: list[dict[str, Any]]) -> dict[str, Any]:
    """Choose by id or name; one readable line naming the choices otherwise."""
    shown = sorted(f"{i.get('name')!r}" for i in items)
    names = ", ".join(shown[:20]) + (f" … and {len(shown) - 20} more" if len(shown) > 20 else "")
    names = names or "none"
    if not wanted:
        if len(items) == 1:
            return items[0]
        raise TargetNotFoundError(f"{len(items)} {what}s exist, name one with --{what}: {names}")
    by_id = [i for i in items if str(i.get("id", "")).lower() == wanted.lower()]
    exact = [i for i in items if i.get("name") == wanted]
    folded = [i for i in items if str(i.get("name", "")).casefold() == wanted.casefold()]
    for group in (by_id, exact, folded):
        if len(group) == 1:
            return group[0]
        if len(group) > 1:
            ids = ", ".join(str(i.get("id")) for i in group)
            raise TargetNotFoundError(f"{len(group)} {what}s are named {wanted!r} "
                                      f"(ids {ids}); pass the id with --{what}")
    raise TargetNotFoundError(f"no {what} named {wanted!r}; there are: {names}")


def pick_dataset(project: Project, wanted: str | None) -> Dataset:
    if not wanted:
        training = [d for d in project.datasets if d.use_for_training]
        if training:
            return training[0]
        if project.datasets:
            return project.datasets[0]
        raise TargetNotFoundError(f"project {project.name!r} has no dataset")
    items = [{"id": d.id, "name": d.name} for d in project.datasets]
    chosen = pick_one("dataset", wanted, items)
    return next(d for d in project.datasets if d.id == chosen["id"])


__all__ = ["GetiClient", "Secret", "Target", "env_proxy", "make_ssl", "normalize_host"]
