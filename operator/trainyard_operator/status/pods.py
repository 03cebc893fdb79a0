"""A worker pod as the status logic sees it: the few facts that decide a job's state.

`PodView.from_object` turns a core/v1 Pod (as the API server or kopf's watch gives it) into
this small frozen value. The handlers keep an in-memory index of these by job (fed by kopf's
pod watch), and `trainyard_operator.status.reconcile` reads nothing else about pods — so the
policies can be unit-tested with plain values and no API server.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from trainyard_operator.api.constants import (
    LABEL_JOB_NAME,
    LABEL_RESTART,
    LABEL_WORKER_INDEX,
    TRAINER_CONTAINER,
)
from trainyard_operator.status.times import parse_time

# Container waiting reasons that mean the image will not arrive without a human's help.
IMAGE_PULL_REASONS = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
)


@dataclass(frozen=True)
class PodView:
    """The facts about one worker pod that the run policies need."""

    name: str
    uid: str
    job: str
    index: int
    restart: int
    phase: str = "Pending"
    """Pod phase: Pending, Running, Succeeded, Failed or Unknown."""
    deletion_due: datetime | None = None
    """metadata.deletionTimestamp: set once the pod is deleted, to when its grace period ends
    and it should be gone."""
    ready: bool = False
    ip: str = ""
    node: str = ""
    created: datetime | None = None
    exit_code: int | None = None
    """The trainer container's exit code once it terminated."""
    termination_message: str = ""
    waiting_reason: str = ""
    """The trainer container's waiting reason (e.g. ErrImagePull) while Pending."""
    unschedulable: str | None = None
    """The scheduler's message while the PodScheduled condition is False/Unschedulable."""
    disruption: str | None = None
    """"<reason>: <message>" of a DisruptionTarget=True condition: the pod is being taken
    away (eviction, preemption, its node's taint or shutdown) rather than failing by itself."""
    owner_uid: str = ""
    """UID of the pod's controller ownerReference ("" when it has none: orphaned)."""
    resource_version: int = 0
    """metadata.resourceVersion as a number (etcd's are increasing integers; 0 if not): the
    consistency pass compares it with a list's to tell a ghost from a pod newer than the list."""

    @property
    def deleting(self) -> bool:
        """The pod is on its way out (deleted, perhaps still in its grace period)."""
        return self.deletion_due is not None

    @property
    def finished(self) -> bool:
        """The pod's containers have stopped for good (Succeeded or Failed)."""
        return self.phase in ("Succeeded", "Failed")

    @property
    def blocked_reason(self) -> str | None:
        """Why a Pending pod cannot start (Unschedulable / ImagePullFailed), or None."""
        if self.phase != "Pending":
            return None
        if self.waiting_reason in IMAGE_PULL_REASONS:
            return "ImagePullFailed"
        if self.unschedulable is not None:
            return "Unschedulable"
        return None

    @classmethod
    def from_object(cls, pod: Mapping[str, Any]) -> PodView | None:
        """Parse a Pod; None when it is not a Trainyard worker (labels missing or malformed)."""
        meta = pod.get("metadata") or {}
        labels = meta.get("labels") or {}
        try:
            job = str(labels[LABEL_JOB_NAME])
            index = int(labels[LABEL_WORKER_INDEX])
            restart = int(labels.get(LABEL_RESTART, "0"))
        except (KeyError, ValueError):
            return None
        status = pod.get("status") or {}
        spec = pod.get("spec") or {}
        ready = False
        unschedulable: str | None = None
        disruption: str | None = None
        for cond in status.get("conditions") or []:
            if cond.get("type") == "Ready":
                ready = cond.get("status") == "True"
            elif cond.get("type") == "DisruptionTarget" and cond.get("status") == "True":
                disruption = f"{cond.get('reason') or 'Disrupted'}: {cond.get('message') or ''}"
                disruption = disruption.rstrip(": ")
            elif (
                cond.get("type") == "PodScheduled"
                and cond.get("status") == "False"
                and cond.get("reason") == "Unschedulable"
            ):
                unschedulable = str(cond.get("message") or "no node fits the pod")
        exit_code: int | None = None
        message = ""
        waiting = ""
        statuses = status.get("containerStatuses") or []
        # by name: a kubelet sorts statuses by container name, so a sidecar from podTemplate
        # named before "trainer" comes first
        trainer = next((s for s in statuses if s.get("name") == TRAINER_CONTAINER), None)
        if trainer is not None:
            state = trainer.get("state") or {}
            terminated = state.get("terminated")
            if terminated:
                exit_code = int(terminated.get("exitCode", 0))
                message = str(terminated.get("message") or "")
            waiting_state = state.get("waiting")
            if waiting_state:
                waiting = str(waiting_state.get("reason") or "")
        created = meta.get("creationTimestamp")
        deleted = meta.get("deletionTimestamp")
        owner: Mapping[str, Any] = next(
            (ref for ref in meta.get("ownerReferences") or [] if ref.get("controller")), {}
        )
        return cls(
            name=str(meta.get("name", "")),
            uid=str(meta.get("uid", "")),
            job=job,
            index=index,
            restart=restart,
            phase=str(status.get("phase") or "Pending"),
            deletion_due=parse_time(deleted) if deleted else None,
            ready=ready,
            ip=str(status.get("podIP") or ""),
            node=str(spec.get("nodeName") or ""),
            created=parse_time(created) if created else None,
            exit_code=exit_code,
            termination_message=message,
            waiting_reason=waiting,
            unschedulable=unschedulable,
            disruption=disruption,
            owner_uid=str(owner.get("uid") or ""),
            resource_version=_version(meta.get("resourceVersion")),
        )


def _version(value: object) -> int:
    text = str(value or "")
    return int(text) if text.isdigit() else 0
