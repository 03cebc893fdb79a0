"""Worker pods: `worker_pod(job, index, restart, settings)` builds pod `<job>-worker-<index>`.

The pod follows the contract of docs/contracts.md: a stable hostname under the
job's headless Service, the torchrun env (`env.py`), GPU limits plus the GPU taint's
toleration, the restricted Pod Security profile, no service-account token, the output and
shared-memory volumes, and the labels and owner reference the operator finds it by.
`spec.podTemplate` is merged in last (`merge_overrides`), except for the few fields the
operator itself depends on.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from trainyard_operator.api.constants import (
    DEFAULT_COMMAND,
    GPU_RESOURCE,
    LABEL_RESTART,
    LABEL_WORKER_INDEX,
    OUTPUT_VOLUME,
    RESERVED_ENV,
    RESERVED_ENV_PREFIXES,
    TERMINATION_LOG,
    TRAINER_CONTAINER,
)
from trainyard_operator.api.job import TrainingJob
from trainyard_operator.builders.env import worker_env
from trainyard_operator.builders.meta import job_labels, owner_reference, worker_name
from trainyard_operator.builders.podgroup import gang_membership
from trainyard_operator.builders.settings import BuildSettings

SHM_VOLUME = "dshm"
RUN_AS_USER = 1000

# Pod fields the operator relies on (DNS names, who restarts what); podTemplate cannot
# change them.
PROTECTED_POD_FIELDS = ("hostname", "subdomain", "restartPolicy")

GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}


#: What the restricted Pod Security profile asks of every container; the trainer has it,
#: and sidecars or init containers from spec.podTemplate get it wherever they set nothing.
RESTRICTED_CONTAINER_DEFAULTS: Mapping[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
}


def _resources(job: TrainingJob) -> dict[str, Any]:
    res = job.spec.resources
    amounts: dict[str, str] = {"cpu": res.cpu, "memory": res.memory}
    if job.gpus > 0:
        amounts[GPU_RESOURCE] = str(job.gpus)
    # Requests equal limits: Guaranteed QoS, and the GPU count the scheduler sees is exact.
    return {"requests": dict(amounts), "limits": dict(amounts)}


def _volumes(job: TrainingJob, settings: BuildSettings) -> list[dict[str, Any]]:
    output = job.spec.output
    source: dict[str, Any] = (
        {"persistentVolumeClaim": {"claimName": output.volume_claim_name}}
        if output.volume_claim_name
        else {"emptyDir": {}}
    )
    shm: dict[str, Any] = {"medium": "Memory"}
    if settings.shm_size_limit:
        shm["sizeLimit"] = settings.shm_size_limit
    # DDP's data loaders and gloo pass tensors through /dev/shm; a container's default
    # 64 MiB is too small for them.
    return [{"name": OUTPUT_VOLUME, **source}, {"name": SHM_VOLUME, "emptyDir": shm}]


def _container(
    job: TrainingJob, index: int, restart: int, settings: BuildSettings
) -> dict[str, Any]:
    spec = job.spec
    ports = [{"name": "metrics", "containerPort": settings.metrics_port, "protocol": "TCP"}]
    if index == 0:
        # Only worker 0 listens for the rendezvous (torchrun's static c10d store).
        ports.append({"name": "rdzv", "containerPort": settings.master_port, "protocol": "TCP"})
    container: dict[str, Any] = {
        "name": TRAINER_CONTAINER,
        "image": spec.image or settings.trainer_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": list(spec.command) or list(DEFAULT_COMMAND),
        "env": worker_env(job, index, restart, settings),
        "ports": ports,
        "resources": _resources(job),
        "volumeMounts": [
            {"name": OUTPUT_VOLUME, "mountPath": spec.output.path},
            {"name": SHM_VOLUME, "mountPath": "/dev/shm"},
        ],
        "terminationMessagePath": TERMINATION_LOG,
        # A trainer that dies before writing its message still leaves the log's tail.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            **copy.deepcopy(RESTRICTED_CONTAINER_DEFAULTS),
            # torch and the data loaders write caches under $HOME and /tmp.
            "readOnlyRootFilesystem": False,
        },
    }
    if spec.args:
        container["args"] = list(spec.args)
    return container


def _tolerations(job: TrainingJob) -> list[dict[str, Any]]:
    tolerations = [dict(t) for t in job.spec.scheduling.tolerations]
    if job.gpus > 0 and GPU_TOLERATION not in tolerations:
        tolerations.append(dict(GPU_TOLERATION))
    return tolerations


def worker_pod(
    job: TrainingJob, index: int, restart: int, settings: BuildSettings
) -> dict[str, Any]:
    """Pod `<job>-worker-<index>` of gang attempt `restart`."""
    if not 0 <= index < job.spec.workers:
        raise ValueError(f"worker index {index} is outside 0..{job.spec.workers - 1}")
    if restart < 0:
        raise ValueError(f"restart must be >= 0, got {restart}")
    name = worker_name(job, index)
    scheduling = job.spec.scheduling
    template = job.spec.pod_template.metadata
    group = gang_membership(job, settings)

    # The trainyard labels come last so that no template label can hide a pod from the
    # operator or move it to another job.
    labels = {
        **template.labels,
        **group.labels,
        **job_labels(job),
        LABEL_WORKER_INDEX: str(index),
        LABEL_RESTART: str(restart),
    }
    annotations = {**template.annotations, **group.annotations}
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": job.namespace,
        "labels": labels,
        "ownerReferences": [owner_reference(job)],
    }
    if annotations:
        metadata["annotations"] = annotations

    pod_spec: dict[str, Any] = {
        "hostname": name,
        "subdomain": job.name,
        # The operator restarts the whole gang; a kubelet restarting one rank would hang DDP.
        "restartPolicy": "Never",
        "automountServiceAccountToken": settings.automount_service_account_token,
        # Service env vars of every Service in the namespace are noise to a trainer.
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "runAsGroup": RUN_AS_USER,
            "fsGroup": RUN_AS_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [_container(job, index, restart, settings)],
        "volumes": _volumes(job, settings),
    }
    tolerations = _tolerations(job)
    if tolerations:
        pod_spec["tolerations"] = tolerations
    if scheduling.node_selector:
        pod_spec["nodeSelector"] = dict(scheduling.node_selector)
    if scheduling.affinity:
        pod_spec["affinity"] = copy.deepcopy(scheduling.affinity)
    if scheduling.priority_class_name:
        pod_spec["priorityClassName"] = scheduling.priority_class_name
    scheduler = scheduling.scheduler_name or group.scheduler_name
    if scheduler:
        pod_spec["schedulerName"] = scheduler

    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": merge_overrides(pod_spec, job.spec.pod_template.spec.as_patch()),
    }


def _is_reserved(env_name: str) -> bool:
    return env_name in RESERVED_ENV or env_name.startswith(RESERVED_ENV_PREFIXES)


def _merge_container(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = _deep_merge(base, {k: v for k, v in override.items() if k not in ("name", "env")})
    extra_env = [e for e in override.get("env") or [] if not _is_reserved(str(e.get("name")))]
    merged["env"] = base["env"] + copy.deepcopy(extra_env)
    return merged


def _deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Objects merge key by key, lists append, anything else is replaced."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        current = out.get(key)
        if isinstance(current, dict) and isinstance(value, Mapping):
            out[key] = _deep_merge(current, value)
        elif isinstance(current, list) and isinstance(value, list):
            out[key] = current + copy.deepcopy(value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def merge_overrides(pod_spec: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """`spec.podTemplate.spec` merged into a generated pod spec.

    Objects merge key by key and lists append (so `volumes` adds volumes and a
    `securityContext` key changes just that key); the container named `trainer` (or the
    first one without a name) is merged into the worker container, and other containers are
    added after it as sidecars. The contract's env names and the fields the operator relies
    on (PROTECTED_POD_FIELDS) keep their generated values.
    """
    if not override:
        return pod_spec
    rest = {k: v for k, v in override.items() if k not in ("containers", *PROTECTED_POD_FIELDS)}
    merged = _deep_merge(pod_spec, rest)
    containers = list(pod_spec["containers"])
    for i, extra in enumerate(override.get("containers") or []):
        name = extra.get("name")
        if name == TRAINER_CONTAINER or (name is None and i == 0):
            containers[0] = _merge_container(containers[0], extra)
        else:
            containers.append(copy.deepcopy(dict(extra)))
    merged["containers"] = containers
    # sidecars and init containers from the podTemplate get the worker's restricted defaults
    # under their own settings, so a plain sidecar passes a restricted namespace too
    for i in range(1, len(containers)):
        containers[i] = _restricted_by_default(containers[i])
    if override.get("initContainers"):
        merged["initContainers"] = [_restricted_by_default(c) for c in merged["initContainers"]]
    return merged


def _restricted_by_default(container: Mapping[str, Any]) -> dict[str, Any]:
    """The container with the restricted profile's settings wherever it sets none itself."""
    out = dict(container)
    own = container.get("securityContext") or {}
    out["securityContext"] = {**copy.deepcopy(RESTRICTED_CONTAINER_DEFAULTS), **own}
    return out
