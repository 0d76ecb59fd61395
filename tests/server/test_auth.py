"""Gateway authentication (GETI_API §2.3): plain-text refusals, decided from headers."""

from __future__ import annotations

from geti_bulk.server.samples import image_bytes
from geti_bulk.server.seed import generate_pat

from .conftest import Api


async def test_no_key_is_rbac_403_plain(api: Api) -> None:
    reply = await api.get(f"{api.ws_path}/projects", auth=False)
    assert reply.status == 403
    assert reply.text == "RBAC: access denied"
    assert reply.headers["Content-Type"].startswith("text/plain")


async def test_key_not_geti_pat_is_403(api: Api) -> None:
    reply = await api.get(f"{api.ws_path}/projects", auth=False, headers={"x-api-key": "hello"})
    assert (reply.status, reply.text) == (403, "RBAC: access denied")


async def test_malformed_pat_is_400_bad_request(api: Api) -> None:
    reply = await api.get(
        f"{api.ws_path}/projects", auth=False, headers={"x-api-key": "geti_pat_abc"})
    assert (reply.status, reply.text) == (400, "Bad request")


async def test_wrong_pat_is_401(api: Api) -> None:
    reply = await api.get(
        f"{api.ws_path}/projects", auth=False, headers={"x-api-key": generate_pat()})
    assert (reply.status, reply.text) == (401, "Invalid authorization token")


async def test_other_organization_in_path_is_401(api: Api) -> None:
    other = "11111111-2222-4333-8444-555555555555"
    reply = await api.get(f"/api/v1/organizations/{other}/workspaces")
    assert (reply.status, reply.text) == (401, "Invalid authorization token")


async def test_authorization_without_bearer_is_401(api: Api) -> None:
    reply = await api.get(
        f"{api.ws_path}/projects", auth=False, headers={"Authorization": f"Token {api.token}"})
    assert (reply.status, reply.text) == (401, "Authorization header is in unexpected format")


async def test_authorization_takes_precedence_over_api_key(api: Api) -> None:
    reply = await api.get(f"{api.ws_path}/projects", headers={"Authorization": "Basic xyz"})
    assert reply.status == 401


async def test_bearer_works_and_needs_csrf_on_writes(api: Api) -> None:
    bearer = {"Authorization": f"Bearer {api.token}"}
    assert (await api.get(f"{api.ws_path}/projects", auth=False, headers=bearer)).status == 200
    query = f"{api.dataset_path()}/media:query"
    denied = await api.request("POST", query, auth=False, headers=bearer, json={})
    assert (denied.status, denied.text) == (403, "RBAC: access denied")
    allowed = await api.request(
        "POST", query, auth=False, json={},
        headers={**bearer, "x-geti-csrf-protection": "1"})
    assert allowed.status == 200


async def test_upload_refused_before_the_body_and_nothing_stored(api: Api) -> None:
    reply = await api.upload(image_bytes(), "x.jpg", auth=False,
                             headers={"x-api-key": generate_pat()})
    assert reply.status == 401
    assert api.server.store.count() == 0


async def test_product_info_is_anonymous(api: Api) -> None:
    assert (await api.get("/api/v1/product_info", auth=False)).status == 200


async def test_admin_refuses_geti_token(api: Api) -> None:
    reply = await api.request("GET", "/_admin/stats")
    assert reply.status == 403
    reply = await api.request("GET", "/_admin/stats", auth=False,
                              headers={"x-admin-token": "wrong"})
    assert reply.status == 403
    assert (await api.admin("GET", "/_admin/stats")).status == 200


async def test_refusal_of_a_large_body_is_still_readable(api: Api) -> None:
    """The gateway answers before reading the body; the client must still see the 401."""
    reply = await api.upload(image_bytes() + bytes(32 << 20), "big.jpg", auth=False,
                             headers={"x-api-key": generate_pat()})
    assert (reply.status, reply.text) == (401, "Invalid authorization token")
