"""``POST …/media:query`` (GETI_API §3.6): body rules, filter grammar, paging, totals."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlparse

from geti_bulk.server.samples import image_bytes, mp4_bytes

from .conftest import Api, load_fixture


async def _seed_media(api: Api) -> None:
    for name in ("Alpha", "beta", "Gamma", "delta_1", "delta_2"):
        assert (await api.upload(image_bytes(), f"{name}.jpg")).status == 200
    assert (await api.upload(mp4_bytes(frames=45), "movie.mp4", kind="videos")).status == 200


def names(reply_body: dict[str, Any]) -> list[str]:
    return [m["name"] for m in reply_body["media"]]


async def test_missing_or_invalid_body_is_missing_payload(api: Api) -> None:
    expected = {"error_code": "missing_payload", "message": "Missing request body",
                "http_status": 400}
    for raw in (b"", b"not json"):
        reply = await api.query(raw=raw)
        assert (reply.status, reply.json()) == (400, expected)


async def test_empty_filter_returns_everything_with_totals(api: Api) -> None:
    await _seed_media(api)
    reply = await api.query({})
    assert reply.status == 200
    body = reply.json()
    fixture = load_fixture("media_query_response.json")
    assert set(body) == set(fixture) - {"next_page"}  # page not full: no next_page
    assert names(body) == ["Alpha", "beta", "delta_1", "delta_2", "Gamma", "movie"]
    assert (body["total_matched_images"], body["total_matched_videos"]) == (5, 1)
    assert body["total_matched_video_frames"] == 45
    assert (body["total_images"], body["total_videos"]) == (5, 1)
    image = body["media"][0]
    assert {"annotation_scene_id", "roi_id", "last_annotator_id"} <= set(image)
    video = body["media"][-1]
    assert "annotation_statistics" in video


async def test_name_filters(api: Api) -> None:
    await _seed_media(api)

    def rule(field: str, op: str, value: object) -> dict[str, object]:
        return {"rules": [{"field": field, "operator": op, "value": value}]}

    body = (await api.query(rule("media_name", "equal", "beta"))).json()
    assert names(body) == ["beta"]
    assert (body["total_matched_images"], body["total_images"]) == (1, 5)
    assert names((await api.query(rule("media_name", "equal", "BETA"))).json()) == []
    assert names((await api.query(rule("MEDIA_NAME", "CONTAINS", "DELTA"))).json()) == [
        "delta_1", "delta_2"]
    assert len(names((await api.query(rule("media_name", "not_equal", "beta"))).json())) == 5
    assert names((await api.query(rule("media_name", "contains", "a.*"))).json()) == []


async def test_media_type_filter_as_the_sdk_sends_it(api: Api) -> None:
    await _seed_media(api)
    sdk = {"rules": [{"field": "MEDIA_TYPE", "operator": "EQUAL", "value": "image"}]}
    body = (await api.query(sdk, params="?limit=100")).json()
    assert len(body["media"]) == 5 and body["total_matched_videos"] == 0
    video = {"condition": "and",
             "rules": [{"field": "media_type", "operator": "equal", "value": "video"}]}
    assert names((await api.query(video)).json()) == ["movie"]


async def test_invalid_filters(api: Api) -> None:
    async def message(body: object) -> str:
        reply = await api.query(body)
        assert reply.status == 400
        payload = reply.json()
        assert payload["error_code"] == "invalid_filter" and payload["http_status"] == 400
        return str(payload["message"])

    assert await message({"rules": []}) == (
        'Can not create filter with a condition but no rules. Pass "{}" if you want a '
        "filter that retrieves all items.")
    text = await message({"rules": [{"field": "greater", "operator": "equal", "value": 1}]})
    assert text.startswith(
        "Invalid filter provided. greater is not a valid value for enum DatasetFilterField. "
        "Please choose one of ['MEDIA_UPLOAD_DATE', 'MEDIA_HEIGHT', 'MEDIA_WIDTH', 'MEDIA_NAME',")
    fixture = load_fixture("errors/datasets__invalid_filter_exception.json")
    assert text.split("[")[0] == fixture["message"].split("[")[0]
    assert await message({"rules": [{"field": "media_name", "operator": "greater",
                                     "value": "x"}]}) == (
        "Operator $gt is not allowed for MEDIA_NAME. Allowed operators are "
        "['EQUAL', 'NOT_EQUAL', 'CONTAINS']")
    assert await message({"rules": [{"field": "media_name", "operator": "equal",
                                     "value": "x" * 256}]}) == (
        "String length for field MEDIA_NAME is longer than 255. This is not allowed.")
    assert await message({"rules": [{"field": "media_name", "operator": "equal"}]}) == (
        "Invalid filter provided. Missing key value in dictionary "
        "{'field': 'media_name', 'operator': 'equal'}")
    assert (await message({"rules": [{"field": "media_name", "operator": "sideways",
                                      "value": "x"}]})).startswith(
        "Invalid filter provided. sideways is not a valid value for enum DatasetFilterOperator.")
    ok = await api.query({"rules": [{"field": "media_name", "operator": "equal",
                                     "value": "x" * 255}]})
    assert ok.status == 200


async def test_paging_next_page_only_when_full(api: Api) -> None:
    await _seed_media(api)
    body = {"rules": [{"field": "media_type", "operator": "equal", "value": "image"}]}
    first = (await api.query(body, params="?limit=2")).json()
    assert names(first) == ["Alpha", "beta"]
    next_page = first["next_page"]
    assert next_page.startswith(f"{api.dataset_path()}/media:query?")
    assert parse_qs(urlparse(next_page).query) == {
        "limit": ["2"], "skip": ["2"], "sort_by": ["media_name"], "sort_direction": ["asc"]}
    seen = names(first)
    page = first
    while "next_page" in page:
        reply = await api.request("POST", page["next_page"], json=body)
        page = reply.json()
        seen += names(page)
    assert seen == ["Alpha", "beta", "delta_1", "delta_2", "Gamma"]
    # 5 images with limit 5: full page → next_page, and the following page is empty
    full = (await api.query(body, params="?limit=5")).json()
    assert "next_page" in full
    empty = (await api.request("POST", full["next_page"], json=body)).json()
    assert empty["media"] == [] and "next_page" not in empty


async def test_sorting(api: Api) -> None:
    await _seed_media(api)
    body = (await api.query({}, params="?sort_by=media_upload_date&sort_direction=dsc")).json()
    assert names(body)[0] == "movie"
    body = (await api.query({}, params="?sort_by=media_name&sort_direction=dsc")).json()
    assert names(body)[0] == "movie"


async def test_query_param_validation(api: Api) -> None:
    for params, key, text in (
        ("?limit=0", "(.'.l.i.m.i.t.'.,.)", "Input should be greater than or equal to 1"),
        ("?limit=1001", "(.'.l.i.m.i.t.'.,.)", "Input should be less than or equal to 1000"),
        ("?skip=-1", "(.'.s.k.i.p.'.,.)", "Input should be greater than or equal to 0"),
        ("?sort_direction=up", "(.'.s.o.r.t._.d.i.r.e.c.t.i.o.n.'.,.)",
         "Input should be 'asc' or 'dsc'"),
    ):
        reply = await api.query({}, params=params)
        assert reply.status == 400
        assert reply.json()["message"] == {key: [text]}


async def test_unknown_dataset_404(api: Api) -> None:
    pid = api.projects["Pets classification"]["id"]
    missing = "0123456789abcdef01234567"
    path = f"{api.ws_path}/projects/{pid}/datasets/{missing}/media:query"
    reply = await api.request("POST", path, json={})
    assert reply.json() == {
        "error_code": "dataset_not_found_in_project",
        "message": "The requested dataset could not be found in project `Pets classification`. "
                   f"Project ID: '{pid}', Dataset Storage ID: `{missing}`. ",
        "http_status": 404,
    }


async def test_label_and_size_filters(api: Api) -> None:
    import json

    cat = api.label_id("Pets classification", "cat")
    await api.upload(image_bytes(64, 64), "tagged.jpg", upload_info=json.dumps({"label_ids": [cat]}))
    await api.upload(image_bytes(128, 64), "plain.jpg")
    body = (await api.query({"rules": [{"field": "label_id", "operator": "equal", "value": cat}]})).json()
    assert names(body) == ["tagged"]
    body = (await api.query({"rules": [{"field": "media_width", "operator": "greater_or_equal",
                                        "value": 100}]})).json()
    assert names(body) == ["plain"]
    body = (await api.query({"rules": [{"field": "annotation_scene_state", "operator": "equal",
                                        "value": "annotated"}]})).json()
    assert names(body) == ["tagged"]
