"""`TrainingJob.spec`: what a user asks for.

Defaults and bounds here become the CRD's defaults and bounds; the rules that span fields
(CEL) are attached by `crdgen` and mirrored by `validate_spec` for objects the operator reads
from older CRD versions. Field docstrings become `kubectl explain` text.
"""

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from trainyard_operator.api.base import ApiModel
from trainyard_operator.api.constants import MAX_WORKERS

ModelName = Literal["mlp", "cnn", "transformer"]
DatasetName = Literal[
    "digits", "text", "synthetic", "mnist", "fashion-mnist", "cifar10", "imagefolder"
]


class EnvVar(ApiModel):
    """An extra environment variable for every worker container (core/v1 EnvVar)."""

    name: Annotated[str, Field(min_length=1, max_length=253)]
    """Variable name. The pod contract's names (PET_*, TRAINYARD_*, MASTER_ADDR, MASTER_PORT,
    NODE_RANK, WORLD_SIZE, RANK, LOCAL_RANK, LOCAL_WORLD_SIZE, PYTHONUNBUFFERED) are reserved."""
    value: str | None = None
    """Literal value."""
    value_from: dict[str, Any] | None = None
    """A core/v1 EnvVarSource (secretKeyRef, configMapKeyRef, fieldRef, resourceFieldRef)."""


class Resources(ApiModel):
    """Per-worker resources. Requests equal limits (Guaranteed QoS when set)."""

    gpus: Annotated[int, Field(ge=0, le=64)] = 0
    """nvidia.com/gpu per worker (limits = requests). 0 runs on CPU with the gloo backend."""
    cpu: str = "1"
    """CPU per worker, a Kubernetes quantity (e.g. "1", "500m")."""
    memory: str = "2Gi"
    """Memory per worker, a Kubernetes quantity (e.g. "2Gi")."""


class TrainerConfig(ApiModel):
    """The built-in trainer (used when spec.command is empty)."""

    model: ModelName = "mlp"
    """Model family: mlp (784-512-256-128-10 shape, sized to the dataset), cnn, transformer
    (small decoder-only language model, for the text dataset)."""
    dataset: DatasetName = "digits"
    """Dataset: digits (embedded), text (embedded English prose), synthetic, or mnist,
    fashion-mnist, cifar10, imagefolder read from dataPath."""
    data_path: str = ""
    """Directory holding the dataset files; required for mnist, fashion-mnist, cifar10 and
    imagefolder."""
    epochs: Annotated[int, Field(ge=1, le=100000)] = 10
    """Training epochs."""
    batch_size: Annotated[int, Field(ge=1, le=65536)] = 64
    """Batch size per process."""
    learning_rate: Annotated[float, Field(gt=0, le=10)] = 0.001
    """Optimizer learning rate."""
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    """Optimizer."""
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    """Training precision (autocast). fp16 needs a GPU."""
    strategy: Literal["ddp", "fsdp"] = "ddp"
    """Data-parallel strategy: DistributedDataParallel or FSDP2 (fully_shard)."""
    seed: Annotated[int, Field(ge=0)] = 0
    """Seed for model init, data order and dropout."""


class PruneStage(ApiModel):
    """Magnitude pruning, fine-tuned with DDP, made permanent and stored sparse."""

    amount: Annotated[float, Field(gt=0, lt=1)] = 0.5
    """Share of weights removed (0 < amount < 1)."""
    method: Literal["global-unstructured", "l1-structured"] = "global-unstructured"
    """global-unstructured: smallest |w| across all layers; l1-structured: whole output
    channels/rows with the smallest L1 norm, per layer."""
    fine_tune_epochs: Annotated[int, Field(ge=0, le=10000)] = 2
    """Epochs of fine-tuning with the pruning mask fixed."""


class DistillStage(ApiModel):
    """Knowledge distillation into a smaller student of the same family."""

    student_scale: Annotated[float, Field(gt=0, le=1)] = 0.25
    """Student width as a share of the teacher's hidden sizes."""
    temperature: Annotated[float, Field(gt=0, le=100)] = 4.0
    """Softmax temperature of the KD loss."""
    alpha: Annotated[float, Field(ge=0, le=1)] = 0.7
    """Weight of the soft (teacher) loss; 1 - alpha weighs the hard-label loss."""
    epochs: Annotated[int, Field(ge=1, le=100000)] = 5
    """Student training epochs."""


class QuantizeStage(ApiModel):
    """Post-training int8 quantization (must be the last stage)."""

    method: Literal["dynamic", "static"] = "dynamic"
    """dynamic: int8 weights for Linear layers, activations quantized on the fly; static:
    int8 weights and activations with calibration (cnn)."""
    dtype: Literal["int8"] = "int8"
    """Quantized weight type."""
    calibration_batches: Annotated[int, Field(ge=1, le=100000)] = 10
    """Batches used to calibrate activation ranges (static)."""


class CompressionStage(ApiModel):
    """One compression stage: exactly one of prune, distill, quantize."""

    prune: PruneStage | None = None
    """Prune the model."""
    distill: DistillStage | None = None
    """Distill the model into a smaller student."""
    quantize: QuantizeStage | None = None
    """Quantize the model to int8."""

    @model_validator(mode="after")
    def _exactly_one(self) -> "CompressionStage":
        if sum(s is not None for s in (self.prune, self.distill, self.quantize)) != 1:
            raise ValueError("each compression stage sets exactly one of prune, distill, quantize")
        return self

    @property
    def name(self) -> str:
        """The stage's kind: prune, distill or quantize."""
        if self.prune is not None:
            return "prune"
        return "distill" if self.distill is not None else "quantize"


class OutputSpec(ApiModel):
    """Where artifacts and checkpoints go."""

    volume_claim_name: str = ""
    """PersistentVolumeClaim mounted at path; "" uses an emptyDir (lost with the pods, so
    checkpoints survive a gang restart only on a PVC)."""
    path: Annotated[str, Field(pattern=r"^/.*")] = "/output"
    """Mount path inside the worker containers (absolute)."""


class CheckpointSpec(ApiModel):
    """Checkpoint cadence; a restarted gang resumes from the latest one."""

    every_epochs: Annotated[int, Field(ge=1, le=100000)] = 1
    """Save a checkpoint every N epochs."""
    keep: Annotated[int, Field(ge=1, le=1000)] = 2
    """Checkpoints kept (older ones are deleted)."""


class RunPolicy(ApiModel):
    """Failure, time and clean-up policy of the whole job."""

    restart_policy: Literal["Never", "OnFailure", "ExitCode"] = "OnFailure"
    """Never: any failure fails the job. OnFailure: restart the whole gang up to backoffLimit.
    ExitCode: exit codes 1-127 fail the job at once, 128-255 (signals) restart the gang."""
    backoff_limit: Annotated[int, Field(ge=0, le=1000)] = 3
    """Whole-gang restarts before the job fails (reason BackoffLimitExceeded)."""
    active_deadline_seconds: Annotated[int | None, Field(ge=1)] = None
    """Seconds from start after which the job fails (reason DeadlineExceeded)."""
    ttl_seconds_after_finished: Annotated[int | None, Field(ge=0)] = None
    """Delete the job this many seconds after it Succeeded or Failed."""
    clean_pod_policy: Literal["All", "Running", "None"] = "Running"
    """Pods deleted when the job finishes: All, only those still Running, or None."""
    scheduling_timeout_seconds: Annotated[int, Field(ge=1)] = 600
    """A worker unschedulable or failing to pull its image this long fails the job
    (reasons Unschedulable, ImagePullFailed)."""
    progress_deadline_seconds: Annotated[int | None, Field(ge=1)] = None
    """No training progress this long while Running restarts the gang (hang watchdog)."""


class Scheduling(ApiModel):
    """Placement of the worker pods."""

    node_selector: dict[str, str] = Field(default_factory=dict)
    """Node labels the workers require."""
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    """core/v1 Tolerations (the nvidia.com/gpu toleration is added when gpus > 0)."""
    affinity: dict[str, Any] = Field(default_factory=dict)
    """core/v1 Affinity."""
    priority_class_name: str = ""
    """PriorityClass of the worker pods (and the PodGroup)."""
    scheduler_name: str = ""
    """Scheduler for the worker pods ("" = the default scheduler)."""
    gang: Literal["Auto", "Enabled", "Disabled"] = "Auto"
    """Auto: create a PodGroup (minMember = workers) when a PodGroup CRD (scheduler-plugins or
    Volcano) is installed; Enabled: require one; Disabled: never."""
    queue_name: str = ""
    """Queue passed to Volcano (PodGroup spec.queue) and Kueue (kueue.x-k8s.io/queue-name)."""


class PodTemplateMetadata(ApiModel):
    """Labels and annotations added to every worker pod."""

    labels: dict[str, str] = Field(default_factory=dict)
    """Extra labels (the trainyard.dev/ labels win)."""
    annotations: dict[str, str] = Field(default_factory=dict)
    """Extra annotations."""


class PodTemplateOverrides(ApiModel):
    """Overrides merged into the generated worker pods."""

    metadata: PodTemplateMetadata = Field(default_factory=PodTemplateMetadata)
    """Extra labels and annotations."""
    spec: dict[str, Any] = Field(default_factory=dict)
    """Fields merged into the pod spec: volumes are appended, containers[0] fields
    (volumeMounts, envFrom) merged into the worker container, other keys set."""


class TrainingJobSpec(ApiModel):
    """A distributed PyTorch training job: workers run torchrun, then compression stages."""

    suspend: bool = False
    """Suspended jobs have no pods; resuming starts the gang again (from the checkpoint)."""
    workers: Annotated[int, Field(ge=1, le=MAX_WORKERS)] = 1
    """Worker pods (torchrun nodes)."""
    procs_per_worker: int | Literal["auto"] = "auto"
    """Processes per worker: "auto" = gpus per worker (1 without GPUs), or an integer >= 1."""
    image: str = ""
    """Container image; "" uses the operator's configured trainer image."""
    command: list[str] = Field(default_factory=list)
    """Your own program instead of the built-in trainer, run with the same env contract."""
    args: list[str] = Field(default_factory=list)
    """Arguments to command."""
    env: list[EnvVar] = Field(default_factory=list)
    """Extra environment variables (contract names are reserved)."""
    resources: Resources = Field(default_factory=Resources)
    """Per-worker resources."""
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    """The built-in trainer's configuration."""
    compression: list[CompressionStage] = Field(default_factory=list)
    """Compression stages run in order after training; quantize must be last."""
    output: OutputSpec = Field(default_factory=OutputSpec)
    """Artifacts and checkpoints."""
    checkpoint: CheckpointSpec = Field(default_factory=CheckpointSpec)
    """Checkpoint cadence."""
    run_policy: RunPolicy = Field(default_factory=RunPolicy)
    """Failure, time and clean-up policy."""
    scheduling: Scheduling = Field(default_factory=Scheduling)
    """Placement."""
    pod_template: PodTemplateOverrides = Field(default_factory=PodTemplateOverrides)
    """Overrides merged into the worker pods."""

    @property
    def procs(self) -> int:
        """Processes per worker with "auto" resolved (gpus per worker, else 1)."""
        if self.procs_per_worker == "auto":
            return max(self.resources.gpus, 1)
        return self.procs_per_worker

    @property
    def world_size(self) -> int:
        """Total training processes."""
        return self.workers * self.procs
