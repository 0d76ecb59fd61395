"""``GET``/``PATCH …/projects/{pid}/project_configuration``: per-task training and
auto-training settings of Geti ≥ 2.12 (GETI_ANNOTATIONS.md §8, §13).

Shapes follow geti_v2's director service (``project_configuration_endpoints.py``,
``project_configuration_controller.py``, ``ProjectConfigurationRESTViews``, the
``geti_configuration_tools`` models and ``docs/rest_api/examples/configuration/*/revamp``):
GET answers ``{"task_configs": [{task_id, training: {constraints: [param]}, auto_training:
[param]}]}`` (one task's object with ``?task_id=``), each param ``{key, name, type,
description, value, default_value[, min_value, max_value]}``. PATCH takes the same shape
with ``{key, value}`` params, or one task's object (``?task_id=`` fills a missing id), and
answers 204. A sent section replaces the stored one with the model's defaults for what it
leaves out (the partial model is only partial at the top); an unknown task is a 404 and
nothing is saved; bad values are pydantic's 400 ``errors`` list. Auto-training defaults to
on, off for anomaly tasks. Settings are kept in SQLite beside the media.
"""

from __future__ import annotations

import copy
import json
import sqlite3
from collections import Counter
from typing import Any

from .seed import Project, Task

_CONSTRAINT: dict[str, Any] = {"key": "min_images_per_label", "name": "Minimum number of images per label",
               "type": "int", "description": "Minimum number of images that must be present "
               "for each label to train", "default_value": 0, "min_value": 0, "max_value": None}
_AUTO: list[dict[str, Any]] = [
    {"key": "enable", "name": "Enable auto training", "type": "bool",
     "description": "Whether automatic training is enabled for this task", "default_value": True},
    {"key": "enable_dynamic_required_annotations", "name": "Enable dynamic required annotations",
     "type": "bool", "description": "Whether to dynamically adjust the number of required "
     "annotations", "default_value": False},
    {"key": "min_images_per_label", "name": "Minimum images per label", "type": "int",
     "description": "Minimum number of images needed for each label to trigger auto-training",
     "default_value": 12, "min_value": 3, "max_value": None},
]
_SCHEMA = """
CREATE TABLE IF NOT EXISTS project_configuration (
    project_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    config TEXT NOT NULL,
    PRIMARY KEY (project_id, task_id)
);
"""
_TRUE = {"1", "on", "t", "true", "y", "yes"}
_FALSE = {"0", "off", "f", "false", "n", "no"}
TaskConfig = dict[str, Any]


def default_config(task: Task) -> TaskConfig:
    auto = {p["key"]: p["default_value"] for p in _AUTO}
    auto["enable"] = not task.task_type.startswith("anomaly")
    return {"training": {"constraints": {"min_images_per_label": 0}}, "auto_training": auto}


def task_config_to_rest(task_id: str, config: TaskConfig) -> dict[str, Any]:
    constraints = [{**_CONSTRAINT, "value": config["training"]["constraints"][_CONSTRAINT["key"]]}]
    auto = [_param(p, config["auto_training"][p["key"]]) for p in _AUTO]
    return {"task_id": task_id, "training": {"constraints": constraints}, "auto_training": auto}


def _param(meta: dict[str, Any], value: Any) -> dict[str, Any]:
    view = {k: meta[k] for k in ("key", "name", "type", "description")}
    view["value"] = value
    view["default_value"] = meta["default_value"]
    if meta["type"] == "int":
        view["min_value"], view["max_value"] = meta["min_value"], meta["max_value"]
    return view


class Configurations:
    """Per-task settings in the ``project_configuration`` table, and the count of
    annotation scenes stored while each task's auto-training was on."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        db.executescript(_SCHEMA)
        self.annotations_while_on: Counter[str] = Counter()
        self.scenes_while_on = 0

    def of_project(self, project: Project) -> list[tuple[str, TaskConfig]]:
        rows = self._db.execute(
            "SELECT task_id, config FROM project_configuration WHERE project_id = ?",
            (project.id,))
        saved = {row[0]: json.loads(row[1]) for row in rows}
        return [(t.id, saved.get(t.id) or default_config(t)) for t in project.trainable_tasks]

    def save(self, project: Project, configs: dict[str, TaskConfig]) -> None:
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO project_configuration VALUES (?, ?, ?)",
                [(project.id, task_id, json.dumps(c)) for task_id, c in configs.items()])

    def record_annotations(self, project: Project, scenes: int = 1) -> None:
        """Scenes were stored: count them for every task whose auto-training is on."""
        enabled = [t for t, c in self.of_project(project) if c["auto_training"]["enable"]]
        for task_id in enabled:
            self.annotations_while_on[task_id] += scenes
        self.scenes_while_on += scenes if enabled else 0


def from_rest(value: Any) -> Any:
    """``{key, value}`` lists to plain dicts, nested dicts kept (a missing ``value`` is a
    KeyError: Geti's unhandled 500)."""
    if isinstance(value, list):
        result: dict[str, Any] = {}
        for item in value:
            if isinstance(item, dict) and "key" in item:
                result[item["key"]] = item["value"]
            elif isinstance(item, dict):
                result.update(from_rest(item))
        return result
    if isinstance(value, dict):
        return {k: from_rest(v) if isinstance(v, dict | list) else v for k, v in value.items()}
    return value


def merge(current: TaskConfig, update: TaskConfig) -> TaskConfig:
    merged = copy.deepcopy(current)
    for section, values in update.items():
        merged[section] = values
    return merged


class Validation:
    """Pydantic's lax validation of ``PartialTaskConfig`` items, errors as the director
    renders them: ``{"message", "type", "location"}``."""

    def __init__(self) -> None:
        self.errors: list[dict[str, str]] = []

    def fail(self, location: str, kind: str, message: str) -> None:
        self.errors.append({"message": message, "type": kind, "location": location})

    def task(self, data: Any, where: str) -> tuple[str, TaskConfig] | None:
        if not isinstance(data, dict):
            self.fail(where, "model_type", "Input should be a valid dictionary or instance of "
                      "PartialTaskConfig")
            return None
        before = len(self.errors)
        task_id = data.get("task_id")
        if task_id is not None and not isinstance(task_id, str):
            self.fail(f"{where}.task_id", "string_type", "Input should be a valid string")
        update: TaskConfig = {}
        if data.get("training") is not None:
            update["training"] = self._training(data["training"], f"{where}.training")
        if data.get("auto_training") is not None:
            update["auto_training"] = self._auto(data["auto_training"], f"{where}.auto_training")
        if len(self.errors) > before:
            return None
        if not task_id:
            self.fail(where, "value_error", "Value error, Task ID must be provided as part of "
                      "the task configuration and cannot be empty.")
            return None
        return str(task_id), update

    def _model(self, data: Any, where: str) -> dict[str, Any] | None:
        if isinstance(data, dict):
            return data
        self.fail(where, "model_attributes_type",
                  "Input should be a valid dictionary or object to extract fields from")
        return None

    def _training(self, data: Any, where: str) -> dict[str, Any]:
        fields = self._model(data, where)
        if fields is None:
            return {}
        if "constraints" not in fields:
            self.fail(f"{where}.constraints", "missing", "Field required")
            return {}
        constraints = self._model(fields["constraints"], f"{where}.constraints") or {}
        value = self._int(constraints.get("min_images_per_label", 0), 0,
                          f"{where}.constraints.min_images_per_label")
        return {"constraints": {"min_images_per_label": value}}

    def _auto(self, data: Any, where: str) -> dict[str, Any]:
        fields = self._model(data, where) or {}
        result: dict[str, Any] = {}
        for meta in _AUTO:
            raw = fields.get(meta["key"], meta["default_value"])
            place = f"{where}.{meta['key']}"
            if meta["type"] == "bool":
                result[meta["key"]] = self._bool(raw, place)
            else:
                result[meta["key"]] = self._int(raw, meta["min_value"], place)
        return result

    def _bool(self, raw: Any, where: str) -> Any:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, int | float) and raw in (0, 1):
            return bool(raw)
        if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
            return raw.strip().lower() in _TRUE
        if isinstance(raw, str | int | float):
            self.fail(where, "bool_parsing", "Input should be a valid boolean, unable to "
                      "interpret input")
        else:
            self.fail(where, "bool_type", "Input should be a valid boolean")
        return raw

    def _int(self, raw: Any, minimum: int, where: str) -> Any:
        value: Any = raw
        if isinstance(raw, float):
            if not raw.is_integer():
                self.fail(where, "int_from_float", "Input should be a valid integer, got a "
                          "number with a fractional part")
                return raw
            value = int(raw)
        elif isinstance(raw, str):
            try:
                value = int(raw.strip())
            except ValueError:
                self.fail(where, "int_parsing", "Input should be a valid integer, unable to "
                          "parse string as an integer")
                return raw
        elif not isinstance(raw, int):
            self.fail(where, "int_type", "Input should be a valid integer")
            return raw
        if int(value) < minimum:
            self.fail(where, "greater_than_equal",
                      f"Input should be greater than or equal to {minimum}")
        return int(value)
