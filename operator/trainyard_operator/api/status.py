"""`TrainingJob.status`: what the operator observed and decided.

Written only by the operator (status subresource); `trainyard_operator.status` derives it
from the pods, and `progress` comes from the trainer's metrics endpoint.
"""

from typing import Literal

from pydantic import Field, model_validator

from trainyard_operator.api.base import ApiModel

Phase = Literal[
    "Pending", "Running", "Compressing", "Restarting", "Suspended", "Succeeded", "Failed"
]


class Condition(ApiModel):
    """A metav1.Condition."""

    type: str
    """Created, Running, Restarting, Straggler, Suspended, Succeeded, Failed."""
    status: Literal["True", "False", "Unknown"]
    """True, False or Unknown."""
    reason: str
    """CamelCase reason, e.g. BackoffLimitExceeded."""
    message: str = ""
    """Human-readable detail."""
    last_transition_time: str
    """When status last changed (RFC 3339)."""
    observed_generation: int | None = None
    """metadata.generation this condition was set from."""


class WorkerCounts(ApiModel):
    """Worker pods of the current gang by state."""

    desired: int = 0
    """spec.workers (0 while suspended)."""
    active: int = 0
    """Pods not finished (Pending or Running)."""
    ready: int = 0
    """Running pods whose containers are ready."""
    succeeded: int = 0
    """Pods that exited 0."""
    failed: int = 0
    """Pods that failed."""
    summary: str = ""
    """ready/desired, e.g. "1/2": the Workers column of `kubectl get tj`. Derived from the
    counts whenever the object is built or parsed, so writers never set it."""

    @model_validator(mode="after")
    def _summarize(self) -> "WorkerCounts":
        # A printer column takes one JSONPath and cannot join two numbers, so the status
        # carries the joined text.
        self.summary = f"{self.ready}/{self.desired}"
        return self


class Progress(ApiModel):
    """Live progress read from worker 0's metrics endpoint (no API credentials in pods)."""

    stage: str = ""
    """train, prune, distill, quantize or done."""
    epoch: int = 0
    """Epochs completed in this stage."""
    total_epochs: int = 0
    """Epochs this stage runs."""
    percent: int = 0
    """0-100 over the whole run."""
    loss: float | None = None
    """Last training loss."""
    accuracy: float | None = None
    """Last evaluation accuracy."""
    samples_per_second: float | None = None
    """Global throughput."""
    eta_seconds: int | None = None
    """Estimated seconds left."""
    updated_at: str | None = None
    """When the operator last read it (RFC 3339)."""


class SlowWorker(ApiModel):
    """A worker whose compute time per step, averaged over the operator's window
    (TRAINYARD_STRAGGLER_WINDOW_SECONDS), is above its factor (TRAINYARD_STRAGGLER_FACTOR) of
    the gang's median."""

    worker: int
    """Worker index (pod `<job>-worker-<index>`)."""
    since: str
    """Since when it has stayed above the factor (RFC 3339)."""
    ratio: float
    """Its compute time per step over the gang's median, when last measured."""


class GangHealth(ApiModel):
    """How evenly the workers of the running gang keep up, from every worker's trainer
    metrics: compute seconds per step (a step's time less its wait for the other ranks),
    averaged over the straggler window."""

    median_step_seconds: float | None = None
    """The gang's median compute time per step (the lower middle value for an even count)."""
    slowest_worker: int | None = None
    """Index of the worker with the longest compute time per step."""
    slowest_step_seconds: float | None = None
    """Its compute time per step."""
    slowest_ratio: float | None = None
    """Its compute time per step over the median (1.0: as fast as the median)."""
    slow_workers: list[SlowWorker] = Field(default_factory=list)
    """Workers above the factor of the median now, with since when."""
    stragglers: list[int] = Field(default_factory=list)
    """Those of them above it for a whole window: the Straggler condition and event name them."""
    updated_at: str | None = None
    """When these numbers were measured (RFC 3339)."""


class StageResult(ApiModel):
    """Measured outcome of training or one compression stage."""

    name: str
    """train, prune, distill or quantize."""
    accuracy: float | None = None
    """Test accuracy after the stage."""
    model_bytes: int | None = None
    """Bytes on disk of the model after the stage."""
    sparsity: float | None = None
    """Share of zero weights."""
    seconds: float | None = None
    """Wall time of the stage."""


class Results(ApiModel):
    """Final results from worker 0's termination message."""

    accuracy: float | None = None
    """Test accuracy of the final model."""
    parameters: int | None = None
    """Parameter count of the final model."""
    model_bytes: int | None = None
    """Bytes on disk of the final model."""
    stages: list[StageResult] = Field(default_factory=list)
    """One entry for training and one per compression stage, in order."""
    artifact_path: str | None = None
    """Where the final model was written inside the output volume."""


class GpuChoice(ApiModel):
    """What the operator chose for spec.resources.gpus "auto" (docs/operator.md, "GPUs:
    auto"): made when the first gang is created, kept for every later gang while the cluster
    can still meet it."""

    per_worker: int = 0
    """nvidia.com/gpu each worker requests: 0 runs on CPU with gloo, more on GPUs with nccl
    (procsPerWorker "auto" starts one process per GPU)."""
    reason: str = ""
    """GpusFit, NoGpuNodes, GpusDoNotFit, QuotaTooSmall or NodesNotRead."""
    message: str = ""
    """Why, in words (the text of the GpusChosen or GpusChanged event)."""
    decided_at: str | None = None
    """When this choice was made (RFC 3339)."""
    previous: int | None = None
    """The choice this one replaced because the cluster could no longer meet it (a node pool
    removed or cordoned, the quota lowered, the job reshaped while suspended)."""


class TrainingJobStatus(ApiModel):
    """Observed state of a TrainingJob."""

    phase: Phase = "Pending"
    """Pending, Running, Compressing, Restarting, Suspended, Succeeded or Failed."""
    conditions: list[Condition] = Field(
        default_factory=list,
        # metav1.Condition lists are maps keyed by type (one condition per type), which lets
        # server-side apply merge them entry by entry.
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    """metav1.Conditions keyed by type."""
    workers: WorkerCounts = Field(default_factory=WorkerCounts)
    """Worker pods by state."""
    restarts: int = 0
    """Whole-gang restarts so far."""
    disruptions: int = 0
    """How many of those restarts a disruption caused (a worker evicted, preempted, lost with
    its node, or deleted by someone else) or spec.restartRequest asked for: they do not count
    against backoffLimit."""
    restart_request: str | None = None
    """The spec.restartRequest the operator has seen last: a different value in the spec is a
    new request."""
    start_time: str | None = None
    """When the current run started (reset on resume)."""
    completion_time: str | None = None
    """When the job Succeeded or Failed."""
    progress: Progress | None = None
    """Live training progress."""
    health: GangHealth | None = None
    """Per-worker step times of the running gang in brief: median, slowest, stragglers."""
    results: Results | None = None
    """Final results."""
    gpus: GpuChoice | None = None
    """The operator's choice for spec.resources.gpus "auto" (absent for an integer)."""
    observed_generation: int | None = None
    """metadata.generation the status was computed for."""
