"""The job's headless Service `<job>`: stable DNS names for the workers.

With `hostname: <job>-worker-<i>` and `subdomain: <job>` on each pod, the Service gives
`<job>-worker-0.<job>.<ns>.svc`, the rendezvous address in every worker's env.
`publishNotReadyAddresses` publishes the names before the pods are ready, because torchrun
must reach worker 0 while every worker is still starting.
"""

from __future__ import annotations

from typing import Any

from trainyard_operator.api.constants import LABEL_JOB_NAME, MASTER_PORT, METRICS_PORT
from trainyard_operator.api.job import TrainingJob
from trainyard_operator.builders.meta import child_metadata


def headless_service(job: TrainingJob) -> dict[str, Any]:
    """Service `<job>` selecting the job's worker pods (no cluster IP)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_metadata(job, job.name),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {LABEL_JOB_NAME: job.name},
            "ports": [
                {"name": "rdzv", "port": MASTER_PORT, "targetPort": MASTER_PORT, "protocol": "TCP"},
                {
                    "name": "metrics",
                    "port": METRICS_PORT,
                    "targetPort": METRICS_PORT,
                    "protocol": "TCP",
                },
            ],
        },
    }
