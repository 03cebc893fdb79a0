"""The job's NetworkPolicy `<job>`: who may open connections to its worker pods.

Without one, any pod of the cluster can reach a job's rendezvous store (torchrun's c10d store
on `MASTER_PORT`), its collectives (NCCL/Gloo) and its trainer metrics (`METRICS_PORT`). With
TRAINYARD_NETWORK_POLICY the operator creates this policy beside the headless Service, owned
by the job, so the garbage collector deletes it with the job. It admits:

- the job's own worker pods, on every port: the collectives listen on ephemeral ports chosen
  at run time, so no port list could name them (the rendezvous port is among them);
- on the trainer metrics port only, pods in the monitoring namespaces (Prometheus) and the
  operator's own pods, which read worker 0's /metrics for progress.

Only ingress is confined: workers still need DNS, their datasets and object stores, whose
addresses a policy could not know.
"""

from __future__ import annotations

import copy
from typing import Any

from trainyard_operator.api.constants import LABEL_JOB_NAME
from trainyard_operator.api.job import TrainingJob
from trainyard_operator.builders.meta import child_metadata
from trainyard_operator.builders.settings import BuildSettings

#: Label the API server sets on every namespace to its own name (Kubernetes 1.22+).
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


def network_policy(job: TrainingJob, settings: BuildSettings) -> dict[str, Any]:
    """NetworkPolicy `<job>` over the job's worker pods (needs `settings.network_policy`)."""
    peers = settings.network_policy
    if peers is None:
        raise ValueError("the per-job NetworkPolicy is off (BuildSettings.network_policy)")
    workers = {"matchLabels": {LABEL_JOB_NAME: job.name}}
    # the same port the worker container declares as `metrics`
    metrics = [{"port": settings.metrics_port, "protocol": "TCP"}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": child_metadata(job, job.name),
        "spec": {
            "podSelector": copy.deepcopy(workers),
            "policyTypes": ["Ingress"],
            "ingress": [
                # no `ports`: every port, for the job's own workers alone
                {"from": [{"podSelector": copy.deepcopy(workers)}]},
                {
                    "from": [
                        {"namespaceSelector": copy.deepcopy(dict(peers.monitoring_namespaces))},
                        # one peer with both selectors: those pods in that namespace only
                        {
                            "namespaceSelector": {
                                "matchLabels": {NAMESPACE_NAME_LABEL: peers.operator_namespace}
                            },
                            "podSelector": copy.deepcopy(dict(peers.operator_pods)),
                        },
                    ],
                    "ports": metrics,
                },
            ],
        },
    }
