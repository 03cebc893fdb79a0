"""What the API server decides about TrainingJobs, with the generated CRD installed.

No operator runs here: these are the answers a user gets from `kubectl` alone -- wrong
manifests rejected at admission with a message naming the field, defaults filled in,
`kubectl explain` text, printer columns, the fields that are frozen while a job runs -- and
the builders' pods admitted under the restricted Pod Security profile and placed by the real
scheduler (GPU pods on GPU nodes only).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from trainyard_local.pytest_plugin import Kubectl, wait_for
from trainyard_operator.api import TrainingJob
from trainyard_operator.builders import BuildSettings
from trainyard_operator.builders.pods import worker_pod
from trainyard_operator.builders.service import headless_service

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))

pytestmark = pytest.mark.usefixtures("crd_installed")


def manifest(name: str = "bad", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "trainyard.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {"workers": 2, "resources": {"cpu": "100m", "memory": "64Mi"}, **spec},
    }


def with_spec(path: str, value: Any) -> dict[str, Any]:
    """A valid manifest with one spec field (dotted path) set to `value`."""
    body = manifest()
    node = body["spec"]
    *parents, leaf = path.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    return body


# Each manifest is wrong in exactly one field; the API server's answer must name it.
BAD: dict[str, tuple[dict[str, Any], str]] = {
    "name-too-long": (manifest("x" * 49), "metadata.name may have at most 48 characters"),
    "name-not-dns-1035": (manifest("9lives"), "metadata.name must be a DNS-1035 label"),
    "workers-zero": (with_spec("workers", 0), "spec.workers"),
    "cpu-zero": (with_spec("resources.cpu", "0"), "spec.resources.cpu must be greater than 0"),
    "memory-zero": (
        with_spec("resources.memory", "0Gi"),
        "spec.resources.memory must be greater than 0",
    ),
    "scheduling-timeout-huge": (
        with_spec("runPolicy.schedulingTimeoutSeconds", 10**14),
        "spec.runPolicy.schedulingTimeoutSeconds",
    ),
    "ttl-huge": (
        with_spec("runPolicy.ttlSecondsAfterFinished", 10**12),
        "spec.runPolicy.ttlSecondsAfterFinished",
    ),
    "queue-name-too-long": (with_spec("scheduling.queueName", "q" * 64), "queueName"),
    "output-path-root": (with_spec("output.path", "/"), "spec.output.path must not be /"),
    "output-path-proc": (with_spec("output.path", "/proc/x"), "spec.output.path must not be /"),
    "workers-over-1024": (with_spec("workers", 2000), "spec.workers"),
    "procs-not-auto": (with_spec("procsPerWorker", "four"), "spec.procsPerWorker"),
    "procs-over-gpus": (
        manifest(procsPerWorker=4, resources={"gpus": 2, "cpu": "1", "memory": "1Gi"}),
        "spec.procsPerWorker may not exceed spec.resources.gpus",
    ),
    "env-pet-reserved": (
        with_spec("env", [{"name": "PET_NNODES", "value": "9"}]),
        "spec.env[0].name",
    ),
    "env-world-size-reserved": (
        with_spec("env", [{"name": "WORLD_SIZE", "value": "9"}]),
        "WORLD_SIZE is reserved",
    ),
    "env-trainyard-reserved": (
        with_spec("env", [{"name": "TRAINYARD_CONFIG", "value": "{}"}]),
        "TRAINYARD_CONFIG is reserved",
    ),
    "env-value-and-value-from": (
        with_spec(
            "env",
            [
                {
                    "name": "A",
                    "value": "1",
                    "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}},
                }
            ],
        ),
        "spec.env[0].valueFrom",
    ),
    "env-duplicate-name": (
        with_spec("env", [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]),
        "spec.env[1]",
    ),
    "stage-two-kinds": (
        with_spec("compression", [{"prune": {}, "quantize": {}}]),
        "spec.compression[0]",
    ),
    "stage-no-kind": (with_spec("compression", [{}]), "spec.compression[0]"),
    "quantize-not-last": (
        with_spec("compression", [{"quantize": {}}, {"prune": {}}]),
        "quantize must be the last stage",
    ),
    "prune-twice": (
        with_spec("compression", [{"prune": {}}, {"prune": {}}]),
        "at most one prune stage",
    ),
    "prune-amount-over-1": (
        with_spec("compression", [{"prune": {"amount": 1.5}}]),
        "spec.compression[0].prune.amount",
    ),
    "static-quantize-on-mlp": (
        with_spec("compression", [{"quantize": {"method": "static"}}]),
        "static quantization needs model cnn",
    ),
    "mnist-without-data-path": (
        with_spec("trainer", {"dataset": "mnist"}),
        "spec.trainer.dataPath",
    ),
    "unknown-model": (with_spec("trainer", {"model": "resnet"}), "spec.trainer.model"),
    "transformer-on-images": (
        with_spec("trainer", {"model": "transformer", "dataset": "digits"}),
        "spec.trainer.model: transformer needs a token dataset",
    ),
    "fp16-on-cpu": (with_spec("trainer", {"precision": "fp16"}), "spec.trainer.precision"),
    "learning-rate-zero": (with_spec("trainer", {"learningRate": 0}), "spec.trainer.learningRate"),
    "cpu-not-a-quantity": (
        with_spec("resources", {"cpu": "lots", "memory": "1Gi"}),
        "spec.resources.cpu",
    ),
    "memory-not-a-quantity": (
        with_spec("resources", {"cpu": "1", "memory": "2GB"}),
        "spec.resources.memory",
    ),
    "gpus-over-64": (
        with_spec("resources", {"gpus": 100, "cpu": "1", "memory": "1Gi"}),
        "spec.resources.gpus",
    ),
    "gpus-not-auto": (
        with_spec("resources", {"gpus": "all", "cpu": "1", "memory": "1Gi"}),
        'spec.resources.gpus must be "auto" or an integer from 0 to 64',
    ),
    "fp16-with-auto-gpus": (
        manifest(
            resources={"gpus": "auto", "cpu": "1", "memory": "1Gi"},
            trainer={"precision": "fp16"},
        ),
        '"auto" may choose 0',
    ),
    "restart-policy-always": (
        with_spec("runPolicy", {"restartPolicy": "Always"}),
        "spec.runPolicy.restartPolicy",
    ),
    "clean-pod-policy": (
        with_spec("runPolicy", {"cleanPodPolicy": "Some"}),
        "spec.runPolicy.cleanPodPolicy",
    ),
    "negative-backoff": (
        with_spec("runPolicy", {"backoffLimit": -1}),
        "spec.runPolicy.backoffLimit",
    ),
    "zero-scheduling-timeout": (
        with_spec("runPolicy", {"schedulingTimeoutSeconds": 0}),
        "spec.runPolicy.schedulingTimeoutSeconds",
    ),
    "gang-mode": (with_spec("scheduling", {"gang": "Always"}), "spec.scheduling.gang"),
    "relative-output-path": (with_spec("output", {"path": "out"}), "spec.output.path"),
    "unknown-field": (with_spec("replicas", 3), "spec.replicas"),
    # shapes the operator merges into its pods (found by bench/admission_fuzz.py: admitted,
    # they stalled the job with the pod builder raising)
    "pod-template-containers-not-a-list": (
        with_spec("podTemplate.spec.containers", "abc"),
        "spec.podTemplate.spec.containers",
    ),
    "pod-template-container-not-an-object": (
        with_spec("podTemplate.spec.containers", [5]),
        "spec.podTemplate.spec.containers[0]",
    ),
    "pod-template-env-not-objects": (
        with_spec("podTemplate.spec.containers", [{"name": "trainer", "env": ["X=1"]}]),
        "spec.podTemplate.spec.containers[0].env[0]",
    ),
    "pod-template-init-container-security-context": (
        with_spec("podTemplate.spec.initContainers", [{"name": "i", "securityContext": "x"}]),
        "spec.podTemplate.spec.initContainers[0].securityContext",
    ),
    "pod-template-volumes-not-a-list": (
        with_spec("podTemplate.spec.volumes", "x"),
        "spec.podTemplate.spec.volumes",
    ),
}


@pytest.fixture
def dry_run(kubectl: Kubectl, namespace: str) -> Callable[[dict[str, Any]], Any]:
    def apply(body: dict[str, Any]) -> Any:
        return kubectl(
            "apply",
            "--dry-run=server",
            "-n",
            namespace,
            "-o",
            "json",
            "-f",
            "-",
            input=json.dumps(body),
        )

    return apply


def test_at_least_fifteen_distinct_mistakes_are_covered() -> None:
    assert len(BAD) >= 15


@pytest.mark.parametrize("case", list(BAD))
def test_wrong_field_is_rejected_with_its_name(
    case: str, dry_run: Callable[[dict[str, Any]], Any]
) -> None:
    body, field = BAD[case]
    done = dry_run(body)
    assert done.returncode != 0, f"{case} was accepted: {done.stdout[:300]}"
    assert field in done.stderr, done.stderr


def test_the_same_manifests_fixed_are_accepted(dry_run: Callable[[dict[str, Any]], Any]) -> None:
    """Guards the table above: the base manifest itself is valid."""
    done = dry_run(manifest("fine"))
    assert done.returncode == 0, done.stderr


def test_defaults_are_filled_in(dry_run: Callable[[dict[str, Any]], Any]) -> None:
    body = {
        "apiVersion": "trainyard.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "minimal"},
        "spec": {"compression": [{"prune": {}}]},
    }
    done = dry_run(body)
    assert done.returncode == 0, done.stderr
    spec = json.loads(done.stdout)["spec"]
    assert spec["workers"] == 1
    assert spec["procsPerWorker"] == "auto"
    assert spec["resources"] == {"gpus": 0, "cpu": "1", "memory": "2Gi"}
    assert spec["trainer"]["model"] == "mlp"
    assert spec["trainer"]["dataset"] == "digits"
    assert spec["trainer"]["epochs"] == 10
    assert spec["compression"] == [
        {"prune": {"amount": 0.5, "method": "global-unstructured", "fineTuneEpochs": 2}}
    ]
    assert spec["runPolicy"] == {
        "restartPolicy": "OnFailure",
        "backoffLimit": 3,
        "cleanPodPolicy": "Running",
        "schedulingTimeoutSeconds": 600,
    }
    assert spec["output"] == {"volumeClaimName": "", "path": "/output"}
    # What the server stores is exactly what the operator's models assume.
    assert TrainingJob.from_object(json.loads(done.stdout)).spec.to_wire() == spec


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_examples_pass_server_side_dry_run(
    path: Path, dry_run: Callable[[dict[str, Any]], Any]
) -> None:
    body = yaml.safe_load(path.read_text())
    done = dry_run(body)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["metadata"]["name"] == body["metadata"]["name"]


def test_kubectl_explain_shows_the_descriptions(kubectl: Kubectl) -> None:
    def explained() -> str | None:
        done = kubectl("explain", "tj.spec.runPolicy")
        # The server publishes a new CRD's OpenAPI a moment after it is Established.
        return done.stdout if done.returncode == 0 else None

    text = str(wait_for("kubectl explain tj.spec.runPolicy", explained, timeout=60))
    assert "Failure, time and clean-up policy" in text
    assert "backoffLimit" in text
    assert "BackoffLimitExceeded" in text


def test_printer_columns_show_the_status(kubectl: Kubectl, namespace: str) -> None:
    created = kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest("shown")))
    assert created.returncode == 0, created.stderr
    status = {
        "status": {
            "phase": "Running",
            "workers": {"desired": 2, "ready": 1, "summary": "1/2"},
            "restarts": 1,
            "progress": {"stage": "train", "percent": 45, "loss": 0.31, "accuracy": 0.93},
        }
    }
    patched = kubectl(
        "patch",
        "tj",
        "shown",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(status),
    )
    assert patched.returncode == 0, patched.stderr
    table = kubectl("get", "tj", "-n", namespace).stdout.split()
    assert table[:7] == ["NAME", "PHASE", "WORKERS", "STAGE", "PROGRESS%", "RESTARTS", "AGE"]
    assert table[7:13] == ["shown", "Running", "1/2", "train", "45", "1"]
    wide = kubectl("get", "trainyard", "-n", namespace, "-o", "wide").stdout.split()
    assert wide[7:9] == ["LOSS", "ACCURACY"]
    assert wide[-2:] == ["0.31", "0.93"]


def _patch(kubectl: Kubectl, namespace: str, spec: dict[str, Any]) -> Any:
    return kubectl(
        "patch", "tj", "frozen", "-n", namespace, "--type=merge", "-p", json.dumps({"spec": spec})
    )


def test_shape_fields_change_only_while_suspended(kubectl: Kubectl, namespace: str) -> None:
    created = kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest("frozen")))
    assert created.returncode == 0, created.stderr

    for change in (
        {"workers": 3},
        {"procsPerWorker": 2},
        {"image": "me/other:2"},
        {"trainer": {"epochs": 99}},
        {"resources": {"cpu": "2"}},
        {"resources": {"gpus": "auto"}},  # int-or-string: compared without a type error
        {"env": [{"name": "A", "value": "1"}]},
        {"podTemplate": {"spec": {"containers": [{"name": "trainer", "image": "me/evil:1"}]}}},
    ):
        field = next(iter(change))
        rejected = _patch(kubectl, namespace, change)
        assert rejected.returncode != 0, f"{field} changed on a running job"
        assert f"spec.{field} may change only while the job is suspended" in rejected.stderr

    # Policy fields may change at any time.
    assert _patch(kubectl, namespace, {"runPolicy": {"backoffLimit": 5}}).returncode == 0
    # Suspending and reshaping in one update is allowed, and so is reshaping while suspended.
    assert _patch(kubectl, namespace, {"suspend": True, "workers": 4}).returncode == 0
    assert _patch(kubectl, namespace, {"trainer": {"epochs": 3}}).returncode == 0
    # Resuming with a new shape too; after that the shape is frozen again.
    assert _patch(kubectl, namespace, {"suspend": False, "workers": 3}).returncode == 0
    assert _patch(kubectl, namespace, {"workers": 1}).returncode != 0
    stored = json.loads(kubectl("get", "tj", "frozen", "-n", namespace, "-o", "json").stdout)
    assert stored["spec"]["workers"] == 3
    assert stored["spec"]["trainer"]["epochs"] == 3
    assert stored["spec"]["runPolicy"]["backoffLimit"] == 5


def test_a_plain_sidecar_passes_a_restricted_namespace(
    kubectl: Kubectl, restricted_namespace: str
) -> None:
    """A sidecar and an init container that set no securityContext get the restricted
    defaults the trainer has, so the worker pod is admitted where Pod Security is enforced."""
    plain = {"image": "registry.local/tool:1", "command": ["sleep", "infinity"]}
    body = manifest(
        "sidecar",
        workers=1,
        podTemplate={
            "spec": {
                "containers": [{"name": "a-proxy", **plain}],
                "initContainers": [{"name": "fetch", **plain}],
            }
        },
    )
    job = _create_job(kubectl, restricted_namespace, body)
    pod = worker_pod(job, 0, 0, BuildSettings(trainer_image="registry.local/trainer:test"))
    done = kubectl(
        "create", "--dry-run=server", "-n", restricted_namespace, "-f", "-", input=json.dumps(pod)
    )
    assert done.returncode == 0, done.stderr


def _create_job(kubectl: Kubectl, namespace: str, body: dict[str, Any]) -> TrainingJob:
    done = kubectl("apply", "-n", namespace, "-o", "json", "-f", "-", input=json.dumps(body))
    assert done.returncode == 0, done.stderr
    return TrainingJob.from_object(json.loads(done.stdout))


def _items(kubectl: Kubectl, *args: str) -> list[dict[str, Any]]:
    done = kubectl("get", *args, "-o", "json")
    assert done.returncode == 0, done.stderr
    items: list[dict[str, Any]] = json.loads(done.stdout)["items"]
    return items


def test_builder_children_are_admitted_and_placed_by_the_scheduler(
    kubectl: Kubectl, restricted_namespace: str
) -> None:
    """The pods pass restricted Pod Security; CPU pods avoid GPU nodes, GPU pods need them.

    No operator runs: the test creates the children itself, owned by real TrainingJobs.
    """
    ns = restricted_namespace
    settings = BuildSettings(trainer_image="registry.local/trainer:test")
    cpu_job = _create_job(kubectl, ns, manifest("cpu"))
    gpu_body = manifest("gpu", workers=1, resources={"gpus": 2, "cpu": "1", "memory": "1Gi"})
    gpu_job = _create_job(kubectl, ns, gpu_body)
    children: list[dict[str, Any]] = [headless_service(cpu_job)]
    children += [worker_pod(cpu_job, i, 0, settings) for i in range(2)]
    children.append(worker_pod(gpu_job, 0, 0, settings))
    for child in children:
        done = kubectl("create", "-n", ns, "-f", "-", input=json.dumps(child))
        assert done.returncode == 0, f"{child['metadata']['name']}: {done.stderr}"

    def placed() -> dict[str, str] | None:
        pods = _items(kubectl, "pods", "-n", ns)
        nodes = {p["metadata"]["name"]: p["spec"].get("nodeName", "") for p in pods}
        return nodes if len(nodes) == 3 and all(nodes.values()) else None

    nodes = wait_for("the scheduler to place the worker pods", placed)
    assert isinstance(nodes, dict)
    gpu_nodes = {
        n["metadata"]["name"]
        for n in _items(kubectl, "nodes")
        if n["metadata"].get("labels", {}).get("nvidia.com/gpu.present") == "true"
    }
    assert gpu_nodes, "the session cluster has GPU nodes"
    assert nodes["gpu-worker-0"] in gpu_nodes
    assert nodes["cpu-worker-0"] not in gpu_nodes
    assert nodes["cpu-worker-1"] not in gpu_nodes

    # Every child goes with its job (ownerReferences + the garbage collector).
    deleted = kubectl("delete", "tj", "cpu", "gpu", "-n", ns, "--wait=true")
    assert deleted.returncode == 0, deleted.stderr

    def gone() -> bool:
        return not _items(kubectl, "pods,services", "-n", ns)

    wait_for("the garbage collector to delete the children", gone)


def test_a_gpu_request_larger_than_any_node_is_admitted_but_unschedulable(
    kubectl: Kubectl, namespace: str
) -> None:
    """Admission allows up to 64 GPUs per worker; the scheduler says why 9 never fit on 8."""
    body = manifest("huge", workers=1, resources={"gpus": 9, "cpu": "1", "memory": "1Gi"})
    job = _create_job(kubectl, namespace, body)
    pod = worker_pod(job, 0, 0, BuildSettings(trainer_image="registry.local/trainer:test"))
    done = kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(pod))
    assert done.returncode == 0, done.stderr

    def unschedulable() -> str | None:
        got = kubectl("get", "pod", "huge-worker-0", "-n", namespace, "-o", "json")
        conditions = json.loads(got.stdout).get("status", {}).get("conditions", [])
        for cond in conditions:
            if cond["type"] == "PodScheduled" and cond.get("reason") == "Unschedulable":
                return str(cond.get("message", ""))
        return None

    message = wait_for("the scheduler to give up on the pod", unschedulable)
    assert "nvidia.com/gpu" in str(message)
