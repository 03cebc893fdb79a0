"""`spec.resources.gpus: auto`: how many GPUs each worker gets, and whether a choice still holds.

Pure: the handlers read the cluster into a `GpuCapacity` (the GPU nodes of the operator's node
watch, or None where it does not read nodes, and the namespace's ResourceQuotas) and
`reconcile` asks `choose` when a job's first gang is created and `unmet` before every later
one. The rule (docs/operator.md, "GPUs: auto"):

1. The nodes a worker may land on: GPU nodes that are Ready and not cordoned, match
   spec.scheduling.nodeSelector and the required node affinity, and whose NoSchedule and
   NoExecute taints the workers tolerate (their tolerations plus the nvidia.com/gpu one that
   every GPU worker gets).
2. The quota: the smallest GPU limit (`requests.nvidia.com/gpu`) among the namespace's
   ResourceQuotas whose scopes take in the workers. The limit, not what is free now: a choice
   must not shrink because other jobs happen to run (such a gang waits, refused, as any).
3. Per worker: the most GPUs g (1 to 64) with which all W workers fit at once -- the sum over
   those nodes of floor(GPUs / g) is at least W, each worker's GPUs on one node -- and W x g
   within the quota; else 0 (CPU, gloo). So workers get a whole node each when there are W
   such nodes, share nodes evenly when fewer, and 1 GPU each if only that fits. An integer
   procsPerWorker p allows only g = p (one process per GPU) or 0. Without node reads, "fits
   on the nodes" becomes g <= the operator's fallback (TRAINYARD_GPU_AUTO_FALLBACK).

Allocatable GPUs, not free ones, are counted for the same reason as the quota's limit: a
choice describes what the cluster can hold, and the scheduler queues the gang until it does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from trainyard_operator.api.constants import GPU_RESOURCE
from trainyard_operator.api.job import TrainingJob
from trainyard_operator.api.spec import MAX_GPUS_PER_WORKER

#: The toleration every GPU worker gets (builders.pods adds it to the pod).
GPU_TOLERATION: Mapping[str, str] = {
    "key": GPU_RESOURCE,
    "operator": "Exists",
    "effect": "NoSchedule",
}
#: Quota keys that bound nvidia.com/gpu (Kubernetes takes extended resources in a quota only
#: as requests.<name>; the bare name is read too, for quotas written the core way).
QUOTA_KEYS = (f"requests.{GPU_RESOURCE}", GPU_RESOURCE)
#: Taint effects that keep a pod off a node (PreferNoSchedule only discourages).
BLOCKING_EFFECTS = frozenset({"NoSchedule", "NoExecute"})
#: Node names listed in a message before "and N more".
NAMES_SHOWN = 3


@dataclass(frozen=True)
class Taint:
    """A node taint."""

    key: str
    value: str = ""
    effect: str = ""


@dataclass(frozen=True)
class NodeView:
    """The facts about one GPU node that the rule reads."""

    name: str
    gpus: int
    """Allocatable nvidia.com/gpu."""
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[Taint, ...] = ()
    unschedulable: bool = False
    """Cordoned (spec.unschedulable)."""
    ready: bool = True
    """The Ready condition is True."""


@dataclass(frozen=True)
class ScopeRequirement:
    """One scope a ResourceQuota is limited to (spec.scopes, spec.scopeSelector)."""

    scope: str
    operator: str = "Exists"
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class QuotaView:
    """A ResourceQuota of the job's namespace that limits GPUs."""

    name: str
    gpus: int
    """The smallest of its hard limits in QUOTA_KEYS."""
    key: str = QUOTA_KEYS[0]
    """Which key that limit is under."""
    scopes: tuple[ScopeRequirement, ...] = ()


@dataclass(frozen=True)
class GpuCapacity:
    """What `gpus: auto` decides from, as the handlers read it for one job."""

    nodes: tuple[NodeView, ...] | None
    """The GPU nodes of the cluster; None when the operator does not read nodes."""
    quotas: tuple[QuotaView, ...] = ()
    """The namespace's ResourceQuotas that limit GPUs."""
    fallback: int = 0
    """GPUs per worker assumed to fit on the nodes when they are not read."""
    quota_error: str = ""
    """Why the quotas could not be read (they are then not taken into account)."""


@dataclass(frozen=True)
class Choice:
    """GPUs per worker and why."""

    per_worker: int
    reason: str
    """GpusFit, NoGpuNodes, GpusDoNotFit, QuotaTooSmall or NodesNotRead."""
    message: str


# --- which nodes a worker may land on ------------------------------------------------------


def tolerates(tolerations: Iterable[Mapping[str, Any]], taint: Taint) -> bool:
    """Whether any toleration matches the taint (core/v1 semantics)."""
    for tol in tolerations:
        effect = str(tol.get("effect") or "")
        if effect and effect != taint.effect:
            continue
        key = str(tol.get("key") or "")
        if str(tol.get("operator") or "Equal") == "Exists":
            if not key or key == taint.key:
                return True
        elif key == taint.key and str(tol.get("value") or "") == taint.value:
            return True
    return False


def _requirement_matches(node: NodeView, requirement: Mapping[str, Any], *, on_field: bool) -> bool:
    key = str(requirement.get("key") or "")
    operator = str(requirement.get("operator") or "")
    values = [str(v) for v in requirement.get("values") or []]
    if on_field:  # matchFields: only metadata.name is defined
        present, value = key == "metadata.name", node.name
    else:
        present, value = key in node.labels, node.labels.get(key, "")
    if operator == "In":
        return present and value in values
    if operator == "NotIn":
        return not present or value not in values
    if operator == "Exists":
        return present
    if operator == "DoesNotExist":
        return not present
    if operator in ("Gt", "Lt") and present and len(values) == 1:
        try:
            number, bound = int(value), int(values[0])
        except ValueError:
            return False
        return number > bound if operator == "Gt" else number < bound
    return False


def affinity_matches(node: NodeView, affinity: Mapping[str, Any]) -> bool:
    """The required node affinity: any term whose every requirement holds (an empty term
    matches nothing, as in Kubernetes); no required affinity matches every node."""
    required = (affinity.get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    )
    if not required:
        return True
    for term in required.get("nodeSelectorTerms") or []:
        expressions = term.get("matchExpressions") or []
        fields = term.get("matchFields") or []
        if not expressions and not fields:
            continue
        if all(_requirement_matches(node, r, on_field=False) for r in expressions) and all(
            _requirement_matches(node, r, on_field=True) for r in fields
        ):
            return True
    return False


def left_out_because(node: NodeView, job: TrainingJob) -> str | None:
    """Why a GPU worker of the job may not land on the node, or None when it may."""
    scheduling = job.spec.scheduling
    if not node.ready:
        return "NotReady"
    if node.unschedulable:
        return "cordoned"
    if any(node.labels.get(k) != v for k, v in scheduling.node_selector.items()):
        return "left out by spec.scheduling.nodeSelector"
    if not affinity_matches(node, scheduling.affinity):
        return "left out by spec.scheduling.affinity"
    tolerations = [*scheduling.tolerations, GPU_TOLERATION]
    for taint in node.taints:
        if taint.effect in BLOCKING_EFFECTS and not tolerates(tolerations, taint):
            return f"tainted {taint.key}:{taint.effect}"
    return None


def _usable(job: TrainingJob, nodes: Sequence[NodeView]) -> tuple[list[NodeView], str]:
    """The GPU nodes the workers may land on, and what the others were left out for."""
    usable: list[NodeView] = []
    excluded: dict[str, list[str]] = {}
    for node in sorted(nodes, key=lambda n: n.name):
        why = left_out_because(node, job)
        if why is None:
            usable.append(node)
        else:
            excluded.setdefault(why, []).append(node.name)
    parts = [f"{len(names)} {why} ({_names(names)})" for why, names in excluded.items()]
    return usable, "; ".join(parts)


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(names[:NAMES_SHOWN])
    return shown if len(names) <= NAMES_SHOWN else f"{shown} and {len(names) - NAMES_SHOWN} more"


def _fit_count(nodes: Sequence[NodeView], per_worker: int) -> int:
    """How many workers of `per_worker` GPUs the nodes hold at once (each on one node)."""
    return sum(node.gpus // per_worker for node in nodes)


# --- the quota ----------------------------------------------------------------------------


#: The scopes a worker pod falls under (True) or not (False).
_WORKER_SCOPES = {
    "NotTerminating": True,
    "Terminating": False,
    "NotBestEffort": True,
    "BestEffort": False,
}


def _scope_applies(requirement: ScopeRequirement, priority_class: str) -> bool:
    """Whether the job's workers fall under one scope requirement of a quota.

    The workers request CPU and memory (not BestEffort) and have no activeDeadlineSeconds
    (NotTerminating); scopes not evaluated here count as applying, which can only lower
    the choice, never let it exceed a quota.
    """
    scope, operator, values = requirement.scope, requirement.operator, requirement.values
    if scope == "PriorityClass":
        if operator == "In":
            return priority_class in values
        if operator == "NotIn":
            return priority_class not in values
        present = bool(priority_class)
        return present if operator == "Exists" else not present
    holds = _WORKER_SCOPES.get(scope)
    if holds is None:
        return True
    return holds if operator != "DoesNotExist" else not holds


def quota_limit(job: TrainingJob, quotas: Sequence[QuotaView]) -> QuotaView | None:
    """The tightest ResourceQuota on GPUs that applies to the job's workers."""
    priority_class = job.spec.scheduling.priority_class_name
    applying = [q for q in quotas if all(_scope_applies(r, priority_class) for r in q.scopes)]
    return min(applying, key=lambda q: (q.gpus, q.name), default=None)


# --- the rule -----------------------------------------------------------------------------


def _candidates(job: TrainingJob) -> list[int]:
    procs = job.spec.procs_per_worker
    if procs != "auto":
        return [procs]  # one process per GPU, as for an integer gpus
    return list(range(MAX_GPUS_PER_WORKER, 0, -1))


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def choose(job: TrainingJob, capacity: GpuCapacity) -> Choice:
    """GPUs per worker for the job's next gang by the rule of the module docstring."""
    workers = job.spec.workers
    quota = quota_limit(job, capacity.quotas)
    allowed = quota.gpus // workers if quota is not None else MAX_GPUS_PER_WORKER
    quota_note = (
        f", within the namespace's ResourceQuota {quota.name} ({quota.key}: {quota.gpus})"
        if quota is not None
        else ""
    )
    if capacity.quota_error:
        quota_note += f"; the ResourceQuotas could not be read ({capacity.quota_error})"
    candidates = _candidates(job)
    procs_note = (
        f" (spec.procsPerWorker {candidates[0]}: one GPU per process or none)"
        if len(candidates) == 1
        else ""
    )
    if capacity.nodes is None:
        fallback = capacity.fallback
        source = (
            "the operator does not read nodes (TRAINYARD_READ_NODES is off, as in the chart's "
            f"namespaced mode) and assumes {fallback} per worker fit "
            f"(TRAINYARD_GPU_AUTO_FALLBACK={fallback})"
        )
        for gpus in candidates:
            if gpus <= fallback and gpus <= allowed:
                return Choice(gpus, "NodesNotRead", f"{_chose(gpus)}: {source}{quota_note}")
        if quota is not None and candidates[-1] <= fallback:
            # the fallback alone would have given GPUs: the quota is what says no
            cause = f"{_quota_short(quota, workers)}{procs_note}; {source}"
            return Choice(0, "QuotaTooSmall", f"{_chose(0)}: {cause}")
        return Choice(0, "NodesNotRead", f"{_chose(0)}: {source}{procs_note}{quota_note}")

    usable, excluded = _usable(job, capacity.nodes)
    left_out = f"; left out: {excluded}" if excluded else ""
    if not capacity.nodes:
        return Choice(0, "NoGpuNodes", f"{_chose(0)}: no node of the cluster has {GPU_RESOURCE}")
    if not usable:
        return Choice(
            0,
            "NoGpuNodes",
            f"{_chose(0)}: none of the {_plural(len(capacity.nodes), 'node')} with "
            f"{GPU_RESOURCE} is one the workers may use: {excluded}",
        )
    held = ", ".join(str(n.gpus) for n in usable[:8]) + (", ..." if len(usable) > 8 else "")
    where = f"the {_plural(len(usable), 'GPU node')} the workers may use ({held} GPUs)"
    for gpus in candidates:
        if _fit_count(usable, gpus) >= workers and gpus <= allowed:
            message = (
                f"{_chose(gpus)}: the most with which all {_plural(workers, 'worker')} fit at "
                f"once on {where}{quota_note}{left_out}"
            )
            return Choice(gpus, "GpusFit", message)
    smallest = candidates[-1]
    if _fit_count(usable, smallest) >= workers and quota is not None:
        return Choice(
            0,
            "QuotaTooSmall",
            f"{_chose(0)}: {_quota_short(quota, workers)}{procs_note}{left_out}",
        )
    per = "one GPU per worker" if smallest == 1 else f"{smallest} GPUs per worker"
    return Choice(
        0,
        "GpusDoNotFit",
        f"{_chose(0)}: {where} hold fewer than {per} for "
        f"{_plural(workers, 'worker')}{procs_note}{quota_note}{left_out}",
    )


def _chose(gpus: int) -> str:
    if gpus == 0:
        return "gpus auto chose 0 per worker (CPU, gloo)"
    return f"gpus auto chose {gpus} {GPU_RESOURCE} per worker"


def _quota_short(quota: QuotaView, workers: int) -> str:
    return (
        f"the namespace's ResourceQuota {quota.name} allows {quota.gpus} "
        f"({quota.key}), fewer than one GPU per worker for {_plural(workers, 'worker')}"
    )


def unmet(job: TrainingJob, capacity: GpuCapacity, per_worker: int) -> str | None:
    """Why a kept choice can no longer be met by the cluster (None: it still can).

    0 can always be met. Anything else must still fit the rule's test: procsPerWorker, the
    nodes the workers may use (or the fallback without node reads) and the quota.
    """
    if per_worker == 0:
        return None
    workers = job.spec.workers
    if per_worker not in _candidates(job):
        return f"spec.procsPerWorker is now {job.spec.procs_per_worker}"
    quota = quota_limit(job, capacity.quotas)
    if quota is not None and workers * per_worker > quota.gpus:
        return (
            f"the namespace's ResourceQuota {quota.name} now allows {quota.gpus} "
            f"({quota.key}), fewer than {workers} x {per_worker}"
        )
    if capacity.nodes is None:
        if per_worker > capacity.fallback:
            return (
                "the operator does not read nodes and its fallback "
                f"TRAINYARD_GPU_AUTO_FALLBACK is now {capacity.fallback}"
            )
        return None
    usable, excluded = _usable(job, capacity.nodes)
    if _fit_count(usable, per_worker) >= workers:
        return None
    left_out = f"; left out: {excluded}" if excluded else ""
    return (
        f"the GPU nodes the workers may use ({_plural(len(usable), 'node')}) no longer hold "
        f"{_plural(workers, 'worker')} of {per_worker} GPUs{left_out}"
    )
