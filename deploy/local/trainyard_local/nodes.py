"""The fake Node objects of a local cluster: names, capacity, labels, taints and conditions.

Pure functions, shared by `agent.py` (which registers and heartbeats the nodes) and
`cluster.py` (which waits for them to be Ready). CPU nodes are `<cluster>-cpu-<i>`; GPU nodes
`<cluster>-gpu-<i>` carry `nvidia.com/gpu` capacity, the label `nvidia.com/gpu.present=true`
and the taint `nvidia.com/gpu=present:NoSchedule`, like GPU nodes set up by NVIDIA's
device plugin and most managed clusters. Every node is labelled `trainyard.dev/agent=<runner>`
so that exactly one agent owns it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

AGENT_LABEL = "trainyard.dev/agent"
CLUSTER_LABEL = "trainyard.dev/cluster"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRESENT_LABEL = "nvidia.com/gpu.present"
#: Added by the TaintNodesByCondition admission plugin to every new node; a kubelet's first
#: Ready status lets the node-lifecycle controller remove it. The agent removes it itself
#: right after registering, so that pods can be scheduled without waiting for that controller.
NOT_READY_TAINT = "node.kubernetes.io/not-ready"
#: Every node reports this address; pod IPs come from 127.1.0.0/16 or 127.2.0.0/16.
NODE_IP = "127.0.0.1"

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def check_cluster_name(name: str) -> str:
    """Reject a name that cannot be part of a node name (a DNS label, at most 40 characters)."""
    if not _DNS_LABEL.match(name) or len(name) > 40:
        raise ValueError(
            f"--name {name!r}: must be lower-case letters, digits and '-', start and end with a "
            "letter or digit, and be at most 40 characters"
        )
    return name


@dataclass(frozen=True)
class NodeSpec:
    """What one fake node offers."""

    name: str
    cpu: str
    memory: str
    gpus: int = 0
    pods: int = 110
    ephemeral_storage: str = "100Gi"

    @property
    def capacity(self) -> dict[str, str]:
        capacity = {
            "cpu": self.cpu,
            "memory": self.memory,
            "pods": str(self.pods),
            "ephemeral-storage": self.ephemeral_storage,
        }
        if self.gpus:
            capacity[GPU_RESOURCE] = str(self.gpus)
        return capacity


def plan_nodes(cluster: str, cpu_nodes: int, gpu_nodes: int, gpus_per_node: int) -> list[NodeSpec]:
    """The nodes of a cluster, CPU nodes first; rejects negative counts naming the option."""
    for option, value in (
        ("--cpu-nodes", cpu_nodes),
        ("--gpu-nodes", gpu_nodes),
        ("--gpus-per-node", gpus_per_node),
    ):
        if value < 0:
            raise ValueError(f"{option}: must be >= 0, got {value}")
    if gpu_nodes and gpus_per_node < 1:
        raise ValueError(
            f"--gpus-per-node: must be >= 1 when --gpu-nodes is set, got {gpus_per_node}"
        )
    if cpu_nodes + gpu_nodes == 0:
        raise ValueError("--cpu-nodes/--gpu-nodes: a cluster needs at least one node")
    specs = [NodeSpec(f"{cluster}-cpu-{i}", cpu="8", memory="32Gi") for i in range(cpu_nodes)]
    specs += [
        # GPU machines carry more host CPU and memory per GPU; 8 GPUs ~ a DGX-like box
        NodeSpec(f"{cluster}-gpu-{i}", cpu="32", memory="256Gi", gpus=gpus_per_node)
        for i in range(gpu_nodes)
    ]
    return specs


def node_manifest(spec: NodeSpec, *, cluster: str, runner: str) -> dict[str, Any]:
    """The Node object the agent creates (status is written separately, see node_status)."""
    labels = {
        "kubernetes.io/hostname": spec.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "node.kubernetes.io/instance-type": "trainyard-gpu" if spec.gpus else "trainyard-cpu",
        AGENT_LABEL: runner,
        CLUSTER_LABEL: cluster,
    }
    taints: list[dict[str, str]] = []
    if spec.gpus:
        labels[GPU_PRESENT_LABEL] = "true"
        taints.append({"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"})
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": spec.name,
            "labels": labels,
            "annotations": {
                "trainyard.dev/note": "fake node run by the trainyard_local agent (dev/test only)"
            },
        },
        "spec": {"taints": taints},
    }


def node_status(
    spec: NodeSpec, *, runner: str, now: str, kube_version: str, log_port: int = 0
) -> dict[str, Any]:
    """The node's status: capacity = allocatable, Ready and the pressure conditions."""

    def condition(kind: str, status: str, reason: str, message: str) -> dict[str, str]:
        return {
            "type": kind,
            "status": status,
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }

    return {
        "capacity": spec.capacity,
        "allocatable": spec.capacity,
        "conditions": [
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "fake node"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "fake node"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "fake node"),
            condition("Ready", "True", "KubeletReady", f"trainyard_local {runner} agent is ready"),
        ],
        "addresses": [
            {"type": "InternalIP", "address": NODE_IP},
            {"type": "Hostname", "address": spec.name},
        ],
        # where kube-apiserver fetches `kubectl logs`: the agent's log server
        "daemonEndpoints": {"kubeletEndpoint": {"Port": log_port}},
        "nodeInfo": {
            "machineID": "",
            "systemUUID": "",
            "bootID": "",
            "kernelVersion": "",
            "osImage": f"trainyard_local {runner} agent (not a kubelet)",
            "containerRuntimeVersion": f"trainyard-{runner}://0",
            "kubeletVersion": kube_version,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": "amd64",
        },
    }


def is_ready(node: dict[str, Any]) -> bool:
    """Ready=True and no not-ready taint: the scheduler will place pods on it."""
    conditions = node.get("status", {}).get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    taints = node.get("spec", {}).get("taints") or []
    return ready and not any(t.get("key") == NOT_READY_TAINT for t in taints)
