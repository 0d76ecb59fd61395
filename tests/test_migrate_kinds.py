"""What Geti 3 cannot hold is listed before anything is sent; each documented conversion
has its flag; with it, the project arrives converted (anomaly → classification, semantic
segmentation and ellipses → instance polygons, a task chain → its first task), and a
classification's full box becomes `full_image`. Also Geti 2 → Geti 2."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from geti_bulk.errors import ConfigError
from geti_bulk.events import FileDone, RecordingReporter
from geti_bulk.geti.client import Secret
from geti_bulk.geti.models import Label, Project, Task
from geti_bulk.migrate.config import MigrateConfig, Side
from geti_bulk.migrate.plan import create_body, plan_migration, project_id_for
from geti_bulk.migrate.run import Migration
from geti_bulk.migrate.verify import verify_migration
from geti_bulk.sampledata import image_bytes
from geti_bulk.server import LocalGeti, ServerConfig
from tests.conftest import no_sleep
from tests.migrate_helpers import Source2, Target3
from tests.test_migrate import geti2, geti3  # noqa: F401 (fixtures)

W, H = 64, 48


def _project(*tasks: tuple[str, list[Label]]) -> Project:
    return Project("p", "Src", tuple(Task(str(i), t, t, tuple(ls))
                                     for i, (t, ls) in enumerate(tasks)), ())


@pytest.mark.parametrize(("task", "conversion"), [
    ("anomaly", "anomaly-to-classification"),
    ("segmentation", "segmentation-to-instance"),
    ("rotated_detection", "rotated-to-polygon"),
])
def test_what_geti3_cannot_hold_stops_the_run_unless_its_conversion_is_given(task, conversion):
    src = _project((task, [Label("a", "x", "g")]))
    with pytest.raises(ConfigError) as err:
        plan_migration(src, "geti3", frozenset())
    assert f"--convert {conversion}" in str(err.value) and "nothing was sent" in str(err.value)
    plan = plan_migration(src, "geti3", frozenset({conversion}))
    assert plan.task.task_type in ("classification", "instance_segmentation")
    assert plan.conversions == {conversion}
    assert plan_migration(src, "geti2", frozenset()).task.task_type == task   # Geti 2 holds it


def test_every_refusal_is_listed_at_once_and_keypoints_have_no_conversion():
    chain = _project(("detection", [Label("o", "object", "g")]),
                     ("segmentation", [Label("s", "defect", "h")]))
    with pytest.raises(ConfigError) as err:
        plan_migration(chain, "geti3", frozenset())
    assert "task chain" in str(err.value) and "first-task-only" in str(err.value)
    plan = plan_migration(chain, "geti3", frozenset({"first-task-only"}))
    assert (plan.task.task_type, plan.chain_tail) == ("detection", frozenset({"s"}))
    with pytest.raises(ConfigError, match="keypoint_detection task: no documented conversion"):
        plan_migration(_project(("keypoint_detection", [])), "geti3",
                       frozenset(CONVERSIONS_ALL))


CONVERSIONS_ALL = ("anomaly-to-classification", "segmentation-to-instance",
                   "rotated-to-polygon", "first-task-only", "flatten-labels")


def test_the_created_project_has_a_stable_client_chosen_id_and_the_source_labels():
    src = _project(("classification", [Label("1", "cat", "Pets"), Label("2", "dog", "Pets")]))
    plan = plan_migration(src, "geti3", frozenset())
    pid = project_id_for("https://g2", "p", "Pets")
    assert pid == project_id_for("https://g2", "p", "Pets") != project_id_for("https://g2",
                                                                              "q", "Pets")
    assert create_body(plan, pid, "Pets") == {
        "id": pid, "name": "Pets", "task": {"task_type": "classification",
                                            "exclusive_labels": True,
                                            "labels": [{"name": "cat"}, {"name": "dog"}]}}


def _cfg(g2: Any, g3: Any, tmp_path: Path, project: str, **kw: Any) -> MigrateConfig:
    return MigrateConfig(
        source=Side(host=g2.base_url, project=project, token=Secret(g2.test_token)),
        target=Side(host=g3.base_url, project=None, token=Secret(""),
                    ca_bundle=str(g3.cert_path)),
        create_project=f"{project} (migrated)", journal=tmp_path / f"{project}.sqlite",
        report=tmp_path / f"{project}.jsonl", **kw)


def _full(label_ids: list[str]) -> dict[str, Any]:
    return {"labels": [{"id": i} for i in label_ids],
            "shape": {"type": "RECTANGLE", "x": 0, "y": 0, "width": W, "height": H}}


async def _seed(src: Source2, scenes: list[list[dict[str, Any]]]) -> list[str]:
    ids = []
    for i, anns in enumerate(scenes):
        item = await src.upload(f"k_{i}.jpg", image_bytes(W, H, seed=i))
        await src.annotate(item["id"], anns)
        ids.append(item["id"])
    return ids


async def _target_annotations(g3: Any, project: str) -> tuple[dict[str, Any], dict[str, Any]]:
    t = Target3(g3)
    try:
        proj = await t.project(project)
        out = {}
        for m in await t.media(proj["id"]):
            out[m["name"]] = await t.annotations(proj["id"], m["id"])
        return proj, out
    finally:
        await t.close()


def _names(proj: dict[str, Any], anns: list[dict[str, Any]]) -> list[list[str]]:
    by_id = {lab["id"]: lab["name"] for lab in proj["task"]["labels"]}
    return [sorted(by_id[x["id"]] for x in a["labels"]) for a in anns]


async def test_classification_full_box_becomes_full_image(geti2, geti3, tmp_path):  # noqa: F811
    src = Source2(geti2, geti2.test_token, "Pets classification")
    try:
        await _seed(src, [[_full([src.labels["cat"]])], [_full([src.labels["dog"]])]])
        r = await Migration(_cfg(geti2, geti3, tmp_path, "Pets classification"),
                            RecordingReporter(), sleep=no_sleep).execute()
        assert (r.exit_code, r.uploaded) == (0, 2)
        proj, got = await _target_annotations(geti3, "Pets classification (migrated)")
        assert proj["task"]["task_type"] == "classification" and proj["task"]["exclusive_labels"]
        assert sorted(lab["name"] for lab in proj["task"]["labels"]) == ["cat", "dog", "horse"]
        assert [a["shape"] for a in got["k_0"]] == [{"type": "full_image"}]
        assert _names(proj, got["k_0"]) == [["cat"]] and _names(proj, got["k_1"]) == [["dog"]]
    finally:
        await src.close()


async def test_anomaly_moves_as_classification_with_its_flag(geti2, geti3, tmp_path):  # noqa: F811
    src = Source2(geti2, geti2.test_token, "Anomaly inspection")
    try:
        await _seed(src, [[_full([src.labels["Normal"]])], [_full([src.labels["Anomalous"]])]])
        refused = await Migration(_cfg(geti2, geti3, tmp_path, "Anomaly inspection"),
                                  RecordingReporter(), sleep=no_sleep).execute()
        assert refused.exit_code == 2 and "anomaly-to-classification" in str(refused.fatal)
        t = Target3(geti3)
        _, projects = await t.get("/api/projects")
        await t.close()
        assert not any(p["name"].endswith("(migrated)") for p in projects), "nothing sent"
        r = await Migration(_cfg(geti2, geti3, tmp_path, "Anomaly inspection",
                                 conversions=frozenset({"anomaly-to-classification"})),
                            RecordingReporter(), sleep=no_sleep).execute()
        assert (r.exit_code, r.uploaded) == (0, 2)
        proj, got = await _target_annotations(geti3, "Anomaly inspection (migrated)")
        assert _names(proj, got["k_0"]) == [["Normal"]]
        assert _names(proj, got["k_1"]) == [["Anomalous"]]
    finally:
        await src.close()


async def test_segmentation_polygons_and_ellipses_become_instances(geti2, geti3, tmp_path):  # noqa: F811
    src = Source2(geti2, geti2.test_token, "Road segmentation")
    try:
        poly = {"labels": [{"id": src.labels["road"]}], "shape": {"type": "POLYGON", "points": [
            {"x": 2, "y": 2}, {"x": 30, "y": 3}, {"x": 20, "y": 25}]}}
        ell = {"labels": [{"id": src.labels["sky"]}],
               "shape": {"type": "ELLIPSE", "x": 30, "y": 10, "width": 20, "height": 16}}
        await _seed(src, [[poly, ell]])
        rec = RecordingReporter()
        r = await Migration(_cfg(geti2, geti3, tmp_path, "Road segmentation",
                                 conversions=frozenset({"segmentation-to-instance"})),
                            rec, sleep=no_sleep).execute()
        assert (r.exit_code, r.uploaded) == (0, 1), r.fatal
        proj, got = await _target_annotations(geti3, "Road segmentation (migrated)")
        assert proj["task"]["task_type"] == "instance_segmentation"
        shapes = {_names(proj, [a])[0][0]: a["shape"] for a in got["k_0"]}
        assert shapes["road"]["points"] == [{"x": 2, "y": 2}, {"x": 30, "y": 3},
                                            {"x": 20, "y": 25}]
        pts = shapes["sky"]["points"]
        assert len(pts) >= 16
        assert all(abs(((p["x"] - 40) / 10) ** 2 + ((p["y"] - 18) / 8) ** 2 - 1) < 0.15
                   for p in pts), "the polygon follows the ellipse"
        done = next(e for e in rec.events if isinstance(e, FileDone))
        assert "converted" in done.notes
    finally:
        await src.close()


async def test_chain_moves_its_first_task_with_the_flag(geti2, geti3, tmp_path):  # noqa: F811
    src = Source2(geti2, geti2.test_token, "Detection then classification")
    try:
        box = {"labels": [{"id": src.labels["object"]}, {"id": src.labels["red"]}],
               "shape": {"type": "RECTANGLE", "x": 4, "y": 5, "width": 20, "height": 10}}
        await _seed(src, [[box]])
        r = await Migration(_cfg(geti2, geti3, tmp_path, "Detection then classification",
                                 conversions=frozenset({"first-task-only"})),
                            RecordingReporter(), sleep=no_sleep).execute()
        assert (r.exit_code, r.uploaded) == (0, 1), r.fatal
        proj, got = await _target_annotations(geti3, "Detection then classification (migrated)")
        assert proj["task"]["task_type"] == "detection"
        assert [a["shape"] for a in got["k_0"]] == [
            {"type": "rectangle", "x": 4, "y": 5, "width": 20, "height": 10}]
        assert _names(proj, got["k_0"]) == [["object"]]
    finally:
        await src.close()


async def test_geti2_to_geti2_moves_the_same_project(geti2, tmp_path):  # noqa: F811
    token = geti2.test_token
    other = LocalGeti(ServerConfig(data_dir=tmp_path / "other", token=token, seed=11))
    async with other:
        src = Source2(geti2, token, "Vehicle detection")
        try:
            box = {"labels": [{"id": src.labels["car"]}],
                   "shape": {"type": "RECTANGLE", "x": 4, "y": 5, "width": 20, "height": 10}}
            ids = await _seed(src, [[box], [box]])
            cfg = MigrateConfig(
                source=Side(host=geti2.base_url, project="Vehicle detection",
                            token=Secret(token)),
                target=Side(host=other.base_url, project="Vehicle detection",
                            token=Secret(token)),
                journal=tmp_path / "g2g2.sqlite", report=tmp_path / "g2g2.jsonl")
            r = await Migration(cfg, RecordingReporter(), sleep=no_sleep).execute()
            assert (r.exit_code, r.uploaded) == (0, 2), r.fatal
            dst = Source2(other, token, "Vehicle detection")
            names = {v: k for k, v in dst.labels.items()}
            try:
                async with dst.session.post(f"{dst.base}/media:query", json={},
                                            headers=dst.headers) as resp:
                    media = (await resp.json())["media"]
                assert sorted(m["name"] for m in media) == ["k_0", "k_1"]
                for m in media:
                    async with dst.session.get(f"{dst.base}/media/images/{m['id']}/annotations/"
                                               "latest", headers=dst.headers) as resp:
                        anns = (await resp.json())["annotations"]
                    assert [(names[a["labels"][0]["id"]], a["shape"]) for a in anns] == [
                        ("car", box["shape"])]
            finally:
                await dst.close()
            assert len(ids) == 2
            from geti_bulk.migrate.verify import verify_migration

            v = await verify_migration(cfg, tmp_path / "v.jsonl", sha256=True)
            assert (v.exit_code, v.ok) == (0, 2), v.problems
        finally:
            await src.close()


def test_a_shape_the_target_cannot_hold_is_refused_and_listed():
    from geti_bulk.events import Notice
    from geti_bulk.migrate.scenes import source_annotation

    src = _project(("detection", [Label("c", "car", "g")]))
    plan = plan_migration(src, "geti3", frozenset())
    ann, notes = source_annotation(
        [{"labels": [{"id": "c"}], "shape": {"type": "KEYPOINT", "x": 1, "y": 2}}], src, plan,
        W, H)
    assert ann is None and notes == ["a KEYPOINT annotation cannot be moved"]
    run = Migration(MigrateConfig(source=Side("http://a", "p", Secret("")),
                                  target=Side("http://b", "q", Secret(""))), RecordingReporter())
    run.refuse(notes[0], "image/1", None)
    run.refuse(notes[0], "image/2", None)
    rec = RecordingReporter()
    import asyncio

    asyncio.run(run._tell_refused(rec, None))
    assert [e.text for e in rec.events if isinstance(e, Notice)] == [
        "refused by the target: a KEYPOINT annotation cannot be moved: 2 item(s) "
        "(image/1, image/2)"]


class _Content:
    """A download's body that ends after `have` of the bytes it announced."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def read(self, n: int) -> bytes:
        out, self.data = self.data[:n], self.data[n:]
        return out


async def test_a_download_cut_short_never_completes_the_upload_body():
    from geti_bulk.errors import TransientError
    from geti_bulk.migrate.body import StreamedBody

    written: list[bytes] = []

    async def write(b: bytes) -> None:
        written.append(b)

    body = StreamedBody(_Content(b"x" * 1000), "a.jpg", 4000, chunk=256)  # type: ignore[arg-type]
    assert body.content_length == len(body.preamble) + 4000 + len(body.epilogue)
    with pytest.raises(TransientError, match="ended after 1000 of 4000 bytes"):
        await body.write_to(write)
    assert not body.complete and body.failure is not None
    assert body.epilogue not in b"".join(written), "no closing boundary: the server drops it"
    whole = StreamedBody(_Content(b"y" * 4000), "a.jpg", 4000, chunk=256)  # type: ignore[arg-type]
    written.clear()
    await whole.write_to(write)
    assert whole.complete and b"".join(written) == whole.preamble + b"y" * 4000 + whole.epilogue
    longer = StreamedBody(_Content(b"z" * 4001), "a.jpg", 4000)  # type: ignore[arg-type]
    with pytest.raises(TransientError, match="more than the 4000 bytes"):
        await longer.write_to(write)


async def test_dry_run_creates_nothing_and_label_map_renames_created_labels(
        geti2, geti3, tmp_path):  # noqa: F811
    src = Source2(geti2, geti2.test_token, "Pets classification")
    try:
        await _seed(src, [[_full([src.labels["cat"]])], [_full([src.labels["dog"]])]])
        cfg = _cfg(geti2, geti3, tmp_path, "Pets classification", label_map=("cat=kitty",))
        dry = await Migration(MigrateConfig(**{**_asdict(cfg), "dry_run": True}),
                              RecordingReporter(), sleep=no_sleep).execute()
        assert (dry.exit_code, dry.uploaded, dry.skipped) == (0, 0, 2), dry.fatal
        t = Target3(geti3)
        _, projects = await t.get("/api/projects")
        await t.close()
        assert not any(p["name"].endswith("(migrated)") for p in projects), "dry run: nothing"
        r = await Migration(cfg, RecordingReporter(), sleep=no_sleep).execute()
        assert (r.exit_code, r.uploaded) == (0, 2), r.fatal
        proj, got = await _target_annotations(geti3, "Pets classification (migrated)")
        assert sorted(lab["name"] for lab in proj["task"]["labels"]) == ["dog", "horse",
                                                                         "kitty"]
        assert _names(proj, got["k_0"]) == [["kitty"]]
    finally:
        await src.close()


def _asdict(cfg: MigrateConfig) -> dict[str, Any]:
    return {f: getattr(cfg, f) for f in cfg.__dataclass_fields__}


def test_a_label_hierarchy_needs_flatten_labels_and_becomes_multi_label():
    src = _project(("classification", [Label("v", "vehicle", "top"),
                                       Label("c", "car", "sub", parent_id="v")]))
    with pytest.raises(ConfigError, match="label hierarchy: pass --convert flatten-labels"):
        plan_migration(src, "geti3", frozenset())
    plan = plan_migration(src, "geti3", frozenset({"flatten-labels"}))
    assert (plan.task.task_type, plan.task.exclusive, plan.task.labels) == (
        "classification", False, ("vehicle", "car"))


def test_an_unknown_conversion_is_a_usage_error():
    with pytest.raises(ConfigError, match="unknown conversion"):
        plan_migration(_project(("detection", [])), "geti3", frozenset({"magic"}))


def test_a_config_file_names_both_sides_and_flags_win(tmp_path, monkeypatch):
    from geti_bulk.cli import build_parser
    from geti_bulk.migrate.command import build_config

    for var in ("GETI_FROM_TOKEN", "GETI_TO_TOKEN", "GETI_FROM_TOKEN_FILE",
                "GETI_TO_TOKEN_FILE", "GETI_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "tok").write_text("geti_pat_from_file\n")
    conf = tmp_path / "m.toml"
    conf.write_text('[from]\nhost = "geti2.example.com"\nproject = "Cars"\n'
                    f'token_file = "{tmp_path / "tok"}"\n'
                    '[to]\nhost = "https://localhost:7860"\ninsecure = true\n')
    cfg = build_config(build_parser().parse_args(
        ["migrate", "--config", str(conf), "--create-project", "--to", "https://g3:7860"]))
    assert (cfg.source.host, cfg.source.project) == ("https://geti2.example.com", "Cars")
    assert cfg.source.token.get() == "geti_pat_from_file"
    assert (cfg.target.host, cfg.target.insecure) == ("https://g3:7860", True)
    assert cfg.create_project == "Cars"
    monkeypatch.setenv("GETI_FROM_TOKEN", "geti_pat_from_env")
    cfg = build_config(build_parser().parse_args(
        ["migrate", "--config", str(conf), "--to-project", "X"]))
    assert cfg.source.token.get() == "geti_pat_from_env"
    assert "geti_pat" not in repr(cfg)
    conf.write_text('[from]\nhots = "x"\n')
    with pytest.raises(ConfigError, match="from -> hots: unknown key"):
        build_config(build_parser().parse_args(["migrate", "--config", str(conf),
                                                "--to-project", "X"]))
    with pytest.raises(ConfigError, match="from: no host"):
        build_config(build_parser().parse_args(["migrate", "--to", "http://x",
                                                "--to-project", "X"]))


async def test_a_second_dataset_moves_with_its_subset(geti2, geti3, tmp_path):  # noqa: F811
    """Geti 3 has one dataset per project: a Geti 2 project's second dataset moves into the
    same project, its annotations assigning `--subset testing`."""
    train = Source2(geti2, geti2.test_token, "Pets classification")
    holdout = Source2(geti2, geti2.test_token, "Pets classification", "Holdout")
    try:
        await _seed(train, [[_full([train.labels["cat"]])]])
        item = await holdout.upload("held.jpg", image_bytes(W, H, seed=99))
        await holdout.annotate(item["id"], [_full([holdout.labels["dog"]])])
        cfg = _cfg(geti2, geti3, tmp_path, "Pets classification")
        assert (await Migration(cfg, RecordingReporter(), sleep=no_sleep).execute()).uploaded == 1
        second = MigrateConfig(**{**_asdict(cfg), "subset": "testing",
                                  "journal": tmp_path / "holdout.sqlite",
                                  "source": Side(host=geti2.base_url,
                                                 project="Pets classification",
                                                 token=Secret(geti2.test_token),
                                                 dataset="Holdout")})
        r = await Migration(second, RecordingReporter(), sleep=no_sleep).execute()
        assert (r.exit_code, r.uploaded) == (0, 1), r.fatal
        t = Target3(geti3)
        proj = await t.project("Pets classification (migrated)")
        subsets = {}
        for m in await t.media(proj["id"]):
            _, body = await t.get(f"/api/projects/{proj['id']}/dataset/media/{m['id']}/"
                                  "annotations")
            subsets[m["name"]] = body["subset"]
        await t.close()
        assert subsets == {"k_0": "unassigned", "held": "testing"}
    finally:
        await train.close()
        await holdout.close()


async def test_verify_of_each_dataset_into_one_shared_project(
        geti2, geti3, tmp_path, monkeypatch):  # noqa: F811
    """The README's "several datasets, one Geti 3 project" with the default journals: the
    two datasets share identical files (same name and size). Verify of each dataset pairs
    its items through its own journal, counts only them, and names the other dataset's
    items as from the other migration, not as problems or strangers."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    train = Source2(geti2, geti2.test_token, "Pets classification")
    holdout = Source2(geti2, geti2.test_token, "Pets classification", "Holdout")
    try:
        await _seed(train, [[_full([train.labels["cat"]])]] * 3)
        await _seed(holdout, [[_full([holdout.labels["cat"]])]] * 3)     # the same 3 files
        for i in range(2):
            item = await holdout.upload(f"held_{i}.jpg", image_bytes(W, H, seed=50 + i))
            await holdout.annotate(item["id"], [_full([holdout.labels["dog"]])])
        cfg = MigrateConfig(**{**_asdict(_cfg(geti2, geti3, tmp_path, "Pets classification")),
                               "journal": None})
        second = MigrateConfig(**{**_asdict(cfg), "subset": "testing",
                                  "source": Side(host=geti2.base_url,
                                                 project="Pets classification",
                                                 token=Secret(geti2.test_token),
                                                 dataset="Holdout")})
        for c, n in ((cfg, 3), (second, 5)):
            r = await Migration(c, RecordingReporter(), sleep=no_sleep).execute()
            assert (r.exit_code, r.uploaded) == (0, n), r.fatal
        v1 = await verify_migration(cfg, tmp_path / "v1.jsonl")
        assert (v1.exit_code, v1.checked, v1.ok, v1.problems) == (0, 3, 3, []), v1.summary()
        assert (v1.elsewhere, v1.duplicates, v1.extra) == (5, 0, 0), v1.summary()
        assert "5 target item(s) from the other migration(s) into it" in v1.summary()
        v2 = await verify_migration(second, tmp_path / "v2.jsonl")
        assert (v2.exit_code, v2.checked, v2.ok, v2.problems) == (0, 5, 5, []), v2.summary()
        assert (v2.elsewhere, v2.duplicates, v2.extra) == (3, 0, 0), v2.summary()
    finally:
        await train.close()
        await holdout.close()
