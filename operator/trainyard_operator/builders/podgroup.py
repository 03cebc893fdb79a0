"""Gang scheduling: the PodGroup of a job and how its worker pods join it.

Two PodGroup APIs exist and the operator creates whichever the cluster has (the handlers
detect it and set `BuildSettings.pod_group_flavor`):

- scheduler-plugins coscheduling, `scheduling.x-k8s.io/v1alpha1`: pods join with the label
  `scheduling.x-k8s.io/pod-group`; the group's `scheduleTimeoutSeconds` is the job's
  schedulingTimeoutSeconds.
- Volcano, `scheduling.volcano.sh/v1beta1`: pods join with the annotations
  `scheduling.k8s.io/group-name` and `scheduling.volcano.sh/group-name` and are scheduled by
  the `volcano` scheduler; the group carries the queue and priority class.

In both, minMember is every worker (DDP cannot start with a rank missing) and minResources is
the whole gang's requests (GPUs left out for `gpus: auto`, whose choice may change). Kueue
reads the `kueue.x-k8s.io/queue-name` label plus its plain-pod group label and count when
spec.scheduling.queueName is set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal
from typing import Any

from kubernetes.utils.quantity import parse_quantity

from trainyard_operator.api.constants import GPU_RESOURCE
from trainyard_operator.api.job import TrainingJob
from trainyard_operator.builders.meta import child_metadata
from trainyard_operator.builders.settings import BuildSettings, PodGroupFlavor

POD_GROUP_API: dict[PodGroupFlavor, str] = {
    "scheduler-plugins": "scheduling.x-k8s.io/v1alpha1",
    "volcano": "scheduling.volcano.sh/v1beta1",
}
SCHEDULER_PLUGINS_LABEL = "scheduling.x-k8s.io/pod-group"
VOLCANO_GROUP_ANNOTATIONS = ("scheduling.k8s.io/group-name", "scheduling.volcano.sh/group-name")
VOLCANO_QUEUE_ANNOTATION = "scheduling.volcano.sh/queue-name"
VOLCANO_SCHEDULER = "volcano"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
KUEUE_GROUP_LABEL = "kueue.x-k8s.io/pod-group-name"
KUEUE_GROUP_COUNT_ANNOTATION = "kueue.x-k8s.io/pod-group-total-count"


@dataclass(frozen=True)
class GangMembership:
    """What a worker pod carries to join its job's group (empty without gang scheduling)."""

    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    scheduler_name: str = ""
    """The scheduler the pods need when the job names none ("" = the default)."""


def pod_group_name(job: TrainingJob) -> str:
    """The PodGroup shares the job's name."""
    return job.name


def gang_membership(job: TrainingJob, settings: BuildSettings) -> GangMembership:
    """Labels, annotations and scheduler that put the job's pods into its group and queue."""
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    scheduler = ""
    queue = job.spec.scheduling.queue_name
    flavor = settings.pod_group_flavor
    if flavor is not None and job.spec.scheduling.gang != "Disabled":
        group = pod_group_name(job)
        if flavor == "scheduler-plugins":
            labels[SCHEDULER_PLUGINS_LABEL] = group
        else:
            annotations.update(dict.fromkeys(VOLCANO_GROUP_ANNOTATIONS, group))
            if queue:
                annotations[VOLCANO_QUEUE_ANNOTATION] = queue
            scheduler = VOLCANO_SCHEDULER
    if queue:
        # Kueue admits the gang as one workload: every pod names the same group and its size.
        labels[KUEUE_QUEUE_LABEL] = queue
        labels[KUEUE_GROUP_LABEL] = job.name
        annotations[KUEUE_GROUP_COUNT_ANNOTATION] = str(job.spec.workers)
    return GangMembership(labels, annotations, scheduler)


_SUFFIXES = (
    ("Ei", 1024**6),
    ("Pi", 1024**5),
    ("Ti", 1024**4),
    ("Gi", 1024**3),
    ("Mi", 1024**2),
    ("Ki", 1024),
    ("E", 1000**6),
    ("P", 1000**5),
    ("T", 1000**4),
    ("G", 1000**3),
    ("M", 1000**2),
    ("k", 1000),
)


def _parse(quantity: str) -> Decimal:
    value: Decimal = parse_quantity(quantity)  # type: ignore[no-untyped-call]
    return value


def format_quantity(value: Decimal, *, binary: bool) -> str:
    """A Kubernetes quantity string for `value`; byte counts (`binary`) get the shortest
    exact suffix (3Gi, 2G, 1536Mi)."""
    if value == value.to_integral_value():
        number = int(value)
        candidates = [str(number)]
        if binary and number:
            candidates += [f"{number // unit}{s}" for s, unit in _SUFFIXES if number % unit == 0]
        # min() keeps the first of equally short texts: binary suffixes come first.
        return min(candidates, key=len)
    # Fractions are written in thousandths (millicores); the API server rounds finer
    # values up to 1m, so round the same way.
    milli = (value * 1000).to_integral_value(rounding=ROUND_CEILING)
    return f"{int(milli)}m"


def gang_resources(job: TrainingJob) -> dict[str, str]:
    """Requests of the whole gang: what must be free before any worker starts."""
    spec = job.spec
    workers = Decimal(spec.workers)
    total = {
        "cpu": format_quantity(_parse(spec.resources.cpu) * workers, binary=False),
        "memory": format_quantity(_parse(spec.resources.memory) * workers, binary=True),
    }
    # For gpus "auto" the choice can change between gangs (a node pool removed), and the
    # PodGroup is created once per job: a stale GPU count here would keep a gang that now
    # asks for fewer GPUs from being admitted, so such groups carry CPU and memory only.
    if spec.resources.gpus != "auto" and job.gpus > 0:
        total[GPU_RESOURCE] = str(job.gpus * spec.workers)
    return total


def pod_group(job: TrainingJob, flavor: PodGroupFlavor) -> dict[str, Any]:
    """The job's PodGroup in the given flavour's API (minMember = every worker)."""
    spec: dict[str, Any] = {
        "minMember": job.spec.workers,
        "minResources": gang_resources(job),
    }
    scheduling = job.spec.scheduling
    if flavor == "scheduler-plugins":
        spec["scheduleTimeoutSeconds"] = job.spec.run_policy.scheduling_timeout_seconds
    else:
        if scheduling.queue_name:
            spec["queue"] = scheduling.queue_name
        if scheduling.priority_class_name:
            spec["priorityClassName"] = scheduling.priority_class_name
    return {
        "apiVersion": POD_GROUP_API[flavor],
        "kind": "PodGroup",
        "metadata": child_metadata(job, pod_group_name(job)),
        "spec": spec,
    }
