"""Trainyard on kind as users run it: the images, the operator in its pod, real kubelets.

What a user notices on a real cluster, each checked on the kind cluster of `kind_path`
(one control plane, two workers, the node image and both images built on this machine):
the operator pod is Ready under the chart's RBAC and serves metrics; the example job trains
DDP across the two nodes, worker 0 reached by its Service's DNS name; the kubelet enforces the
pod's security settings; `kubectl logs` and `kubectl exec` work while a job trains; a worker
deleted mid-training exits 143 after checkpointing and the gang resumes from the checkpoint
on a PersistentVolumeClaim; `helm upgrade` and `helm uninstall` leave nothing behind.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, watch

from integration.operator_fixtures import Jobs, wait_for
from kind.kubectl import Kubectl
from trainyard_local.demo import delete_job
from trainyard_local.kind import KindPath

# pytest-timeout counts the module fixture's set-up into the first test: on a cold machine
# that builds the node components, the node image and both images (about 30 minutes here)
pytestmark = [pytest.mark.kind, pytest.mark.slow, pytest.mark.timeout(3600)]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "digits-ddp.yaml"
SA_TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
# generous: images start on a busy 2-core machine; the bounds only stop a hung test
JOB_TIMEOUT = 900
PROBE_ROOT_FS = """import os
try:
    open('/probe', 'w')
except OSError as e:
    print(os.getuid(), e.strerror)
"""


def operator_pod(api: client.ApiClient, path: KindPath) -> client.V1Pod:
    pods = client.CoreV1Api(api).list_namespaced_pod(
        path.namespace, label_selector="app.kubernetes.io/name=trainyard"
    )
    assert len(pods.items) == 1, [p.metadata.name for p in pods.items]
    pod: client.V1Pod = pods.items[0]
    return pod


def test_operator_runs_in_its_pod_under_the_chart_rbac(
    kind_path: KindPath, kind_api: client.ApiClient, kind_kubectl: Kubectl
) -> None:
    pod = operator_pod(kind_api, kind_path)
    assert pod.status.phase == "Running"
    assert all(c.ready for c in pod.status.container_statuses)
    assert pod.spec.service_account_name == kind_path.release
    assert pod.spec.containers[0].image.endswith(kind_path.operator_image)
    # the image's uid and a read-only root filesystem, as the kubelet runs it
    probe = kind_kubectl(
        "exec",
        "-n",
        kind_path.namespace,
        pod.metadata.name,
        "--",
        "python",
        "-c",
        PROBE_ROOT_FS,
    )
    assert probe.stdout.split(maxsplit=1) == ["65532", "Read-only file system\n"]
    # its metrics, scraped through the Service the chart made (the API server's proxy)
    metrics = kind_kubectl(
        "get",
        "--raw",
        f"/api/v1/namespaces/{kind_path.namespace}/services/"
        f"{kind_path.release}-metrics:metrics/proxy/metrics",
    ).stdout
    assert "trainyard_" in metrics and "process_resident_memory_bytes" in metrics


def test_digits_ddp_trains_across_two_nodes(
    kind_path: KindPath, kind_api: client.ApiClient, jobs_namespace: str
) -> None:
    jobs = Jobs(kind_api, jobs_namespace)
    manifest = yaml.safe_load(EXAMPLE.read_text())
    name = manifest["metadata"]["name"]
    delete_job(kind_path.kubeconfig, jobs_namespace, name)  # left by a TRAINYARD_KIND_REUSE run
    jobs.apply(manifest)
    pods = jobs.wait_pods(name, 2, phase="Running", timeout=JOB_TIMEOUT)
    nodes = {p["metadata"]["name"]: p["spec"]["nodeName"] for p in pods}
    assert len(set(nodes.values())) == 2, f"both workers on one node: {nodes}"
    env = {e["name"]: e.get("value") for e in pods[1]["spec"]["containers"][0]["env"]}
    master = env["MASTER_ADDR"]
    # worker 0 by its Service's DNS name, resolved by the cluster's DNS: no address rewriting
    assert master.startswith(f"{name}-worker-0.") and master.endswith(f".{jobs_namespace}.svc"), (
        master
    )
    status = jobs.wait_phase(name, "Succeeded", timeout=JOB_TIMEOUT)
    results = status["results"]
    stages = [entry["name"] for entry in results["stages"]]
    assert stages == ["train", "prune", "quantize"], results
    assert results["accuracy"] >= 0.9, results
    assert status["restarts"] == 0


def long_job(name: str, claim: str) -> dict[str, Any]:
    """Long enough to look into while it trains; checkpoints every epoch on a PVC."""
    manifest = yaml.safe_load(EXAMPLE.read_text())
    manifest["metadata"]["name"] = name
    spec = manifest["spec"]
    spec["trainer"].update({"epochs": 60, "batchSize": 4})
    # the claim binds both workers to one node (local-path volumes are node-local): half a
    # core each fits beside the node's system pods
    spec["resources"] = {"cpu": "500m", "memory": "1Gi"}
    spec["compression"] = []
    spec["output"] = {"volumeClaimName": claim}
    spec["checkpoint"] = {"everyEpochs": 1}
    return manifest


def log_lines(kubectl: Kubectl, namespace: str, pod: str) -> list[str]:
    return kubectl("logs", "-n", namespace, pod, check=False).stdout.splitlines()


def test_a_deleted_worker_checkpoints_and_the_gang_resumes_from_the_pvc(
    kind_path: KindPath, kind_api: client.ApiClient, jobs_namespace: str, kind_kubectl: Kubectl
) -> None:
    core = client.CoreV1Api(kind_api)
    claim = "kind-checkpoints"
    name = "kind-resume"
    # a TRAINYARD_KIND_REUSE run starts without the last run's job and checkpoints
    delete_job(kind_path.kubeconfig, jobs_namespace, name)
    kind_kubectl("delete", "pvc", "-n", jobs_namespace, claim, "--ignore-not-found", "--wait")
    core.create_namespaced_persistent_volume_claim(
        jobs_namespace,
        {
            "metadata": {"name": claim},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
    jobs = Jobs(kind_api, jobs_namespace)
    jobs.apply(long_job(name, claim))
    worker0, worker1 = f"{name}-worker-0", f"{name}-worker-1"
    jobs.wait_pods(name, 2, phase="Running", restart=0, timeout=JOB_TIMEOUT)
    wait_for(
        "worker 0 to finish its second epoch",
        lambda: any(
            "epoch 2/" in line for line in log_lines(kind_kubectl, jobs_namespace, worker0)
        ),
        timeout=JOB_TIMEOUT,
    )

    # inside a running worker, as the kubelet started it
    inside = kind_kubectl(
        "exec",
        "-n",
        jobs_namespace,
        worker1,
        "--",
        "python",
        "-c",
        "import os, socket; print(os.getuid(), os.path.exists("
        f"'{SA_TOKEN_DIR}'), socket.gethostbyname(os.environ['MASTER_ADDR']))",
    ).stdout.split()
    worker0_ip = core.read_namespaced_pod(worker0, jobs_namespace).status.pod_ip
    assert inside == ["1000", "False", worker0_ip]

    # delete worker 1 mid-training and see how its container ended
    last: dict[str, Any] = {}

    def watch_worker1() -> None:
        stream = watch.Watch()
        for event in stream.stream(
            core.list_namespaced_pod,
            jobs_namespace,
            field_selector=f"metadata.name={worker1}",
            timeout_seconds=JOB_TIMEOUT,
        ):
            pod = event["object"]
            for status in pod.status.container_statuses or []:
                if status.state.terminated is not None:
                    last["exit_code"] = status.state.terminated.exit_code
            if event["type"] == "DELETED":
                stream.stop()

    watcher = threading.Thread(target=watch_worker1, daemon=True)
    watcher.start()
    kind_kubectl("delete", "pod", "-n", jobs_namespace, worker1, "--wait=false")
    watcher.join(JOB_TIMEOUT)
    assert last.get("exit_code") == 143, last

    status = jobs.wait_phase(name, "Succeeded", timeout=JOB_TIMEOUT)
    assert status["restarts"] == 1 and status["disruptions"] == 1, status
    resumed = [
        line
        for line in log_lines(kind_kubectl, jobs_namespace, worker0)
        if "[checkpoint] resumed from" in line
    ]
    assert resumed, "the restarted worker 0 did not say it resumed from a checkpoint"
    epoch = int(resumed[0].split("(epoch ")[1].split(",")[0])
    assert epoch >= 2, resumed
    # worker 0's termination message reached status.results
    assert [s["name"] for s in status["results"]["stages"]] == ["train"], status["results"]


def test_helm_upgrade_and_uninstall_leave_nothing_behind(
    kind_path: KindPath, kind_kubectl: Kubectl
) -> None:
    kind_path.install_chart("--set=operator.logLevel=DEBUG")
    pod = kind_kubectl(
        "get",
        "pods",
        "-n",
        kind_path.namespace,
        "-l",
        "app.kubernetes.io/name=trainyard",
        "-o",
        "jsonpath={.items[*].spec.containers[0].env}",
    ).stdout
    assert "DEBUG" in pod
    kind_path.uninstall_chart()
    kinds = kind_kubectl("api-resources", "--verbs=list", "-o", "name").stdout.split()
    listed = ",".join(k for k in kinds if not k.startswith(("events", "trainingjobs")))

    def left_behind() -> list[str]:
        names = kind_kubectl(
            "get",
            listed,
            "-A",
            "-l",
            f"app.kubernetes.io/instance={kind_path.release}",
            "-o",
            "name",
            check=False,
        ).stdout.split()
        # the CRD stays by design (crds.keep=true: uninstalling never deletes users' jobs)
        return [n for n in names if "customresourcedefinition" not in n]

    # the operator pod goes with its ReplicaSet through the garbage collector, after helm
    wait_for("no chart-labelled object left", lambda: not left_behind(), timeout=JOB_TIMEOUT)
