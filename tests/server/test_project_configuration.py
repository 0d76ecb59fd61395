"""``GET``/``PATCH …/project_configuration`` (Geti ≥ 2.12, GETI_ANNOTATIONS.md §8, §13) and
the count of annotations stored while auto-training was on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .annotation_helpers import ANOMALY, CHAIN, DET, ann, annotated, error, rect, task_ids
from .conftest import Api, MakeGeti


def config_path(api: Api, project: str) -> str:
    return f"{api.ws_path}/projects/{api.projects[project]['id']}/project_configuration"


def auto(task: dict[str, Any]) -> dict[str, Any]:
    return {p["key"]: p["value"] for p in task["auto_training"]}


async def patch(api: Api, project: str, body: Any, query: str = "") -> Any:
    return await api.request("PATCH", config_path(api, project) + query, json=body)


async def test_get_shape_and_defaults(api: Api) -> None:
    body = (await api.get(config_path(api, CHAIN))).json()
    assert [t["task_id"] for t in body["task_configs"]] == task_ids(api, CHAIN)
    first = body["task_configs"][0]
    assert first["training"] == {"constraints": [{
        "key": "min_images_per_label", "name": "Minimum number of images per label",
        "type": "int", "description": "Minimum number of images that must be present for each "
        "label to train", "value": 0, "default_value": 0, "min_value": 0, "max_value": None}]}
    assert first["auto_training"][0] == {
        "key": "enable", "name": "Enable auto training", "type": "bool",
        "description": "Whether automatic training is enabled for this task", "value": True,
        "default_value": True}
    assert auto(first) == {"enable": True, "enable_dynamic_required_annotations": False,
                           "min_images_per_label": 12}
    anomaly = (await api.get(config_path(api, ANOMALY))).json()["task_configs"][0]
    assert auto(anomaly)["enable"] is False
    one = await api.get(config_path(api, CHAIN) + f"?task_id={task_ids(api, CHAIN)[1]}")
    assert one.json()["task_id"] == task_ids(api, CHAIN)[1] and "task_configs" not in one.json()


async def test_patch_switches_auto_training_and_counts_follow(api: Api) -> None:
    task = task_ids(api, DET)[0]
    _, reply = await annotated(api, DET, ann(api, DET, rect(0, 0, 5, 5), "car"))
    stats = (await api.admin("GET", "/_admin/stats")).json()["annotations"]
    assert stats["posted_with_auto_training_on"] == 1
    assert stats["posted_with_auto_training_on_per_task"] == {task: 1}
    off = {"task_configs": [{"task_id": task, "auto_training": [{"key": "enable",
                                                                 "value": False}]}]}
    answer = await patch(api, DET, off)
    assert (answer.status, answer.text) == (204, "")
    assert auto((await api.get(config_path(api, DET))).json()["task_configs"][0])["enable"] \
        is False
    await annotated(api, DET, ann(api, DET, rect(0, 0, 5, 5), "truck"))
    stats = (await api.admin("GET", "/_admin/stats")).json()["annotations"]
    assert stats["posted_with_auto_training_on"] == 1 and stats["scenes_stored"] == 2


async def test_single_task_form_and_section_defaults(api: Api) -> None:
    task = task_ids(api, DET)[0]
    body = {"auto_training": [{"key": "min_images_per_label", "value": 30}]}
    assert (await patch(api, DET, body, f"?task_id={task}")).status == 204
    body = {"task_id": task, "auto_training": [{"key": "enable", "value": "off"}],
            "training": {"constraints": [{"key": "min_images_per_label", "value": 4}]}}
    assert (await patch(api, DET, body)).status == 204
    config = (await api.get(config_path(api, DET))).json()["task_configs"][0]
    # a sent section is validated as a whole model: what it leaves out is the default again
    assert auto(config) == {"enable": False, "enable_dynamic_required_annotations": False,
                            "min_images_per_label": 12}
    assert config["training"]["constraints"][0]["value"] == 4


async def test_patch_errors(api: Api) -> None:
    pid = api.projects[DET]["id"]
    task = task_ids(api, DET)[0]
    unknown = {"task_configs": [{"task_id": "a" * 24, "auto_training": []}]}
    assert (await patch(api, DET, unknown)).json() == error(
        404, "project_configuration_not_found", "The requested project configuration could "
        f"not be found. Project ID: `{pid}`, task ID: `{'a' * 24}`")
    bad = {"task_configs": [{"task_id": task, "auto_training": [
        {"key": "enable", "value": "maybe"}, {"key": "min_images_per_label", "value": 2}]}]}
    assert (await patch(api, DET, bad)).json() == {"error_code": "bad_request", "errors": [
        {"message": "Input should be a valid boolean, unable to interpret input",
         "type": "bool_parsing", "location": "task_configs[0].auto_training.enable"},
        {"message": "Input should be greater than or equal to 3", "type": "greater_than_equal",
         "location": "task_configs[0].auto_training.min_images_per_label"}],
        "http_status": 400}
    no_id = await patch(api, DET, {"auto_training": [{"key": "enable", "value": False}]})
    assert no_id.json()["errors"] == [{
        "message": "Value error, Task ID must be provided as part of the task configuration and "
        "cannot be empty.", "type": "value_error", "location": "task_configs[0]"}]
    missing = await api.request("PATCH", config_path(api, DET), data=b"")
    assert missing.json() == error(400, "missing_payload", "Missing request body")
    assert (await patch(api, DET, {})).status == 204          # nothing to change
    # nothing was saved by the failed calls
    assert auto((await api.get(config_path(api, DET))).json()["task_configs"][0])["enable"]
    other = f"{api.ws_path}/projects/{'d' * 24}/project_configuration"
    assert (await api.get(other)).json() == error(
        404, "project_configuration_not_found", "The requested project configuration could "
        f"not be found. Project ID: `{'d' * 24}`")


async def test_configuration_survives_a_restart(make_geti: MakeGeti, tmp_path: Path) -> None:
    first = await make_geti(data_dir=tmp_path / "d")
    task = task_ids(first, DET)[0]
    await patch(first, DET, {"task_id": task, "auto_training": [{"key": "enable",
                                                                 "value": False}]})
    await first.server.stop()
    second = await make_geti(data_dir=tmp_path / "d")
    config = (await second.get(config_path(second, DET))).json()["task_configs"][0]
    assert auto(config)["enable"] is False
