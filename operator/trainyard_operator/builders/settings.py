"""`BuildSettings`: the operator-wide choices the builders need besides the job itself.

The handlers build one from the operator's settings (`trainyard_operator.settings`) at start
and pass it to every builder call; it is frozen, so a builder's output depends only on its
arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from trainyard_operator.api.constants import MASTER_PORT, METRICS_PORT

PodGroupFlavor = Literal["scheduler-plugins", "volcano"]
ImagePullPolicy = Literal["Always", "IfNotPresent", "Never"]


@dataclass(frozen=True)
class NetworkPolicySettings:
    """Who besides a job's own workers may reach them: on the trainer metrics port only."""

    operator_namespace: str
    """Namespace of the operator's pods, which read worker 0's metrics for progress."""
    operator_pods: Mapping[str, Any]
    """LabelSelector of the operator's pods in that namespace."""
    monitoring_namespaces: Mapping[str, Any]
    """LabelSelector of the namespaces whose pods may scrape the trainer metrics."""

    def __post_init__(self) -> None:
        # without it the operator's own progress reads would be shut out
        if not self.operator_namespace:
            raise ValueError("a job's NetworkPolicy needs the operator's namespace")


@dataclass(frozen=True)
class BuildSettings:
    """Operator-wide inputs of the builders."""

    trainer_image: str
    """Image of jobs whose spec.image is empty."""
    image_pull_policy: ImagePullPolicy = "IfNotPresent"
    """imagePullPolicy of the worker container."""
    metrics_port: int = METRICS_PORT
    """Port of the trainer's metrics endpoint (container port `metrics`)."""
    master_port: int = MASTER_PORT
    """torchrun's static rendezvous port on worker 0 (container port `rdzv`)."""
    automount_service_account_token: bool = False
    """Trainer pods get no API credentials: results leave through the termination message."""
    pod_group_flavor: PodGroupFlavor | None = None
    """The PodGroup API installed in the cluster (None: none). When set, worker pods carry
    that flavour's group label/annotation (and Volcano's scheduler name) unless the job's
    scheduling.gang is Disabled -- set it together with creating the PodGroup."""
    shm_size_limit: str | None = None
    """sizeLimit of the memory-backed /dev/shm volume (None: bounded by the memory limit)."""
    log_format: Literal["text", "json"] = "text"
    """TRAINYARD_LOG_FORMAT of the trainers: the operator's own (text or JSON lines)."""
    network_policy: NetworkPolicySettings | None = None
    """With a value, each job gets a NetworkPolicy (builders.networkpolicy) created with its
    headless Service; None: no policy (TRAINYARD_NETWORK_POLICY off)."""
