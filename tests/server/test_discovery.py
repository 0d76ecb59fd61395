"""Product info, organization, workspaces, balance, projects, datasets (GETI_API §1, §3)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

from .conftest import Api, MakeGeti, load_fixture

PROJECT_KEYS = {"id", "name", "creation_time", "creator_id", "pipeline", "thumbnail",
                "performance", "storage_info"}
LABEL_KEYS = {"id", "name", "is_anomalous", "color", "hotkey", "is_empty", "group", "parent_id"}


async def test_product_info_is_semver_2x(api: Api) -> None:
    reply = await api.get("/api/v1/product_info")
    assert reply.status == 200
    body = reply.json()
    assert body["product-version"] == "2.13.0"
    assert body["build-version"].startswith("2.13.0")
    assert {"smtp-defined", "intel-email", "grafana_enabled", "environment", "gpu-provider"} <= set(body)


async def test_token_organization(api: Api) -> None:
    reply = await api.get("/api/v1/personal_access_tokens/organization")
    assert reply.status == 200
    assert reply.json() == {"organizationId": api.org}


async def test_workspaces_camel_case_one_default(api: Api) -> None:
    reply = await api.get(f"/api/v1/organizations/{api.org}/workspaces")
    assert reply.status == 200
    body = reply.json()
    assert [w["name"] for w in body["workspaces"]] == ["Default"]
    workspace = body["workspaces"][0]
    assert workspace["id"] == api.ws
    assert workspace["organizationId"] == api.org
    assert {"createdAt", "createdBy", "modifiedAt", "modifiedBy"} <= set(workspace)
    assert body["totalCount"] == 1


async def test_balance_answers_html_200(api: Api) -> None:
    reply = await api.get(f"/api/v1/organizations/{api.org}/balance")
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/html")


async def test_seeded_projects(api: Api) -> None:
    assert set(api.projects) == {
        "Pets classification", "Attributes multi-label", "Anomaly inspection",
        "Vehicle detection", "Detection then classification", "Parts instance segmentation",
        "Road segmentation", "Ship rotated detection", "Detection then segmentation",
    }
    pets = api.project("Pets classification")
    assert [(d["name"], d["use_for_training"]) for d in pets["datasets"]] == [
        ("Dataset", True), ("Holdout", False)]
    assert [lab["name"] for lab in pets["labels"]] == ["cat", "dog", "horse"]
    assert len({lab["group"] for lab in pets["labels"]}) == 1
    assert not any(lab["is_empty"] for lab in pets["labels"])
    multi = api.project("Attributes multi-label")["labels"]
    assert len({lab["group"] for lab in multi}) == 4
    assert [lab["name"] for lab in multi if lab["is_empty"]] == ["No class"]
    anomaly = api.project("Anomaly inspection")
    assert anomaly["task_type"] == "anomaly"
    assert [(lab["name"], lab["is_anomalous"]) for lab in anomaly["labels"]] == [
        ("Normal", False), ("Anomalous", True)]
    vehicles = api.project("Vehicle detection")["labels"]
    assert [(lab["name"], lab["is_empty"]) for lab in vehicles] == [
        ("car", False), ("truck", False), ("No object", True)]
    types = {name: p["task_type"] for name, p in api.projects.items()}
    assert (types["Parts instance segmentation"], types["Road segmentation"],
            types["Ship rotated detection"], types["Detection then segmentation"]) == (
        "instance_segmentation", "segmentation", "rotated_detection", "detection")
    for name, empty in (("Road segmentation", "Empty"), ("Parts instance segmentation", "Empty"),
                        ("Ship rotated detection", "No object")):
        assert [lab["name"] for lab in api.project(name)["labels"] if lab["is_empty"]] == [empty]
    for project in api.projects.values():
        assert any(d["name"] == "Dataset" and d["use_for_training"] for d in project["datasets"])


async def test_ids_are_deterministic_from_seed(make_geti: MakeGeti) -> None:
    first = await make_geti(seed=7)
    second = await make_geti(seed=7)
    third = await make_geti(seed=8)
    assert first.server.info["projects"] == second.server.info["projects"]
    assert first.org == second.org and first.ws == second.ws
    assert first.org != third.org
    for project in first.server.info["projects"]:
        assert len(project["id"]) == 24 and int(project["id"], 16) >= 0


async def test_project_list_shape_and_no_datasets(api: Api) -> None:
    reply = await api.get(f"{api.ws_path}/projects")
    assert reply.status == 200
    body = reply.json()
    fixture = load_fixture("project_list.json")
    assert set(body) == set(fixture)
    assert body["project_counts"] == 9
    assert body["project_page_count"] == 9
    for project in body["projects"]:
        assert set(project) == PROJECT_KEYS
        assert "datasets" not in project
    # default: creation_date, descending
    assert body["projects"][0]["name"] == "Detection then segmentation"


async def test_project_list_paging_next_page_on_every_non_empty_page(api: Api) -> None:
    path = f"{api.ws_path}/projects?limit=2&sort_by=name&sort_direction=asc"
    names: list[str] = []
    pages = 0
    while True:
        body = (await api.get(path)).json()
        pages += 1
        names += [p["name"] for p in body["projects"]]
        assert body["project_counts"] == 9
        assert body["project_page_count"] == len(body["projects"])
        if not body["projects"]:
            assert body["next_page"] == ""
            break
        query = parse_qs(urlparse(body["next_page"]).query)
        assert query["limit"] == ["2"] and query["sort_by"] == ["name"]
        path = body["next_page"]
    assert pages == 6  # 2 + 2 + 2 + 2 + 1 + the empty page
    assert names == sorted(names) and len(names) == 9


async def test_project_list_name_filter_case_insensitive(api: Api) -> None:
    body = (await api.get(f"{api.ws_path}/projects?name=DETECTION")).json()
    assert {p["name"] for p in body["projects"]} == {
        "Vehicle detection", "Detection then classification", "Ship rotated detection",
        "Detection then segmentation"}
    assert body["project_counts"] == 4


async def test_project_list_limit_out_of_range_is_validation_400(api: Api) -> None:
    for value, text in (("0", "Input should be greater than or equal to 1"),
                        ("101", "Input should be less than or equal to 100")):
        reply = await api.get(f"{api.ws_path}/projects?limit={value}")
        assert reply.status == 400
        body = reply.json()
        assert body["error_code"] == "bad_request" and body["http_status"] == 400
        assert body["message"] == {"(.'.l.i.m.i.t.'.,.)": [text]}


async def test_project_detail_shapes_match_fixtures(api: Api) -> None:
    cases = {
        "Pets classification": "project_detail_classification.json",
        "Vehicle detection": "project_detail_detection.json",
        "Anomaly inspection": "project_detail_anomaly.json",
        "Detection then classification": "project_detail_task_chain_detection_classification.json",
    }
    for name, fixture_name in cases.items():
        fixture = load_fixture(fixture_name)
        reply = await api.get(f"{api.ws_path}/projects/{api.projects[name]['id']}")
        assert reply.status == 200
        body = reply.json()
        assert set(body) == set(fixture), name
        tasks = body["pipeline"]["tasks"]
        assert [t["task_type"] for t in tasks] == [
            t["task_type"] if t["task_type"] != "anomaly_classification" else "anomaly"
            for t in fixture["pipeline"]["tasks"]]
        assert len(body["pipeline"]["connections"]) == len(tasks) - 1
        for task in tasks:
            if task["task_type"] in ("dataset", "crop"):
                assert "labels" not in task
            else:
                assert task["label_schema_id"]
                for label in task["labels"]:
                    assert set(label) == LABEL_KEYS
        assert body["thumbnail"] == (
            f"{api.ws_path}/projects/{body['id']}/thumbnail")


async def test_anomaly_project_is_reduced(api: Api) -> None:
    body = (await api.get(f"{api.ws_path}/projects/{api.projects['Anomaly inspection']['id']}")).json()
    task = body["pipeline"]["tasks"][1]
    assert (task["task_type"], task["title"]) == ("anomaly", "Anomaly")


async def test_task_chain_child_labels_have_parent(api: Api) -> None:
    pid = api.projects["Detection then classification"]["id"]
    tasks = (await api.get(f"{api.ws_path}/projects/{pid}")).json()["pipeline"]["tasks"]
    assert [t["task_type"] for t in tasks] == ["dataset", "detection", "crop", "classification"]
    detection_ids = {lab["id"] for lab in tasks[1]["labels"]}
    assert all(lab["parent_id"] in detection_ids for lab in tasks[3]["labels"])


async def test_project_detail_datasets_and_storage(api: Api) -> None:
    pid = api.projects["Pets classification"]["id"]
    body = (await api.get(f"{api.ws_path}/projects/{pid}?with_size=true")).json()
    assert body["storage_info"] == {"size": 0}
    assert [d["use_for_training"] for d in body["datasets"]] == [True, False]
    assert set(body["datasets"][0]) == {"id", "name", "use_for_training", "creation_time"}


async def test_dataset_list_matches_fixture(api: Api) -> None:
    fixture = load_fixture("dataset_list_response.json")
    pid = api.projects["Pets classification"]["id"]
    reply = await api.get(f"{api.ws_path}/projects/{pid}/datasets")
    assert reply.status == 200
    body = reply.json()
    assert set(body) == set(fixture)
    assert set(body["datasets"][0]) == set(fixture["datasets"][0])
    assert [d["name"] for d in body["datasets"]] == ["Dataset", "Holdout"]


async def test_malformed_project_id_400(api: Api) -> None:
    reply = await api.get(f"{api.ws_path}/projects/not-an-id")
    assert reply.status == 400
    assert reply.json() == {
        "error_code": "bad_request",
        "message": "Invalid request parameters: 'project_id'. "
                   "The provided string is not a valid ID: 'not-an-id'.",
        "http_status": 400,
    }


async def test_unknown_project_404_and_id_normalised(api: Api) -> None:
    missing = "0123456789abcdef01234567"
    reply = await api.get(f"{api.ws_path}/projects/{missing}")
    assert reply.status == 404
    assert reply.json() == {
        "error_code": "project_not_found",
        "message": f"The requested project could not be found. Project ID: `{missing}`.",
        "http_status": 404,
    }
    fixture = load_fixture("errors/projects__project_not_found.json")
    assert set(reply.json()) == set(fixture)
    pid = api.projects["Pets classification"]["id"]
    assert (await api.get(f"{api.ws_path}/projects/{pid.upper()}")).status == 200


async def test_latency_is_added_to_api_requests(make_geti: MakeGeti) -> None:
    import time

    api = await make_geti(latency_ms=200)
    started = time.monotonic()
    assert (await api.get("/api/v1/product_info")).status == 200
    assert time.monotonic() - started >= 0.2
    stats = (await api.admin("GET", "/_admin/stats")).json()
    assert stats["requests"] == 1
