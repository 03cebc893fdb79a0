"""`spec.resources.gpus: auto` on the embedded cluster: the operator picks GPUs per worker from
the nodes a gang may land on and the namespace's GPU quota, says why, and keeps its choice
across gang restarts until the cluster can no longer meet it.

The operator runs under its own rules plus the read-only node rule of the chart
(files/node-reader-rules.yaml) with TRAINYARD_READ_NODES, as the chart's cluster-wide mode
runs it. The session cluster has 2 CPU and 2 GPU nodes of 8; tests that change nodes
(cordon, remove) get node pools of their own: another fake-node agent (the same
`trainyard_local.agent` that runs the session's nodes) with a cluster name of its own, whose
nodes the job selects by their `trainyard.dev/cluster` label, so nothing the session shares is
touched. What a user sees is asserted: status.gpus, the GpusChosen/GpusChanged events, the
pods' GPU limits and environment, and the job running.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from integration.operator_fixtures import SERVICE_ACCOUNT, Jobs, wait_for, wait_until_authorized
from trainyard_local import nodes, processes
from trainyard_local.operator_process import OperatorProcess, OperatorStartError

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
NODE_RULES = ROOT / "deploy/helm/trainyard/files/node-reader-rules.yaml"
NODE_READER = "trainyard-node-reader-test"


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def node_reader(api_client: client.ApiClient, namespace: str) -> Iterator[None]:
    """The chart's node rule, bound cluster-wide to the test's operator ServiceAccount."""
    rbac = client.RbacAuthorizationV1Api(api_client)
    role = {"metadata": {"name": NODE_READER}, "rules": yaml.safe_load(NODE_RULES.read_text())}
    try:
        rbac.create_cluster_role(role)
    except ApiException as err:
        if err.status != 409:
            raise
        rbac.replace_cluster_role(NODE_READER, role)
    binding_name = f"node-reader-{namespace}"
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": binding_name},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": NODE_READER,
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": namespace}
            ],
        }
    )
    try:
        yield
    finally:
        rbac.delete_cluster_role_binding(binding_name)


@pytest.fixture
def reading_operator(
    node_reader: None,
    operator_factory: Callable[..., OperatorProcess],
    api_client: client.ApiClient,
    namespace: str,
) -> OperatorProcess:
    """The operator as the chart runs it cluster-wide: it watches Nodes."""
    process = operator_factory(TRAINYARD_READ_NODES="true")
    wait_until_authorized(
        api_client, namespace, cluster_wide=True, verb="watch", group="", resource="nodes"
    )
    return process


@dataclass
class Pool:
    """Nodes run by an agent of their own, selected by the label trainyard.dev/cluster."""

    name: str
    cpu_nodes: list[str]
    gpu_nodes: list[str]
    agent: subprocess.Popen[bytes]

    @property
    def selector(self) -> dict[str, str]:
        return {nodes.CLUSTER_LABEL: self.name}


PoolFactory = Callable[..., Pool]


@pytest.fixture
def node_pool(
    kubeconfig: Path, api_client: client.ApiClient, tmp_path: Path
) -> Iterator[PoolFactory]:
    core = client.CoreV1Api(api_client)
    started: list[Pool] = []

    def make(*, cpu: int = 0, gpu: int = 1, gpus_per_node: int = 8) -> Pool:
        name = f"pool{secrets.token_hex(3)}"
        specs = nodes.plan_nodes(name, cpu, gpu, gpus_per_node)
        agent = processes.spawn(
            [
                sys.executable,
                "-m",
                "trainyard_local.agent",
                f"--kubeconfig={kubeconfig}",
                "--runner=fake",
                f"--cluster={name}",
                f"--cpu-nodes={cpu}",
                f"--gpu-nodes={gpu}",
                f"--gpus-per-node={gpus_per_node}",
                f"--state-dir={tmp_path / name}",
            ],
            tmp_path / f"{name}.log",
            tie_to_parent=True,
        )
        pool = Pool(
            name,
            [s.name for s in specs if not s.gpus],
            [s.name for s in specs if s.gpus],
            agent,
        )
        started.append(pool)

        def ready() -> bool:
            listed = json.loads(
                core.list_node(
                    label_selector=f"{nodes.CLUSTER_LABEL}={name}", _preload_content=False
                ).data
            )["items"]
            return len(listed) == len(specs) and all(nodes.is_ready(n) for n in listed)

        wait_for(f"the {len(specs)} nodes of pool {name}", ready, timeout=120)
        return pool

    yield make
    for pool in started:
        stop_agent(pool)
        core.delete_collection_node(label_selector=f"{nodes.CLUSTER_LABEL}={pool.name}")


def stop_agent(pool: Pool) -> None:
    processes.stop(
        processes.Tracked("agent", pool.agent.pid, "trainyard_local.agent"), popen=pool.agent
    )


# --- helpers --------------------------------------------------------------------------------


def auto_job(jobs: Jobs, name: str, **spec: Any) -> None:
    resources = {"gpus": "auto", "cpu": "10m", "memory": "32Mi"}
    jobs.create(name, resources=resources, **spec)  # fake workers that run until told


def gpus_status(jobs: Jobs, name: str) -> dict[str, Any]:
    found = wait_for(f"status.gpus of {name}", lambda: jobs.status(name).get("gpus"))
    assert isinstance(found, dict)
    return found


def env_of(pod: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in pod["spec"]["containers"][0]["env"]}


def gpu_limit(pod: dict[str, Any]) -> str | None:
    limit: str | None = pod["spec"]["containers"][0]["resources"]["limits"].get("nvidia.com/gpu")
    return limit


def event(jobs: Jobs, name: str, reason: str) -> tuple[str, str, str]:
    return jobs.wait_event(name, reason)


# --- the choice -----------------------------------------------------------------------------


def test_gpu_nodes_of_8_give_each_worker_a_whole_node(
    reading_operator: OperatorProcess, jobs: Jobs, node_pool: PoolFactory
) -> None:
    pool = node_pool(gpu=2)
    auto_job(jobs, "whole", workers=2, scheduling={"nodeSelector": pool.selector})
    gpus = gpus_status(jobs, "whole")
    assert (gpus["perWorker"], gpus["reason"]) == (8, "GpusFit")
    kind, _, message = event(jobs, "whole", "GpusChosen")
    assert kind == "Normal"
    assert message == gpus["message"]
    assert "all 2 workers fit at once on the 2 GPU nodes the workers may use (8, 8 GPUs)" in message
    pods = jobs.wait_pods("whole", 2)
    assert sorted(p["spec"]["nodeName"] for p in pods) == pool.gpu_nodes
    for pod in pods:
        assert gpu_limit(pod) == "8"
        env = env_of(pod)
        # one process per GPU, and the trainer is told to use them (nccl)
        assert (env["PET_NPROC_PER_NODE"], env["WORLD_SIZE"], env["TRAINYARD_GPUS"]) == (
            "8",
            "16",
            "8",
        )
    jobs.wait_phase("whole", "Running")


def test_a_node_selector_that_excludes_the_gpu_nodes_gives_cpu(
    reading_operator: OperatorProcess, jobs: Jobs
) -> None:
    cpu_only = {"node.kubernetes.io/instance-type": "trainyard-cpu"}
    auto_job(jobs, "cpu-only", workers=2, scheduling={"nodeSelector": cpu_only})
    gpus = gpus_status(jobs, "cpu-only")
    assert (gpus["perWorker"], gpus["reason"]) == (0, "NoGpuNodes")
    assert "left out by spec.scheduling.nodeSelector" in gpus["message"]
    for pod in jobs.wait_pods("cpu-only", 2):
        assert gpu_limit(pod) is None
        assert not [t for t in pod["spec"]["tolerations"] if t["key"] == "nvidia.com/gpu"]
        assert (env_of(pod)["PET_NPROC_PER_NODE"], env_of(pod)["TRAINYARD_GPUS"]) == ("1", "0")
    jobs.wait_phase("cpu-only", "Running")


def test_a_namespace_quota_of_zero_gpus_gives_cpu(
    reading_operator: OperatorProcess, jobs: Jobs, namespace: str
) -> None:
    jobs.core.create_namespaced_resource_quota(
        namespace,
        {"metadata": {"name": "no-gpus"}, "spec": {"hard": {"requests.nvidia.com/gpu": "0"}}},
    )
    auto_job(jobs, "quota", workers=2)
    gpus = gpus_status(jobs, "quota")
    assert (gpus["perWorker"], gpus["reason"]) == (0, "QuotaTooSmall")
    assert "ResourceQuota no-gpus allows 0 (requests.nvidia.com/gpu)" in gpus["message"]
    _, _, message = event(jobs, "quota", "GpusChosen")
    assert "no-gpus" in message
    for pod in jobs.wait_pods("quota", 2):
        assert gpu_limit(pod) is None
    jobs.wait_phase("quota", "Running")


def test_cordoned_gpu_nodes_give_cpu_and_the_event_says_why(
    reading_operator: OperatorProcess,
    jobs: Jobs,
    node_pool: PoolFactory,
    api_client: client.ApiClient,
) -> None:
    pool = node_pool(cpu=1, gpu=2)
    core = client.CoreV1Api(api_client)
    for name in pool.gpu_nodes:
        core.patch_node(name, {"spec": {"unschedulable": True}})  # kubectl cordon
    auto_job(jobs, "cordoned", workers=1, scheduling={"nodeSelector": pool.selector})
    kind, _, message = event(jobs, "cordoned", "GpusChosen")
    assert kind == "Normal"
    assert "gpus auto chose 0 per worker (CPU, gloo)" in message
    assert f"2 cordoned ({', '.join(pool.gpu_nodes)})" in message
    assert jobs.status("cordoned")["gpus"]["perWorker"] == 0
    (pod,) = jobs.wait_pods("cordoned", 1)
    assert pod["spec"]["nodeName"] == pool.cpu_nodes[0]
    assert gpu_limit(pod) is None
    jobs.wait_phase("cordoned", "Running")


def test_without_node_reads_auto_takes_the_fallback_within_the_quota(
    operator_factory: Callable[..., OperatorProcess], jobs: Jobs, namespace: str
) -> None:
    """The chart's namespaced mode: no node rule, so `auto` decides from the quota and the
    operator's fallback (TRAINYARD_GPU_AUTO_FALLBACK)."""
    operator_factory(TRAINYARD_GPU_AUTO_FALLBACK="2")
    jobs.core.create_namespaced_resource_quota(
        namespace,
        {"metadata": {"name": "two-gpus"}, "spec": {"hard": {"requests.nvidia.com/gpu": "2"}}},
    )
    auto_job(jobs, "fallback", workers=2)
    gpus = gpus_status(jobs, "fallback")
    assert (gpus["perWorker"], gpus["reason"]) == (1, "NodesNotRead")
    assert "TRAINYARD_GPU_AUTO_FALLBACK=2" in gpus["message"]
    assert "ResourceQuota two-gpus" in gpus["message"]
    pods = jobs.wait_pods("fallback", 2)
    assert [gpu_limit(p) for p in pods] == ["1", "1"]
    jobs.wait_phase("fallback", "Running")


# --- kept across restarts, changed when the cluster cannot meet it ---------------------------


def test_a_restart_keeps_the_choice_until_a_gpu_node_vanishes(
    reading_operator: OperatorProcess,
    jobs: Jobs,
    node_pool: PoolFactory,
    api_client: client.ApiClient,
    namespace: str,
) -> None:
    """Documented: a choice is kept for every gang while the cluster still meets it; when a
    GPU node is removed and the workers no longer fit with it, the next gang gets a new
    choice and a GpusChanged warning says why."""
    first, second = node_pool(gpu=1), node_pool(gpu=1)
    pools = {"key": nodes.CLUSTER_LABEL, "operator": "In", "values": [first.name, second.name]}
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [pools]}]
            }
        }
    }
    auto_job(jobs, "keep", workers=2, scheduling={"affinity": affinity})
    chosen = gpus_status(jobs, "keep")
    assert chosen["perWorker"] == 8
    jobs.wait_pods("keep", 2, restart=0)
    jobs.wait_phase("keep", "Running")

    # a worker killed: the next gang keeps the choice (the cluster still meets it)
    jobs.annotate_pod("keep-worker-1", {"fake.trainyard.dev/exit-code": "137"})
    pods = jobs.wait_pods("keep", 2, restart=1)
    assert [gpu_limit(p) for p in pods] == ["8", "8"]
    assert jobs.status("keep")["gpus"] == chosen
    jobs.wait_phase("keep", "Running")

    # the second pool's node goes: its agent stops and the node is removed (as a drain and a
    # scale-down do), and the worker that ran there is evicted
    gone = second.gpu_nodes[0]
    stop_agent(second)
    core = client.CoreV1Api(api_client)
    core.delete_node(gone)
    (lost,) = [p for p in pods if p["spec"]["nodeName"] == gone]
    core.delete_namespaced_pod(lost["metadata"]["name"], namespace, grace_period_seconds=0)

    kind, _, message = event(jobs, "keep", "GpusChanged")
    assert kind == "Warning"
    assert message.startswith("8 per worker can no longer be met (the GPU nodes the workers")
    assert "gpus auto chose 4 nvidia.com/gpu per worker" in message
    changed = jobs.status("keep")["gpus"]
    assert (changed["perWorker"], changed["previous"]) == (4, 8)
    pods = jobs.wait_pods("keep", 2, restart=2)
    assert [gpu_limit(p) for p in pods] == ["4", "4"]
    assert {p["spec"]["nodeName"] for p in pods} == set(first.gpu_nodes)
    assert [env_of(p)["PET_NPROC_PER_NODE"] for p in pods] == ["4", "4"]
    jobs.wait_phase("keep", "Running")


def test_node_reads_without_the_rule_stop_the_operator_saying_so(
    operator_factory: Callable[..., OperatorProcess],
) -> None:
    """Without the node rule kopf's watch would retry forbidden lists while holding back every
    job; the operator refuses to start instead, naming what is missing."""
    try:
        process = operator_factory(TRAINYARD_READ_NODES="true")
    except OperatorStartError as err:
        log = str(err)
    else:
        wait_for("the operator to stop", lambda: not process.running(), timeout=60)
        log = process.log_tail(40)
    assert "TRAINYARD_READ_NODES needs list and watch on nodes" in log
    assert "node-reader-rules.yaml" in log
