"""The demo flow end to end with real DDP, and a gang restart after a worker is killed.

Both tests run on `e2e_stack` (conftest.py): the chart installed by helm, the operator under
the chart ServiceAccount's token, worker pods as real torchrun processes in a namespace that
enforces the restricted Pod Security profile, and a real Prometheus. They assert what a user
of `make demo` sees: the job Succeeded with accurate, per-stage results; Prometheus answers
`trainyard_` queries from the operator and from a trainer; a worker killed mid-training
brings the whole gang back once, resuming from the checkpoint on the job's volume; the
dashboard's queries and the alert rules of deploy/monitoring run on the real Prometheus.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kubernetes import client, config

from e2e.stack import E2EStack
from trainyard_local import binaries
from trainyard_local.demo import CHART_NAMESPACE, EXAMPLE, RELEASE, delete_job, get_job

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

EXPECTED_SA = f"system:serviceaccount:{CHART_NAMESPACE}:{RELEASE}"


def kubectl(stack: E2EStack, *args: str, kubeconfig: Path | None = None) -> str:
    done = subprocess.run(
        [str(binaries.binary("kubectl")), f"--kubeconfig={kubeconfig or stack.kubeconfig}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
    return done.stdout


def wait_for(what: str, probe: Callable[[], Any], timeout: float, stack: E2EStack) -> Any:
    """Poll until `probe` is truthy; on timeout fail with the operator's log tail."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(
                f"timed out after {timeout:.0f} s waiting for {what}; operator log:\n"
                + stack.operator.log_tail(),
                pytrace=False,
            )
        time.sleep(0.5)


def create_job(stack: E2EStack, job: dict[str, Any]) -> str:
    name = str(job["metadata"]["name"])
    delete_job(stack.kubeconfig, stack.job_namespace, name)
    done = subprocess.run(
        [
            str(binaries.binary("kubectl")),
            f"--kubeconfig={stack.kubeconfig}",
            "apply",
            "-n",
            stack.job_namespace,
            "-f",
            "-",
        ],
        input=yaml.safe_dump(job),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return name


def finished(stack: E2EStack, name: str) -> dict[str, Any] | None:
    job = get_job(stack.kubeconfig, stack.job_namespace, name)
    if job and (job.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return job
    return None


def example(epochs: int | None = None) -> dict[str, Any]:
    job: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    if epochs is not None:
        job["spec"]["trainer"]["epochs"] = epochs
    return job


def test_demo_flow_trains_compresses_and_reports(e2e_stack: E2EStack) -> None:
    stack = e2e_stack
    name = create_job(stack, example())
    job = wait_for(f"job {name} to finish", lambda: finished(stack, name), 600, stack)
    status = job["status"]
    assert status["phase"] == "Succeeded", json.dumps(status, indent=1)
    assert status["restarts"] == 0

    results = status["results"]
    assert results["accuracy"] >= 0.9
    stage_names = [stage["name"] for stage in results["stages"]]
    assert stage_names == ["train", "prune", "quantize"]
    train, prune, quantize = results["stages"]
    assert prune["sparsity"] >= 0.45
    assert quantize["modelBytes"] < prune["modelBytes"] < train["modelBytes"]
    # the example asks for `gpus: auto`: on this CPU-only cluster the operator chose 0
    assert status["gpus"]["perWorker"] == 0
    assert status["gpus"]["reason"] == "NoGpuNodes"
    assert "no node of the cluster has nvidia.com/gpu" in status["gpus"]["message"]

    # the worker pods ran (and were admitted) in a namespace enforcing the restricted profile
    namespace = json.loads(kubectl(stack, "get", "namespace", stack.job_namespace, "-o", "json"))
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    pods = json.loads(
        kubectl(
            stack,
            "get",
            "pods",
            "-n",
            stack.job_namespace,
            "-l",
            f"trainyard.dev/job-name={name}",
            "-o",
            "json",
        )
    )["items"]
    assert len(pods) == 2
    assert all(pod["status"]["phase"] == "Succeeded" for pod in pods)
    # `kubectl logs` reads the trainer's output through the API server, across both workers
    logs = kubectl(
        stack,
        "logs",
        "-n",
        stack.job_namespace,
        "-l",
        f"trainyard.dev/job-name={name}",
        "--prefix",
        "--tail=-1",  # with a selector kubectl asks for the last 10 lines only
    )
    assert f"[pod/{name}-worker-0/trainer] [train] epoch 10/10" in logs
    assert "gloo on cpu" in logs  # the trainer followed the choice
    assert f"[pod/{name}-worker-1/trainer]" in logs
    # ...and that namespace really enforces it: a privileged pod is refused at admission
    refused = subprocess.run(
        [
            str(binaries.binary("kubectl")),
            f"--kubeconfig={stack.kubeconfig}",
            "-n",
            stack.job_namespace,
            "run",
            "privileged",
            "--image=busybox",
            "--privileged",
            "--dry-run=server",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode != 0
    assert 'violates PodSecurity "restricted' in refused.stderr

    # the operator ran as the chart's ServiceAccount, i.e. with the chart's RBAC only
    review = json.loads(
        kubectl(stack, "auth", "whoami", "-o", "json", kubeconfig=stack.operator_kubeconfig)
    )
    assert review["status"]["userInfo"]["username"] == EXPECTED_SA
    assert stack.operator.running()

    # Prometheus holds trainyard_ series scraped from the operator and from a trainer
    def series_by_job() -> dict[str, int]:
        answer = stack.prometheus.query(
            'count by (job) (last_over_time({__name__=~"trainyard_.+"}[30m]))'
        )
        return {item["metric"]["job"]: int(float(item["value"][1])) for item in answer}

    def both_jobs() -> dict[str, int] | None:
        seen = series_by_job()
        return seen if {"trainyard-operator", "trainyard-trainers"} <= set(seen) else None

    jobs = wait_for("trainyard_ series from the operator and a trainer", both_jobs, 60, stack)
    assert jobs["trainyard-operator"] > 0 and jobs["trainyard-trainers"] > 0
    accuracy = stack.prometheus.query(
        f'last_over_time(trainyard_trainer_accuracy{{trainyard_dev_job_name="{name}"}}[30m])'
    )
    assert accuracy and max(float(item["value"][1]) for item in accuracy) >= 0.8

    def succeeded_count() -> float | None:
        # The operator counts the success when it writes the status; Prometheus sees it at its
        # next scrape of the operator, which can come after the job already reads Succeeded.
        answer = stack.prometheus.query(
            f'trainyard_jobs_succeeded_total{{namespace="{stack.job_namespace}"}}'
        )
        value = float(answer[0]["value"][1]) if answer else 0.0
        return value if value >= 1 else None

    wait_for("the operator's succeeded counter in Prometheus", succeeded_count, 120, stack)


def bind_local_volume(stack: E2EStack, claim: str) -> Path:
    """A hostPath PV pre-bound to a PVC (no PV controller runs here), pointing at the folder
    the process runner gives that claim, so checkpoints survive the pods."""
    folder = stack.cluster.state_dir / "volumes" / "pvc" / stack.job_namespace / claim
    folder.mkdir(parents=True, exist_ok=True)
    pv_name = f"{stack.job_namespace}-{claim}"
    manifests = [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": pv_name},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteMany"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": "",
                "hostPath": {"path": str(folder), "type": "DirectoryOrCreate"},
                "claimRef": {"namespace": stack.job_namespace, "name": claim},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {
                "name": claim,
                "namespace": stack.job_namespace,
                # what the PV controller would write once it bound the pair
                "annotations": {"pv.kubernetes.io/bind-completed": "yes"},
            },
            "spec": {
                "accessModes": ["ReadWriteMany"],
                "storageClassName": "",
                "volumeName": pv_name,
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    ]
    subprocess.run(
        [str(binaries.binary("kubectl")), f"--kubeconfig={stack.kubeconfig}", "apply", "-f", "-"],
        input="\n---\n".join(yaml.safe_dump(m) for m in manifests),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    api = config.new_client_from_config(config_file=str(stack.kubeconfig))  # type: ignore[no-untyped-call]
    with api:
        core = client.CoreV1Api(api)
        core.patch_persistent_volume_status(pv_name, {"status": {"phase": "Bound"}})
        core.patch_namespaced_persistent_volume_claim_status(
            claim,
            stack.job_namespace,
            {
                "status": {
                    "phase": "Bound",
                    "capacity": {"storage": "1Gi"},
                    "accessModes": ["ReadWriteMany"],
                }
            },
        )
    return folder


def pod_dir(stack: E2EStack, pod: dict[str, Any]) -> Path:
    meta = pod["metadata"]
    return stack.cluster.state_dir / "pods" / f"{meta['namespace']}_{meta['name']}_{meta['uid']}"


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return [int(p) for p in path.read_text().split()]
    except FileNotFoundError:
        return []


def trainer_processes(container_pid: int) -> list[int]:
    """The training processes under a worker container: launcher → torchrun → trainers."""
    found: list[int] = []
    pending = children(container_pid)
    while pending:
        pid = pending.pop()
        pending.extend(children(pid))
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except FileNotFoundError:
            continue
        # torchrun starts each trainer as `python -u -m trainyard_trainer`; the launcher runs
        # as `-m trainyard_trainer.launch`, torchrun as `-m torch.distributed.run … -m
        # trainyard_trainer`
        if b"trainyard_trainer" in argv and b"torch.distributed.run" not in argv:
            found.append(pid)
    return found


def test_killed_worker_restarts_the_gang_from_the_checkpoint(e2e_stack: E2EStack) -> None:
    stack = e2e_stack
    claim = "digits-ckpt"
    folder = bind_local_volume(stack, claim)
    job = example(epochs=40)
    job["metadata"]["name"] = "digits-restart"
    job["spec"]["output"] = {"volumeClaimName": claim}
    job["spec"]["compression"] = [{"quantize": {"method": "dynamic", "dtype": "int8"}}]
    name = create_job(stack, job)

    # training has checkpointed at least one epoch onto the volume
    checkpoints = folder / "checkpoints"
    wait_for(
        "a checkpoint on the job's volume",
        lambda: checkpoints.is_dir() and any(checkpoints.glob("ckpt-*.pt")),
        300,
        stack,
    )
    pods = json.loads(
        kubectl(
            stack,
            "get",
            "pods",
            "-n",
            stack.job_namespace,
            "-l",
            f"trainyard.dev/job-name={name},trainyard.dev/worker-index=1",
            "-o",
            "json",
        )
    )["items"]
    (worker,) = pods
    container = int((pod_dir(stack, worker) / "trainer.pid").read_text())
    trainers = trainer_processes(container)
    assert trainers, "worker 1 has no trainer process under its torchrun"
    for pid in trainers:  # the training process dies as in an OOM kill
        os.kill(pid, signal.SIGKILL)

    done = wait_for(f"job {name} to finish", lambda: finished(stack, name), 600, stack)
    status = done["status"]
    assert status["phase"] == "Succeeded", json.dumps(status, indent=1)
    assert status["restarts"] == 1
    assert status["results"]["accuracy"] >= 0.9

    # the second gang's worker 0 resumed from a checkpoint instead of starting over
    restarted = json.loads(
        kubectl(
            stack,
            "get",
            "pods",
            "-n",
            stack.job_namespace,
            "-l",
            f"trainyard.dev/job-name={name},trainyard.dev/worker-index=0,trainyard.dev/restart=1",
            "-o",
            "json",
        )
    )["items"]
    (worker0,) = restarted
    log = (pod_dir(stack, worker0) / "trainer.log").read_text()
    assert "[checkpoint] resumed from ckpt-" in log


def test_dashboard_queries_and_alert_rules_run_on_real_prometheus(e2e_stack: E2EStack) -> None:
    """Every dashboard panel's PromQL parses and evaluates, and the alert rules loaded."""
    dashboard = json.loads(
        (
            Path(__file__).resolve().parents[2] / "deploy/monitoring/grafana-dashboard.json"
        ).read_text()
    )
    expressions = [
        target["expr"].replace("$namespace", ".*").replace("$__rate_interval", "1m")
        for panel in dashboard["panels"]
        for target in panel["targets"]
    ]
    assert len(expressions) >= 9
    for expression in expressions:
        e2e_stack.prometheus.query(expression)  # PrometheusError names a bad query

    groups = httpx.get(f"{e2e_stack.prometheus.url}/api/v1/rules", timeout=10).json()["data"][
        "groups"
    ]
    rules = {rule["name"]: rule for group in groups for rule in group["rules"]}
    assert set(rules) == {
        "TrainyardJobFailed",
        "TrainyardJobsStuckPending",
        "TrainyardJobRestartingOften",
        "TrainyardTrainerNoProgress",
    }
    wait_for(
        "every alert rule evaluated without error",
        lambda: all(
            rule.get("health") == "ok"
            for group in httpx.get(f"{e2e_stack.prometheus.url}/api/v1/rules", timeout=10).json()[
                "data"
            ]["groups"]
            for rule in group["rules"]
        ),
        # rules are evaluated every second; the timeout only bounds a hang on a loaded machine
        120,
        e2e_stack,
    )
