"""Telling Geti 3 apart (GETI3_API.md §10, §14.1), the SPA fallback (§3, §15), TLS (§1)
and the project routes (§4)."""

from __future__ import annotations

import uuid

import aiohttp
import pytest

from .conftest import Api3, MakeGeti3


async def test_openapi_is_json_with_geti_title_and_version(api: Api3) -> None:
    reply = await api.call("GET", "/api/openapi.json")
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("application/json")
    info = reply.json()["info"]
    assert (info["title"], info["version"]) == ("Geti", "3.2.0")
    assert "/api/projects/{project_id}/dataset/media" in reply.json()["paths"]
    health = await api.call("GET", "/health")
    assert (health.status, health.json()) == (200, {"status": "ok"})


@pytest.mark.parametrize("path", ["/api/v1/product_info", "/api/projects/", "/whatever/x"])
async def test_unknown_get_is_the_spa_html(api: Api3, path: str) -> None:
    reply = await api.call("GET", path)
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/html")
    assert "<html" in reply.text


async def test_head_and_trailing_slash_post_are_405(api: Api3) -> None:
    head = await api.call("HEAD", "/api/projects")
    assert head.status == 405
    post = await api.call("POST", "/api/projects/", json={})
    assert (post.status, post.json()) == (405, {"detail": "Method Not Allowed"})
    put = await api.call("PUT", "/api/nothing")
    assert put.status == 405


async def test_without_spa_unknown_is_json_404(make_geti3: MakeGeti3) -> None:
    api = await make_geti3(spa=False)
    reply = await api.call("GET", "/api/v1/product_info")
    assert (reply.status, reply.json()) == (404, {"detail": "Not Found"})
    redirect = await api.call("GET", "/api/projects/", allow_redirects=False)
    assert redirect.status == 307 and redirect.headers["Location"] == "/api/projects"


async def test_https_with_generated_cert_and_untrusted_client_refused(api: Api3) -> None:
    assert api.server.base_url.startswith("https://127.0.0.1:")
    cert = api.server.cert_path
    assert cert is not None and cert.parent == api.server.store.data_dir
    assert (cert.parent / "key.pem").stat().st_mode & 0o077 == 0
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            async with session.get(api.server.base_url + "/health"):
                pass
    async with aiohttp.ClientSession() as session:  # plain HTTP to the TLS port fails
        with pytest.raises(aiohttp.ClientError):
            async with session.get(api.server.base_url.replace("https", "http") + "/health"):
                pass


async def test_plain_http_switch(make_geti3: MakeGeti3) -> None:
    api = await make_geti3(plain_http=True)
    assert api.server.base_url.startswith("http://") and api.server.info["cert_path"] is None
    assert (await api.call("GET", "/health")).status == 200


async def test_latency_is_added(make_geti3: MakeGeti3) -> None:
    import time

    api = await make_geti3(latency_ms=200)
    started = time.monotonic()
    assert (await api.call("GET", "/api/projects")).status == 200
    assert time.monotonic() - started >= 0.2


async def test_projects_list_and_detail(api: Api3) -> None:
    reply = await api.call("GET", "/api/projects", headers={"x-api-key": "ignored"})
    projects = reply.json()
    assert reply.status == 200 and isinstance(projects, list)
    shapes = {(p["task"]["task_type"], p["task"]["exclusive_labels"]) for p in projects}
    assert shapes == {("classification", True), ("classification", False), ("detection", True),
                      ("instance_segmentation", True)}
    one = projects[0]
    assert set(one) == {"id", "name", "task", "active_pipeline", "created_at"}
    assert set(one["task"]["labels"][0]) == {"id", "name", "color", "hotkey"}
    detail = await api.call("GET", f"/api/projects/{one['id'].upper()}")
    assert detail.status == 200 and detail.json()["id"] == one["id"]


async def test_project_ids_400_and_404(api: Api3) -> None:
    bad = await api.call("GET", "/api/projects/abc")
    assert (bad.status, bad.json()) == (
        400, {"detail": "Invalid project_id: 'abc' must be a valid UUID format."})
    missing = str(uuid.uuid4())
    gone = await api.call("GET", f"/api/projects/{missing}/dataset/media")
    assert (gone.status, gone.json()) == (404, {"detail": f"Project with ID {missing} not found."})


async def test_create_project_with_client_id(api: Api3) -> None:
    project_id = str(uuid.uuid4())
    body = {"id": project_id, "name": "mine", "task": {
        "task_type": "detection", "labels": [{"name": "a", "color": "#abc"}, {"name": "b"}]}}
    created = await api.call("POST", "/api/projects", json=body)
    assert created.status == 201, created.text
    view = created.json()
    assert view["id"] == project_id and view["task"]["exclusive_labels"] is False
    assert [lab["name"] for lab in view["task"]["labels"]] == ["a", "b"]
    assert view["task"]["labels"][1]["color"].startswith("#")
    again = await api.call("POST", "/api/projects", json=body)
    assert (again.status, again.json()) == (
        409, {"detail": f"Project with ID '{project_id}' already exists."})
    dup = await api.call("POST", "/api/projects", json={"name": "d", "task": {
        "task_type": "detection", "labels": [{"name": "a"}, {"name": "a"}]}})
    assert (dup.status, dup.json()["detail"]) == (409, "Either label names or hotkeys have "
                                                       "duplicates")


async def test_create_project_422_lists_every_error(api: Api3) -> None:
    reply = await api.call("POST", "/api/projects", json={"task": {
        "task_type": "segmentation", "labels": [{"name": ""}]}})
    assert reply.status == 422
    errors = {(e["type"], tuple(e["loc"])) for e in reply.json()["detail"]}
    assert errors == {("missing", ("body", "name")), ("enum", ("body", "task", "task_type")),
                      ("string_too_short", ("body", "task", "labels", 0, "name"))}
    broken = await api.call("POST", "/api/projects", data=b"{nope",
                            headers={"Content-Type": "application/json"})
    assert broken.status == 422 and broken.json()["detail"][0]["type"] == "json_invalid"
