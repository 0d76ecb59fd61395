"""The Kubernetes recipe: `geti-bulk k8s-manifest` renders an Indexed Job whose pod K
runs `upload --shard K/N` with its own journal, the token from a Secret and the dataset
read-only; deploy/k8s/job.yaml is that output."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

from geti_bulk.cli import build_parser
from geti_bulk.shard import Shard, parse_shard
from tests.test_cli import run_cli

ROOT = Path(__file__).resolve().parents[1]
INDEX_FIELD = "metadata.annotations['batch.kubernetes.io/job-completion-index']"


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' `$(VAR)` substitution in a container's args."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m[1], m[0]), text)


def check_job(doc: dict, n: int, token: str | None = None) -> None:
    assert doc["apiVersion"] == "batch/v1" and doc["kind"] == "Job"
    spec = doc["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == n
    assert spec["backoffLimitPerIndex"] >= 1
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"     # a failed pod is replaced with its index
    [c] = pod["containers"]
    env = {e["name"]: e for e in c["env"]}
    # the index comes from the Job controller's annotation, defined before any use
    assert env["JOB_COMPLETION_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == INDEX_FIELD
    assert [e["name"] for e in c["env"]][0] == "JOB_COMPLETION_INDEX"
    # the token comes from a Secret, and is nowhere on the command line
    assert "value" not in env["GETI_TOKEN"]
    ref = env["GETI_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert ref["name"] and ref["key"]
    argv = [*c["command"], *c["args"]]
    assert not any(a.startswith("--token") for a in argv)
    if token:
        assert token not in yaml.safe_dump(doc)
    # each index runs its own shard, with its own journal
    assert c["command"] == ["geti-bulk"] and c["args"][0] == "upload"
    shards, journals = set(), set()
    for k in range(n):
        args = [expand(a, {"JOB_COMPLETION_INDEX": str(k)}) for a in c["args"]]
        assert "$(" not in " ".join(args)
        ns = build_parser().parse_args(args)     # what the pod's geti-bulk will parse
        assert parse_shard(ns.shard) == Shard(k, n)
        assert ns.token is None
        shards.add(ns.shard)
        journals.add(ns.journal)
        assert str(k) in Path(ns.journal).name
    assert len(shards) == len(journals) == n
    # volumes: the dataset read-only, the journals on a persistent claim
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert {m["name"] for m in c["volumeMounts"]} <= set(volumes)
    source = ns.paths[0]
    [data] = [m for p, m in mounts.items() if str(source).startswith(p)]
    assert data["readOnly"] is True
    assert volumes[data["name"]]["persistentVolumeClaim"]["readOnly"] is True
    [jm] = [m for p, m in mounts.items() if str(Path(ns.journal).parent) == p]
    assert not jm.get("readOnly")
    assert volumes[jm["name"]]["persistentVolumeClaim"]["claimName"]


async def test_k8s_manifest_renders_an_indexed_job_of_shards(tmp_path):
    code, out, err = await run_cli(
        "k8s-manifest", "--shards", "3", "--host", "https://geti.example.com", "--project",
        "Street detection", "--source", "coco", "--image", "reg/geti-bulk:1", "--",
        "--format", "coco", "--label-map", "person=pedestrian")
    assert code == 0, err
    [doc] = [d for d in yaml.safe_load_all(out) if d]
    check_job(doc, 3)
    c = doc["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "reg/geti-bulk:1"
    assert c["args"][1] == "/data/coco"
    assert c["args"][-4:] == ["--format", "coco", "--label-map", "person=pedestrian"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["GETI_HOST"] == "https://geti.example.com"
    assert env["GETI_PROJECT"] == "Street detection"


async def test_k8s_manifest_refuses_a_token_on_the_command_line():
    code, out, err = await run_cli("k8s-manifest", "--shards", "2", "--host", "https://g",
                                   "--project", "p", "--", "--token", "geti_pat_secret")
    assert code == 2 and out == ""
    assert "comes from the Secret" in err and "geti_pat_secret" not in err


async def test_committed_job_yaml_is_the_documented_render():
    readme = (ROOT / "deploy" / "k8s" / "README.md").read_text()
    m = re.search(r"`job.yaml` in this folder is `(geti-bulk k8s-manifest[^`]*)`", readme,
                  re.S)
    assert m, "deploy/k8s/README.md names the command that made job.yaml"
    argv = shlex.split(" ".join(m[1].split()))
    code, out, err = await run_cli(*argv[1:])
    assert code == 0, err
    committed = (ROOT / "deploy" / "k8s" / "job.yaml").read_text()
    assert committed == out
    [doc] = [d for d in yaml.safe_load_all(committed) if d]
    check_job(doc, 4)
