"""`geti-bulk k8s-manifest`: a Kubernetes Indexed Job that runs N `--shard K/N` uploads.

Pod K (0-based, `JOB_COMPLETION_INDEX`) runs `geti-bulk upload --shard K/N` over the
dataset volume, mounted read-only, with its journal and report at
`/journals/shard-K-of-N.sqlite` on a persistent volume, so a pod that is killed,
evicted or loses its node is replaced by one with the same index that resumes from
that journal. The token comes from a Secret through the environment, never the
command line (`ps` and `kubectl describe` show the arguments). See deploy/k8s/README.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

INDEX_ANNOTATION = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
DATA_MOUNT = "/data"
JOURNAL_MOUNT = "/journals"


@dataclass(frozen=True, slots=True)
class JobSpec:
    shards: int
    host: str
    project: str
    image: str = "ghcr.io/example/geti-bulk:0.1.0"
    name: str = "geti-bulk-upload"
    namespace: str | None = None
    dataset: str | None = None              # Geti dataset (default: the training dataset)
    source: str = "."                       # path of the tree inside the dataset volume
    data_claim: str = "geti-bulk-dataset"   # PVC holding the dataset (mounted read-only)
    journal_claim: str = "geti-bulk-journals"   # PVC for journals and reports (RWX)
    secret: str = "geti-bulk-token"         # Secret with the token ...
    secret_key: str = "token"               # ... under this key
    backoff_per_index: int = 6
    extra_args: tuple[str, ...] = field(default=())   # more `geti-bulk upload` options


def journal_path(spec: JobSpec, index: str = "$(JOB_COMPLETION_INDEX)") -> str:
    return f"{JOURNAL_MOUNT}/shard-{index}-of-{spec.shards}.sqlite"


def job_manifest(spec: JobSpec) -> dict[str, Any]:
    """The Job as a dict (what `render` dumps)."""
    if spec.shards < 1:
        raise ValueError("--shards: must be at least 1")
    if any(a == "--token" or a.startswith("--token=") for a in spec.extra_args):
        raise ValueError("--token: the token comes from the Secret (--secret), never from "
                         "the command line, which `ps` and `kubectl describe` show")
    inner = spec.source.strip("/")
    source = DATA_MOUNT if inner in ("", ".") else f"{DATA_MOUNT}/{inner}"
    args = ["upload", source,
            "--shard", f"$(JOB_COMPLETION_INDEX)/{spec.shards}",
            "--journal", journal_path(spec),
            "--progress", "plain", "-q", *spec.extra_args]
    env: list[dict[str, Any]] = [
        # what the Job controller sets anyway; named here so that the $(…) references in
        # the arguments are plainly defined
        {"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {"fieldPath": INDEX_ANNOTATION}}},
        {"name": "GETI_HOST", "value": spec.host},
        {"name": "GETI_PROJECT", "value": spec.project},
    ]
    if spec.dataset:
        env.append({"name": "GETI_DATASET", "value": spec.dataset})
    env.append({"name": "GETI_TOKEN", "valueFrom": {"secretKeyRef": {
        "name": spec.secret, "key": spec.secret_key}}})
    metadata: dict[str, Any] = {"name": spec.name,
                                "labels": {"app.kubernetes.io/name": "geti-bulk"}}
    if spec.namespace:
        metadata["namespace"] = spec.namespace
    container = {
        "name": "geti-bulk",
        "image": spec.image,
        "command": ["geti-bulk"],
        "args": args,
        "env": env,
        "volumeMounts": [
            {"name": "dataset", "mountPath": DATA_MOUNT, "readOnly": True},
            {"name": "journals", "mountPath": JOURNAL_MOUNT},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        "resources": {"requests": {"cpu": "500m", "memory": "256Mi"},
                      "limits": {"memory": "1Gi"}},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}},
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {
            "completionMode": "Indexed",
            "completions": spec.shards,
            "parallelism": spec.shards,
            # a failed pod is replaced by one with the same index, which resumes from the
            # index's journal; each index has its own budget of retries (Kubernetes ≥ 1.29)
            "backoffLimitPerIndex": spec.backoff_per_index,
            "podFailurePolicy": {"rules": [
                # evicted, preempted, drained: resume without spending a retry
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
                # exit 1: the run ended, some files failed for good (see `status`)
                {"action": "FailIndex", "onExitCodes": {
                    "containerName": "geti-bulk", "operator": "In", "values": [1]}},
            ]},
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": "geti-bulk"}},
                "spec": {
                    "restartPolicy": "Never",
                    # SIGTERM (eviction, drain) lets the uploads in flight finish first
                    "terminationGracePeriodSeconds": 60,
                    "securityContext": {"runAsUser": 10001, "runAsGroup": 10001,
                                        "fsGroup": 10001},
                    "containers": [container],
                    "volumes": [
                        {"name": "dataset", "persistentVolumeClaim": {
                            "claimName": spec.data_claim, "readOnly": True}},
                        {"name": "journals", "persistentVolumeClaim": {
                            "claimName": spec.journal_claim}},
                        {"name": "tmp", "emptyDir": {}},
                    ],
                },
            },
        },
    }


def render(spec: JobSpec) -> str:
    head = (f"# geti-bulk: {spec.shards} shards as a Kubernetes Indexed Job; pod K runs "
            f"--shard K/{spec.shards}.\n# Made by `geti-bulk k8s-manifest`; see "
            "deploy/k8s/README.md.\n")
    body: str = yaml.safe_dump(job_manifest(spec), sort_keys=False, width=100)
    return head + body
