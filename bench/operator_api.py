"""How much the operator asks of the API server, and how fast a job's pods appear.

Starts its own LocalCluster (10 fake GPU nodes, fake agent), runs the operator as a
subprocess under a ServiceAccount bound to deploy/helm/trainyard/files/operator-rules.yaml
(never admin), applies JOBS TrainingJobs of WORKERS workers (1 GPU each) one after another
and reports:
- API requests per job, from the operator's own `trainyard_api_requests_total` (by verb);
  kopf's two watch streams (TrainingJobs, pods) are not in it: they are shared by all jobs;
- seconds from the create call returning to all of a job's pods existing (seen through a
  watch): median and p99, and the same to all of them Running and to the job's
  status.phase Running.
Numbers only; nothing is asserted. Run: `.venv/bin/python bench/operator_api.py [JOBS] [WORKERS]`.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines
from prometheus_client.parser import text_string_to_metric_families
from urllib3.exceptions import ProtocolError

from trainyard_local.cluster import LocalCluster
from trainyard_local.kubeconfig import write_token_kubeconfig
from trainyard_local.operator_process import OperatorProcess
from trainyard_local.pytest_plugin import wait_for_service_account

ROOT = Path(__file__).resolve().parents[1]
NAMESPACE = "bench"
GPU_NODES = 10
SA = "trainyard-operator"


def job(i: int, workers: int) -> dict[str, Any]:
    return {
        "apiVersion": "trainyard.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": f"j-{i:03d}"},
        "spec": {"workers": workers, "resources": {"gpus": 1, "cpu": "100m", "memory": "64Mi"}},
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[round(q * (len(ordered) - 1))]


def operator_as_service_account(
    api: client.ApiClient,
    cluster: LocalCluster,
    state: Path,
    *,
    namespace: str = NAMESPACE,
    expiration_seconds: int = 3600,
) -> Path:
    """A token kubeconfig for the ServiceAccount bound to exactly the operator's rules
    (also bench/fault_campaign.py's operator)."""
    rbac = client.RbacAuthorizationV1Api(api)
    core = client.CoreV1Api(api)
    rules = yaml.safe_load((ROOT / "deploy/helm/trainyard/files/operator-rules.yaml").read_text())
    try:
        rbac.create_cluster_role({"metadata": {"name": "trainyard-operator"}, "rules": rules})
    except ApiException as err:
        if err.status != 409:  # one ClusterRole serves every namespace a bench runs in
            raise
    core.create_namespaced_service_account(namespace, {"metadata": {"name": SA}})
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": SA},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "trainyard-operator",
            },
            "subjects": [{"kind": "ServiceAccount", "name": SA, "namespace": namespace}],
        },
    )
    token = core.create_namespaced_service_account_token(
        SA, namespace, {"spec": {"expirationSeconds": expiration_seconds}}
    ).status.token
    return write_token_kubeconfig(
        state / "operator.kubeconfig",
        name=SA,
        server=cluster.server,
        ca_cert=cluster.pki.ca_cert,
        token=token,
        namespace=namespace,
    )


def requests_by_verb(operator: OperatorProcess) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(operator.metrics_text()):
        for sample in family.samples:
            if sample.name == "trainyard_api_requests_total":
                out[sample.labels["verb"]] = sample.value
    return out


def main() -> None:
    jobs = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    gpus_per_node = max(8, -(-jobs * workers // GPU_NODES))
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        cluster = LocalCluster(
            "bench-op",
            state / "cluster",
            cpu_nodes=0,
            gpu_nodes=GPU_NODES,
            gpus_per_node=gpus_per_node,
            tie_to_parent=True,
        )
        with cluster:
            print(
                f"cluster up in {cluster.startup_seconds:.1f} s: {GPU_NODES} GPU nodes x "
                f"{gpus_per_node} nvidia.com/gpu, fake agent"
            )
            api = config.new_client_from_config(config_file=str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
            core = client.CoreV1Api(api)
            custom = client.CustomObjectsApi(api)
            ext = client.ApiextensionsV1Api(api)
            ext.create_custom_resource_definition(
                yaml.safe_load((ROOT / "crds/trainyard.dev_trainingjobs.yaml").read_text())
            )
            core.create_namespace({"metadata": {"name": NAMESPACE}})
            wait_for_service_account(core, NAMESPACE)
            while not any(
                c.type == "Established" and c.status == "True"
                for c in ext.read_custom_resource_definition(
                    "trainingjobs.trainyard.dev"
                ).status.conditions
                or []
            ):
                time.sleep(0.1)
            kubeconfig = operator_as_service_account(api, cluster, state)
            time.sleep(1.0)  # RBAC reaches the authorizer's cache
            operator = OperatorProcess(
                kubeconfig, [NAMESPACE], log_path=state / "operator.log"
            ).start()
            try:
                run(str(cluster.kubeconfig), custom, operator, jobs, workers)
            finally:
                operator.stop()
            api.close()  # type: ignore[no-untyped-call]


def run(
    admin: str,
    custom: client.CustomObjectsApi,
    operator: OperatorProcess,
    jobs: int,
    workers: int,
) -> None:
    seen: dict[str, dict[str, float]] = defaultdict(dict)
    running: dict[str, dict[str, float]] = defaultdict(dict)
    job_running: dict[str, float] = {}
    stop = threading.Event()

    events = {"pods": 0, "trainingjobs": 0, "reconnects": 0}

    def on_pod(obj: dict[str, Any], now: float) -> None:
        name = obj["metadata"]["name"]
        owner = obj["metadata"]["labels"]["trainyard.dev/job-name"]
        seen[owner].setdefault(name, now)
        if obj.get("status", {}).get("phase") == "Running":
            running[owner].setdefault(name, now)

    def on_job(obj: dict[str, Any], now: float) -> None:
        if (obj.get("status") or {}).get("phase") == "Running":
            job_running.setdefault(obj["metadata"]["name"], now)

    def watch(kind: str, handle: Callable[[dict[str, Any], float], None]) -> None:
        api = config.new_client_from_config(config_file=admin)  # type: ignore[no-untyped-call]
        core, custom_api = client.CoreV1Api(api), client.CustomObjectsApi(api)
        version = ""
        while not stop.is_set():
            if kind == "pods":
                response: Any = core.list_namespaced_pod(
                    NAMESPACE,
                    watch=True,
                    resource_version=version or None,
                    _preload_content=False,
                    timeout_seconds=60,
                )
            else:
                response = custom_api.list_namespaced_custom_object(
                    "trainyard.dev",
                    "v1alpha1",
                    NAMESPACE,
                    "trainingjobs",
                    watch=True,
                    resource_version=version or None,
                    _preload_content=False,
                    timeout_seconds=60,
                )
            try:
                for line in iter_resp_lines(response):  # type: ignore[no-untyped-call]
                    event = json.loads(line)
                    if event["type"] == "ERROR":
                        version = ""
                        break
                    obj = event["object"]
                    version = obj["metadata"]["resourceVersion"]
                    events[kind] += 1
                    handle(obj, time.monotonic())
            except ProtocolError:
                pass  # the server ended the stream (e.g. at shutdown); resume from `version`
            events["reconnects"] += 1

    for kind, handle in (("pods", on_pod), ("trainingjobs", on_job)):
        threading.Thread(target=watch, args=(kind, handle), daemon=True).start()
    time.sleep(0.5)
    before = requests_by_verb(operator)
    applied: dict[str, float] = {}
    began = time.monotonic()
    for i in range(jobs):
        body = job(i, workers)
        custom.create_namespaced_custom_object(
            "trainyard.dev", "v1alpha1", NAMESPACE, "trainingjobs", body
        )
        applied[body["metadata"]["name"]] = time.monotonic()
    apply_seconds = time.monotonic() - began
    deadline = time.monotonic() + 600
    while len(job_running) < jobs and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(6)  # one progress interval: idle jobs must cost no further requests
    stop.set()
    after = requests_by_verb(operator)
    verbs = {v: after.get(v, 0) - before.get(v, 0) for v in sorted(after)}
    total = sum(verbs.values())

    created = [max(seen[n].values()) - t for n, t in applied.items() if len(seen[n]) == workers]
    all_running = [
        max(running[n].values()) - t for n, t in applied.items() if len(running[n]) == workers
    ]
    phase_running = [job_running[n] - t for n, t in applied.items() if n in job_running]
    print(
        f"(watch events seen: {events['pods']} pod, {events['trainingjobs']} TrainingJob; "
        f"{events['reconnects']} watch restarts)"
    )
    print(
        f"{jobs} jobs x {workers} workers applied in {apply_seconds:.1f} s "
        f"({jobs / apply_seconds:.1f} jobs/s)"
    )
    print(
        f"API requests per job: {total / jobs:.1f} "
        f"({', '.join(f'{v} {n / jobs:.1f}' for v, n in verbs.items())}); "
        f"minimum for the pods, Service, status and events: "
        f"{workers} + 1 creates, a few status patches, 2 events (WorkersCreated, and "
        f"CheckpointsNotPersistent: these jobs keep checkpoints on an emptyDir)"
    )
    for label, values in (
        ("apply -> all pods created", created),
        ("apply -> all pods Running", all_running),
        ("apply -> status.phase Running", phase_running),
    ):
        if values:
            print(
                f"{label}: median {statistics.median(values):.2f} s, "
                f"p99 {percentile(values, 0.99):.2f} s ({len(values)} of {jobs} jobs)"
            )
        else:
            print(f"{label}: no job got there")


if __name__ == "__main__":
    main()
