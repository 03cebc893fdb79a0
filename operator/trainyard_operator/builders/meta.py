"""Names, labels and the owner reference every child of a TrainingJob carries.

Deterministic names (`<job>`, `<job>-worker-<i>`) are what let a restarted operator find
its children instead of creating duplicates; the ownerReference lets the garbage collector
delete them with the job.
"""

from __future__ import annotations

from typing import Any

from trainyard_operator.api.constants import (
    API_VERSION,
    KIND,
    LABEL_JOB_NAME,
    LABEL_MANAGED_BY,
    MANAGED_BY,
)
from trainyard_operator.api.job import TrainingJob


def worker_name(job: TrainingJob, index: int) -> str:
    """Pod name (and hostname) of worker `index`."""
    return f"{job.name}-worker-{index}"


def master_address(job: TrainingJob) -> str:
    """DNS name of worker 0 through the job's headless Service."""
    return f"{worker_name(job, 0)}.{job.name}.{job.namespace}.svc"


def owner_reference(job: TrainingJob) -> dict[str, Any]:
    """The controller reference to the job (the garbage collector deletes children with it)."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": job.name,
        "uid": job.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def job_labels(job: TrainingJob) -> dict[str, str]:
    """Labels shared by every child: which job it belongs to and who manages it."""
    return {LABEL_JOB_NAME: job.name, LABEL_MANAGED_BY: MANAGED_BY}


def child_metadata(job: TrainingJob, name: str) -> dict[str, Any]:
    """metadata of a child that is not a worker pod (Service, PodGroup)."""
    return {
        "name": name,
        "namespace": job.namespace,
        "labels": job_labels(job),
        "ownerReferences": [owner_reference(job)],
    }
