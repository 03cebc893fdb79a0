"""The pure builders against the pod contract (docs/contracts.md).

What a worker's process sees (env, command, volumes, limits) and what the cluster sees
(names, labels, owner, security) are asserted field by field; the integration tests then
show the API server admitting these manifests under the restricted Pod Security profile.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from trainyard_operator.api import GpuChoice, TrainingJob, TrainingJobStatus
from trainyard_operator.api.constants import RESERVED_ENV, RESERVED_ENV_PREFIXES
from trainyard_operator.builders import BuildSettings
from trainyard_operator.builders.env import trainer_config
from trainyard_operator.builders.podgroup import format_quantity, pod_group
from trainyard_operator.builders.pods import worker_pod
from trainyard_operator.builders.service import headless_service
from trainyard_trainer.config import load_config_json

SETTINGS = BuildSettings(trainer_image="registry.example/trainer:1")

CONTRACT_ENV = [
    "PET_NNODES",
    "PET_NPROC_PER_NODE",
    "PET_NODE_RANK",
    "PET_MASTER_ADDR",
    "PET_MASTER_PORT",
    "PET_MAX_RESTARTS",
    "MASTER_ADDR",
    "MASTER_PORT",
    "NODE_RANK",
    "WORLD_SIZE",
    "TRAINYARD_JOB",
    "TRAINYARD_NAMESPACE",
    "TRAINYARD_RESTART",
    "TRAINYARD_GPUS",
    "TRAINYARD_CONFIG",
    "TRAINYARD_OUTPUT_DIR",
    "TRAINYARD_METRICS_PORT",
    "TRAINYARD_TERMINATION_LOG",
    "TRAINYARD_LOG_FORMAT",
    "PYTHONUNBUFFERED",
]


def make_job(name: str = "digits", **spec: Any) -> TrainingJob:
    return TrainingJob.from_object(
        {
            "apiVersion": "trainyard.dev/v1alpha1",
            "kind": "TrainingJob",
            "metadata": {"name": name, "namespace": "team-a", "uid": "uid-1", "generation": 1},
            "spec": spec,
        }
    )


def env_of(pod: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in pod["spec"]["containers"][0]["env"]}


def test_worker_env_follows_the_contract_for_each_rank() -> None:
    job = make_job(workers=2)
    pods = [worker_pod(job, i, 3, SETTINGS) for i in range(2)]
    for i, pod in enumerate(pods):
        names = [e["name"] for e in pod["spec"]["containers"][0]["env"]]
        assert names == CONTRACT_ENV
        env = env_of(pod)
        assert env["PET_NNODES"] == "2"
        assert env["PET_NPROC_PER_NODE"] == "1"
        assert env["PET_NODE_RANK"] == env["NODE_RANK"] == str(i)
        assert env["PET_MASTER_ADDR"] == env["MASTER_ADDR"] == "digits-worker-0.digits.team-a.svc"
        assert env["PET_MASTER_PORT"] == env["MASTER_PORT"] == "29500"
        assert env["PET_MAX_RESTARTS"] == "0"
        assert env["WORLD_SIZE"] == "2"
        assert env["TRAINYARD_JOB"] == "digits"
        assert env["TRAINYARD_NAMESPACE"] == "team-a"
        assert env["TRAINYARD_RESTART"] == "3"
        assert env["TRAINYARD_GPUS"] == "0"
        assert env["TRAINYARD_OUTPUT_DIR"] == "/output"
        assert env["TRAINYARD_METRICS_PORT"] == "9400"
        assert env["TRAINYARD_TERMINATION_LOG"] == "/dev/termination-log"
        assert env["PYTHONUNBUFFERED"] == "1"
        assert "TRAINYARD_METRICS_HOST" not in env  # unset = 0.0.0.0 in a real pod


def test_auto_procs_follow_gpus_and_world_size_counts_every_process() -> None:
    env = env_of(worker_pod(make_job(workers=3, resources={"gpus": 4}), 2, 0, SETTINGS))
    assert env["PET_NPROC_PER_NODE"] == "4"
    assert env["WORLD_SIZE"] == "12"
    env = env_of(worker_pod(make_job(workers=3, procsPerWorker=2), 0, 0, SETTINGS))
    assert env["PET_NPROC_PER_NODE"] == "2"
    assert env["WORLD_SIZE"] == "6"


def test_gpus_auto_builds_what_the_operator_chose() -> None:
    """The pods of a `gpus: auto` job carry status.gpus: limits, the GPU toleration, one
    process per GPU and TRAINYARD_GPUS, which the trainer follows (nccl or gloo)."""
    job = make_job(workers=2, resources={"gpus": "auto"})
    chosen = job.model_copy(
        update={"status": TrainingJobStatus(gpus=GpuChoice(per_worker=4, reason="GpusFit"))}
    )
    pod = worker_pod(chosen, 1, 0, SETTINGS)
    container = pod["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "4"
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "4"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["spec"][
        "tolerations"
    ]
    env = env_of(pod)
    assert (env["PET_NPROC_PER_NODE"], env["WORLD_SIZE"], env["TRAINYARD_GPUS"]) == ("4", "8", "4")
    # chosen 0 (or not chosen yet): a CPU pod, one process, gloo
    cpu = worker_pod(job, 0, 0, SETTINGS)
    assert "nvidia.com/gpu" not in cpu["spec"]["containers"][0]["resources"]["limits"]
    assert "tolerations" not in cpu["spec"]
    env = env_of(cpu)
    assert (env["PET_NPROC_PER_NODE"], env["WORLD_SIZE"], env["TRAINYARD_GPUS"]) == ("1", "2", "0")
    # a PodGroup is made once per job, so it does not carry a choice that may change
    group = pod_group(chosen, "scheduler-plugins")
    assert "nvidia.com/gpu" not in group["spec"]["minResources"]
    exact = pod_group(make_job(workers=2, resources={"gpus": 2}), "scheduler-plugins")
    assert exact["spec"]["minResources"]["nvidia.com/gpu"] == "4"


def test_trainer_config_is_what_the_trainer_parses() -> None:
    job = make_job(
        trainer={"epochs": 6, "batchSize": 32},
        compression=[{"prune": {"amount": 0.4}}, {"distill": {}}, {"quantize": {}}],
        output={"path": "/results"},
    )
    raw = env_of(worker_pod(job, 0, 0, SETTINGS))["TRAINYARD_CONFIG"]
    config = json.loads(raw)
    assert config == trainer_config(job)
    assert config["compression"][0] == {
        "prune": {"amount": 0.4, "method": "global-unstructured", "fineTuneEpochs": 2}
    }
    assert config["output"] == {"path": "/results"}
    parsed = load_config_json(raw)  # the trainer's own parser, strict about unknown fields
    assert parsed.job == "digits"
    assert parsed.trainer.epochs == 6
    assert parsed.trainer.batch_size == 32
    assert [s.name for s in parsed.compression] == ["prune", "distill", "quantize"]
    assert parsed.output.path == "/results"


def test_user_env_follows_the_contract() -> None:
    job = make_job(
        env=[
            {"name": "HF_HOME", "value": "/cache"},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ]
    )
    env = worker_pod(job, 0, 0, SETTINGS)["spec"]["containers"][0]["env"]
    assert [e["name"] for e in env] == [*CONTRACT_ENV, "HF_HOME", "POD"]
    assert env[-1] == {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}


def test_names_dns_and_restart_policy() -> None:
    pod = worker_pod(make_job(workers=4), 3, 1, SETTINGS)
    assert pod["metadata"]["name"] == "digits-worker-3"
    assert pod["metadata"]["namespace"] == "team-a"
    assert pod["spec"]["hostname"] == "digits-worker-3"
    assert pod["spec"]["subdomain"] == "digits"
    assert pod["spec"]["restartPolicy"] == "Never"


def test_labels_and_owner_reference() -> None:
    pod = worker_pod(make_job(workers=2), 1, 2, SETTINGS)
    assert pod["metadata"]["labels"] == {
        "trainyard.dev/job-name": "digits",
        "trainyard.dev/worker-index": "1",
        "trainyard.dev/restart": "2",
        "app.kubernetes.io/managed-by": "trainyard-operator",
    }
    assert pod["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "trainyard.dev/v1alpha1",
            "kind": "TrainingJob",
            "name": "digits",
            "uid": "uid-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def test_default_command_image_and_ports() -> None:
    container0 = worker_pod(make_job(workers=2), 0, 0, SETTINGS)["spec"]["containers"][0]
    container1 = worker_pod(make_job(workers=2), 1, 0, SETTINGS)["spec"]["containers"][0]
    assert container0["name"] == "trainer"
    assert container0["image"] == "registry.example/trainer:1"
    assert container0["command"] == ["python", "-m", "trainyard_trainer.launch"]
    assert "args" not in container0
    assert {p["name"]: p["containerPort"] for p in container0["ports"]} == {
        "metrics": 9400,
        "rdzv": 29500,
    }
    assert {p["name"] for p in container1["ports"]} == {"metrics"}
    assert container0["terminationMessagePath"] == "/dev/termination-log"
    assert container0["terminationMessagePolicy"] == "FallbackToLogsOnError"


def test_own_image_command_and_args() -> None:
    job = make_job(image="me/app:2", command=["python", "train.py"], args=["--fast"])
    container = worker_pod(job, 0, 0, SETTINGS)["spec"]["containers"][0]
    assert container["image"] == "me/app:2"
    assert container["command"] == ["python", "train.py"]
    assert container["args"] == ["--fast"]


def test_cpu_job_requests_no_gpu_and_does_not_tolerate_gpu_nodes() -> None:
    pod = worker_pod(make_job(resources={"cpu": "2", "memory": "1Gi"}), 0, 0, SETTINGS)
    resources = pod["spec"]["containers"][0]["resources"]
    assert resources == {
        "requests": {"cpu": "2", "memory": "1Gi"},
        "limits": {"cpu": "2", "memory": "1Gi"},
    }
    assert "tolerations" not in pod["spec"]


def test_gpu_job_gets_gpu_limits_and_the_taint_toleration() -> None:
    job = make_job(
        resources={"gpus": 2},
        scheduling={"tolerations": [{"key": "spot", "operator": "Exists"}]},
    )
    pod = worker_pod(job, 0, 0, SETTINGS)
    resources = pod["spec"]["containers"][0]["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == "2"
    assert resources["requests"]["nvidia.com/gpu"] == "2"
    assert pod["spec"]["tolerations"] == [
        {"key": "spot", "operator": "Exists"},
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
    ]
    # Placement is left to the scheduler: only GPU nodes have nvidia.com/gpu to give.
    assert "nodeSelector" not in pod["spec"]


def test_restricted_security_and_no_api_credentials() -> None:
    spec = worker_pod(make_job(), 0, 0, SETTINGS)["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["enableServiceLinks"] is False
    assert spec["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "fsGroup": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    container = spec["containers"][0]["securityContext"]
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"] == {"drop": ["ALL"]}
    assert container["runAsNonRoot"] is True


def test_output_volume_is_an_empty_dir_or_the_claim() -> None:
    spec = worker_pod(make_job(), 0, 0, SETTINGS)["spec"]
    assert spec["volumes"] == [
        {"name": "output", "emptyDir": {}},
        {"name": "dshm", "emptyDir": {"medium": "Memory"}},
    ]
    assert spec["containers"][0]["volumeMounts"] == [
        {"name": "output", "mountPath": "/output"},
        {"name": "dshm", "mountPath": "/dev/shm"},
    ]
    job = make_job(output={"volumeClaimName": "ckpt", "path": "/data/out"})
    spec = worker_pod(job, 0, 0, SETTINGS)["spec"]
    assert spec["volumes"][0] == {"name": "output", "persistentVolumeClaim": {"claimName": "ckpt"}}
    assert spec["containers"][0]["volumeMounts"][0] == {"name": "output", "mountPath": "/data/out"}
    assert env_of(worker_pod(job, 0, 0, SETTINGS))["TRAINYARD_OUTPUT_DIR"] == "/data/out"


def test_scheduling_fields_pass_through() -> None:
    job = make_job(
        scheduling={
            "nodeSelector": {"pool": "train"},
            "affinity": {"nodeAffinity": {"x": 1}},
            "priorityClassName": "high",
            "schedulerName": "custom",
        }
    )
    spec = worker_pod(job, 0, 0, SETTINGS)["spec"]
    assert spec["nodeSelector"] == {"pool": "train"}
    assert spec["affinity"] == {"nodeAffinity": {"x": 1}}
    assert spec["priorityClassName"] == "high"
    assert spec["schedulerName"] == "custom"


def test_pod_template_overrides_merge_without_breaking_the_contract() -> None:
    job = make_job(
        podTemplate={
            "metadata": {
                "labels": {"team": "vision", "trainyard.dev/job-name": "other"},
                "annotations": {"fake.trainyard.dev/run-seconds": "5"},
            },
            "spec": {
                "volumes": [{"name": "data", "configMap": {"name": "data"}}],
                "securityContext": {"runAsUser": 2000},
                "hostname": "elsewhere",
                "containers": [
                    {
                        "name": "trainer",
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                        "env": [
                            {"name": "EXTRA", "value": "1"},
                            {"name": "WORLD_SIZE", "value": "99"},
                        ],
                        "envFrom": [{"secretRef": {"name": "creds"}}],
                    },
                    {"name": "sidecar", "image": "busybox"},
                ],
            },
        }
    )
    pod = worker_pod(job, 0, 0, SETTINGS)
    meta, spec = pod["metadata"], pod["spec"]
    assert meta["labels"]["team"] == "vision"
    assert meta["labels"]["trainyard.dev/job-name"] == "digits"
    assert meta["annotations"] == {"fake.trainyard.dev/run-seconds": "5"}
    assert [v["name"] for v in spec["volumes"]] == ["output", "dshm", "data"]
    assert spec["securityContext"]["runAsUser"] == 2000
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["hostname"] == "digits-worker-0"
    trainer, sidecar = spec["containers"]
    assert trainer["name"] == "trainer"
    assert [m["mountPath"] for m in trainer["volumeMounts"]] == ["/output", "/dev/shm", "/data"]
    assert trainer["envFrom"] == [{"secretRef": {"name": "creds"}}]
    env = env_of(pod)
    assert env["EXTRA"] == "1"
    assert env["WORLD_SIZE"] == "1"
    assert [e["name"] for e in trainer["env"]].count("WORLD_SIZE") == 1
    assert sidecar == {
        "name": "sidecar",
        "image": "busybox",
        # the restricted profile's settings, as the trainer has them
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
        },
    }


def test_builders_do_not_share_state_between_calls() -> None:
    job = make_job(scheduling={"affinity": {"nodeAffinity": {"x": 1}}})
    first = worker_pod(job, 0, 0, SETTINGS)
    first["spec"]["affinity"]["nodeAffinity"]["x"] = 2
    first["spec"]["containers"][0]["env"].clear()
    again = worker_pod(job, 0, 0, SETTINGS)
    assert again["spec"]["affinity"] == {"nodeAffinity": {"x": 1}}
    assert len(again["spec"]["containers"][0]["env"]) == len(CONTRACT_ENV)


@pytest.mark.parametrize(("index", "restart"), [(-1, 0), (2, 0), (0, -1)])
def test_bad_worker_index_or_restart_is_refused(index: int, restart: int) -> None:
    with pytest.raises(ValueError, match=r"index|restart"):
        worker_pod(make_job(workers=2), index, restart, SETTINGS)


def test_headless_service() -> None:
    service = headless_service(make_job())
    assert service["metadata"]["name"] == "digits"
    assert service["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    spec = service["spec"]
    assert spec["clusterIP"] == "None"
    assert spec["publishNotReadyAddresses"] is True
    assert spec["selector"] == {"trainyard.dev/job-name": "digits"}
    assert {(p["name"], p["port"]) for p in spec["ports"]} == {("rdzv", 29500), ("metrics", 9400)}


def test_scheduler_plugins_pod_group_and_membership() -> None:
    job = make_job(workers=4, resources={"cpu": "500m", "memory": "1536Mi", "gpus": 2})
    group = pod_group(job, "scheduler-plugins")
    assert group["apiVersion"] == "scheduling.x-k8s.io/v1alpha1"
    assert group["kind"] == "PodGroup"
    assert group["metadata"]["name"] == "digits"
    assert group["metadata"]["ownerReferences"][0]["controller"] is True
    assert group["spec"] == {
        "minMember": 4,
        "minResources": {"cpu": "2", "memory": "6Gi", "nvidia.com/gpu": "8"},
        "scheduleTimeoutSeconds": 600,
    }
    settings = BuildSettings(trainer_image="x", pod_group_flavor="scheduler-plugins")
    pod = worker_pod(job, 0, 0, settings)
    assert pod["metadata"]["labels"]["scheduling.x-k8s.io/pod-group"] == "digits"
    assert "schedulerName" not in pod["spec"]


def test_volcano_pod_group_carries_queue_and_priority() -> None:
    job = make_job(
        workers=2,
        resources={"cpu": "1500m", "memory": "1G"},
        scheduling={"queueName": "research", "priorityClassName": "high"},
    )
    group = pod_group(job, "volcano")
    assert group["apiVersion"] == "scheduling.volcano.sh/v1beta1"
    assert group["spec"] == {
        "minMember": 2,
        "minResources": {"cpu": "3", "memory": "2G"},
        "queue": "research",
        "priorityClassName": "high",
    }
    pod = worker_pod(job, 1, 0, BuildSettings(trainer_image="x", pod_group_flavor="volcano"))
    annotations = pod["metadata"]["annotations"]
    assert annotations["scheduling.k8s.io/group-name"] == "digits"
    assert annotations["scheduling.volcano.sh/group-name"] == "digits"
    assert annotations["scheduling.volcano.sh/queue-name"] == "research"
    assert pod["spec"]["schedulerName"] == "volcano"
    # Kueue sees one workload of two pods.
    assert pod["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "research"
    assert pod["metadata"]["labels"]["kueue.x-k8s.io/pod-group-name"] == "digits"
    assert annotations["kueue.x-k8s.io/pod-group-total-count"] == "2"


def test_gang_disabled_or_absent_leaves_pods_alone() -> None:
    job = make_job(scheduling={"gang": "Disabled"})
    pod = worker_pod(job, 0, 0, BuildSettings(trainer_image="x", pod_group_flavor="volcano"))
    assert "annotations" not in pod["metadata"]
    assert "schedulerName" not in pod["spec"]
    pod = worker_pod(make_job(), 0, 0, SETTINGS)
    assert "annotations" not in pod["metadata"]


@pytest.mark.parametrize(
    ("value", "binary", "text"),
    [
        (Decimal(2), False, "2"),
        (Decimal("1.5"), False, "1500m"),
        (Decimal("0.0005"), False, "1m"),
        (Decimal(3 * 1024**3), True, "3Gi"),
        (Decimal(1536 * 1024**2), True, "1536Mi"),
        (Decimal(2 * 10**9), True, "2G"),
        (Decimal(1001), True, "1001"),
    ],
)
def test_format_quantity(value: Decimal, binary: bool, text: str) -> None:
    assert format_quantity(value, binary=binary) == text


def _contract_table_names() -> list[str]:
    """Variable names in the env table of docs/contracts.md (first column, in order)."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "contracts.md").read_text()
    section = text.split("## Worker pod environment", 1)[1].split("\n## ", 1)[0]
    names: list[str] = []
    for line in section.splitlines():
        if line.startswith("| `"):
            names += re.findall(r"`([A-Z_]+)`", line.split("|")[1])
    return names


def test_env_matches_the_documented_contract() -> None:
    documented = _contract_table_names()
    # TRAINYARD_METRICS_HOST is documented as unset in real pods (the local agent sets it).
    assert sorted(n for n in documented if n != "TRAINYARD_METRICS_HOST") == sorted(CONTRACT_ENV)


def test_every_contract_name_is_reserved_at_admission() -> None:
    for name in [*CONTRACT_ENV, "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE"]:
        assert name in RESERVED_ENV or name.startswith(RESERVED_ENV_PREFIXES), name
