"""`TrainingJob.spec`: what a user asks for.

Defaults and bounds here become the CRD's defaults and bounds, and the rules that span
fields are CEL (`x-kubernetes-validations`) attached to the model or field they are about, so
the API server rejects a bad spec at admission with a message naming the field. `crdgen`
turns all of it into the CRD; field docstrings become `kubectl explain` text. Strings and
lists carry maximum sizes because the API server refuses CEL whose estimated cost is unbounded.
"""

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, model_validator

from trainyard_operator.api.base import ApiModel, cel, validations
from trainyard_operator.api.constants import (
    MAX_WORKERS,
    RESERVED_ENV,
    RESERVED_ENV_PREFIXES,
)

ModelName = Literal["mlp", "cnn", "transformer"]
DatasetName = Literal[
    "digits", "text", "synthetic", "mnist", "fashion-mnist", "cifar10", "imagefolder"
]
# Datasets read from spec.trainer.dataPath (the others are embedded or generated).
FILE_DATASETS = ("mnist", "fashion-mnist", "cifar10", "imagefolder")
# Datasets of tokens, which only the transformer reads (synthetic serves every model).
TOKEN_DATASETS = ("text",)
MAX_PROCS_PER_WORKER = 64
MAX_GPUS_PER_WORKER = 64

# Sizes that bound the API server's CEL cost estimate (and keep objects reasonable).
ShortString = Annotated[str, Field(max_length=253)]
#: Every duration a spec may set is at most a year: longer means "never" to a user, and
#: unbounded values overflow the operator's time arithmetic (a timedelta tops out near 1e14 s).
MAX_DURATION_SECONDS = 366 * 24 * 3600
LongString = Annotated[str, Field(max_length=4096)]


def _quantity(field: str) -> Any:
    """A Kubernetes quantity string, checked by the API server's quantity library."""
    return Field(
        min_length=1,
        max_length=64,
        json_schema_extra=validations(
            cel(
                "isQuantity(self)", f"{field} must be a Kubernetes quantity such as 1, 500m or 2Gi"
            ),
            cel(
                "!isQuantity(self) || quantity(self).isGreaterThan(quantity('0'))",
                f"{field} must be greater than 0",
            ),
        ),
    )


def _cel_list(names: tuple[str, ...]) -> str:
    return "[" + ", ".join(f"'{n}'" for n in names) + "]"


_RESERVED_RULE = f"!(self.name in {_cel_list(RESERVED_ENV)})" + "".join(
    f" && !self.name.startsWith('{p}')" for p in RESERVED_ENV_PREFIXES
)
_RESERVED_TEXT = ", ".join([f"{p}*" for p in RESERVED_ENV_PREFIXES] + list(RESERVED_ENV))


class EnvVar(ApiModel):
    """An extra environment variable for every worker container (core/v1 EnvVar)."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                _RESERVED_RULE,
                f"spec.env[].name: {_RESERVED_TEXT} are reserved by the pod contract",
                message_expression=(
                    f"'spec.env[].name: ' + self.name + ' is reserved by the pod contract "
                    f"({_RESERVED_TEXT})'"
                ),
                field_path=".name",
                reason="FieldValueForbidden",
            ),
            cel(
                "!(has(self.value) && has(self.valueFrom))",
                "spec.env[]: set value or valueFrom, not both",
                field_path=".valueFrom",
            ),
        )
    )

    # Printable ASCII without "=" (what the API server accepts for env names).
    name: Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[ -<>-~]+$")]
    """Variable name. The pod contract's names (PET_*, TRAINYARD_*, MASTER_ADDR, MASTER_PORT,
    NODE_RANK, WORLD_SIZE, RANK, LOCAL_RANK, LOCAL_WORLD_SIZE, PYTHONUNBUFFERED) are reserved."""
    value: Annotated[str | None, Field(max_length=32768)] = None
    """Literal value."""
    value_from: dict[str, Any] | None = None
    """A core/v1 EnvVarSource (secretKeyRef, configMapKeyRef, fieldRef, resourceFieldRef)."""


class Resources(ApiModel):
    """Per-worker resources. Requests equal limits (Guaranteed QoS when set)."""

    gpus: Annotated[
        Annotated[int, Field(ge=0, le=MAX_GPUS_PER_WORKER)] | Literal["auto"],
        Field(
            json_schema_extra=validations(
                cel(
                    f"type(self) == int ? (self >= 0 && self <= {MAX_GPUS_PER_WORKER})"
                    " : self == 'auto'",
                    'spec.resources.gpus must be "auto" or an integer from 0 to '
                    f"{MAX_GPUS_PER_WORKER}",
                )
            )
        ),
    ] = 0
    """nvidia.com/gpu per worker (limits = requests): an integer is an exact request (0 runs
    on CPU with the gloo backend); "auto" lets the operator choose when it creates the gang,
    from the nodes the workers may land on and the namespace's GPU quota (the choice and why
    are in status.gpus and a GpusChosen event; docs/operator.md, "GPUs: auto")."""
    cpu: Annotated[str, _quantity("spec.resources.cpu")] = "1"
    """CPU per worker, a Kubernetes quantity (e.g. "1", "500m")."""
    memory: Annotated[str, _quantity("spec.resources.memory")] = "2Gi"
    """Memory per worker, a Kubernetes quantity (e.g. "2Gi")."""


class TrainerConfig(ApiModel):
    """The built-in trainer (used when spec.command is empty)."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                f"!(self.dataset in {_cel_list(FILE_DATASETS)}) || self.dataPath != ''",
                "spec.trainer.dataPath is required for datasets " + ", ".join(FILE_DATASETS),
                field_path=".dataPath",
                reason="FieldValueRequired",
            ),
            cel(
                f"self.model != 'transformer' || self.dataset in {_cel_list(TOKEN_DATASETS)}"
                " || self.dataset == 'synthetic'",
                "spec.trainer.model: transformer needs a token dataset (text or synthetic)",
                field_path=".model",
            ),
            cel(
                f"self.model == 'transformer' || !(self.dataset in {_cel_list(TOKEN_DATASETS)})",
                "spec.trainer.dataset: text needs model transformer",
                field_path=".dataset",
            ),
        )
    )

    model: ModelName = "mlp"
    """Model family: mlp (784-512-256-128-10 shape, sized to the dataset), cnn, transformer
    (small decoder-only language model, for the text dataset)."""
    dataset: DatasetName = "digits"
    """Dataset: digits (embedded), text (embedded English prose), synthetic, or mnist,
    fashion-mnist, cifar10, imagefolder read from dataPath."""
    data_path: LongString = ""
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
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0
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

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "(has(self.prune) ? 1 : 0) + (has(self.distill) ? 1 : 0)"
                " + (has(self.quantize) ? 1 : 0) == 1",
                "spec.compression[]: each stage sets exactly one of prune, distill, quantize",
            )
        )
    )

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

    volume_claim_name: Annotated[
        str, Field(max_length=253, pattern=r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?)?$")
    ] = ""
    """PersistentVolumeClaim mounted at path; "" uses an emptyDir (lost with the pods, so
    checkpoints survive a gang restart only on a PVC)."""
    path: Annotated[
        str,
        Field(
            max_length=1024,
            pattern=r"^/.*",
            json_schema_extra=validations(
                cel(
                    "self != '/' && !['/dev', '/proc', '/sys'].exists(p, self == p"
                    " || self.startsWith(p + '/'))",
                    "spec.output.path must not be / nor under /dev, /proc or /sys (a volume"
                    " there would hide what the container needs)",
                )
            ),
        ),
    ] = "/output"
    """Mount path inside the worker containers (absolute; not /, /dev, /proc, /sys)."""


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
    ExitCode: exit codes 1-127 fail the job at once, 128-255 (signals) restart the gang.
    A disrupted worker (evicted, preempted, deleted, or lost with its node: not a failure of
    its own) restarts the gang under every policy."""
    backoff_limit: Annotated[int, Field(ge=0, le=1000)] = 3
    """Whole-gang restarts on failure before the job fails (reason BackoffLimitExceeded);
    restarts after a disruption (status.disruptions) do not count."""
    active_deadline_seconds: Annotated[int | None, Field(ge=1, le=MAX_DURATION_SECONDS)] = None
    """Seconds from start after which the job fails (reason DeadlineExceeded)."""
    ttl_seconds_after_finished: Annotated[int | None, Field(ge=0, le=MAX_DURATION_SECONDS)] = None
    """Delete the job this many seconds after it Succeeded or Failed."""
    clean_pod_policy: Literal["All", "Running", "None"] = "Running"
    """Pods deleted when the job finishes: All, only those still Running, or None."""
    scheduling_timeout_seconds: Annotated[int, Field(ge=1, le=MAX_DURATION_SECONDS)] = 600
    """A worker unschedulable, failing to pull its image or refused by the API server
    (quota, Pod Security) this long fails the job (reasons Unschedulable, ImagePullFailed,
    PodCreateFailed)."""
    progress_deadline_seconds: Annotated[int | None, Field(ge=1, le=MAX_DURATION_SECONDS)] = None
    """No training progress this long while Running restarts the gang (hang watchdog)."""


class Scheduling(ApiModel):
    """Placement of the worker pods."""

    node_selector: dict[str, str] = Field(default_factory=dict, max_length=64)
    """Node labels the workers require."""
    tolerations: list[dict[str, Any]] = Field(default_factory=list, max_length=64)
    """core/v1 Tolerations (the nvidia.com/gpu toleration is added when gpus > 0)."""
    affinity: dict[str, Any] = Field(default_factory=dict)
    """core/v1 Affinity."""
    priority_class_name: ShortString = ""
    """PriorityClass of the worker pods (and the PodGroup)."""
    scheduler_name: ShortString = ""
    """Scheduler for the worker pods ("" = the default scheduler)."""
    gang: Literal["Auto", "Enabled", "Disabled"] = "Auto"
    """Auto: create a PodGroup (minMember = workers) when a PodGroup CRD (scheduler-plugins or
    Volcano) is installed; Enabled: require one; Disabled: never."""
    # a label value (kueue.x-k8s.io/queue-name): at most 63 characters of that alphabet
    queue_name: Annotated[
        str, Field(max_length=63, pattern=r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
    ] = ""
    """Queue passed to Volcano (PodGroup spec.queue) and Kueue (kueue.x-k8s.io/queue-name);
    a label value: at most 63 characters."""


class PodTemplateMetadata(ApiModel):
    """Labels and annotations added to every worker pod."""

    labels: dict[str, str] = Field(default_factory=dict)
    """Extra labels (the trainyard.dev/ labels win)."""
    annotations: dict[str, str] = Field(default_factory=dict)
    """Extra annotations."""


class EnvVarOverride(ApiModel):
    """A core/v1 EnvVar of a podTemplate container; the API server checks the rest when it
    creates the pod."""

    model_config = ConfigDict(extra="allow")

    name: Annotated[str, Field(min_length=1, max_length=253)]
    """The variable's name (the pod contract's names keep their generated values)."""


class ContainerOverride(ApiModel):
    """A core/v1 Container of the podTemplate: the fields the operator merges are typed (so
    admission names a malformed one), every other field is passed through as written."""

    model_config = ConfigDict(extra="allow")

    name: ShortString | None = None
    """"trainer" (or no name, first in the list) merges into the worker container; any other
    name adds a sidecar."""
    env: list[EnvVarOverride] | None = None
    """Extra environment variables (appended after the generated ones)."""
    env_from: list[dict[str, Any]] | None = None
    """core/v1 EnvFromSource entries."""
    volume_mounts: list[dict[str, Any]] | None = None
    """core/v1 VolumeMount entries."""
    security_context: dict[str, Any] | None = None
    """core/v1 SecurityContext; sidecars and init containers get the restricted profile's
    settings wherever this sets none."""


class PodSpecOverrides(ApiModel):
    """A partial core/v1 PodSpec: the lists the operator merges are typed, every other field
    is passed through as written (the API server checks it when it creates the pod)."""

    model_config = ConfigDict(extra="allow")

    containers: list[ContainerOverride] | None = None
    """Merged into the worker container ("trainer") or added as sidecars."""
    init_containers: list[ContainerOverride] | None = None
    """Init containers, run before the worker container."""
    volumes: list[dict[str, Any]] | None = None
    """core/v1 Volume entries, appended to the generated ones."""

    def as_patch(self) -> dict[str, Any]:
        """The overrides as written by the user (camelCase keys, unset fields left out)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class PodTemplateOverrides(ApiModel):
    """Overrides merged into the generated worker pods."""

    metadata: PodTemplateMetadata = Field(default_factory=PodTemplateMetadata)
    """Extra labels and annotations."""
    spec: PodSpecOverrides = Field(default_factory=PodSpecOverrides)
    """Fields merged into the generated pod spec: objects merge key by key and lists append
    (volumes, tolerations); a container named "trainer" merges into the worker container
    (volumeMounts, envFrom, env), other containers are added as sidecars. hostname,
    subdomain, restartPolicy and the pod contract's env names keep their generated values."""


# Fields that shape the running gang: changing one of them while pods run would leave pods of
# two shapes, so they may change only while the job is suspended (or in the same update that
# suspends or resumes it) -- what Kubeflow and Kueue users expect.
IMMUTABLE_WHILE_RUNNING = (
    "workers",
    "procsPerWorker",
    "image",
    "command",
    "args",
    "env",
    "resources",
    "trainer",
    "compression",
    "output",
    "checkpoint",
    # it can swap the image, the command or the volumes as surely as the fields above
    "podTemplate",
)


def _unchanged(field: str) -> str:
    # procsPerWorker is int-or-string; compare as strings so "auto" vs 2 is no type error.
    if field == "procsPerWorker":
        return "string(self.procsPerWorker) == string(oldSelf.procsPerWorker)"
    # so is resources.gpus, inside an object that == would compare field by field
    if field == "resources":
        return (
            "string(self.resources.gpus) == string(oldSelf.resources.gpus)"
            " && self.resources.cpu == oldSelf.resources.cpu"
            " && self.resources.memory == oldSelf.resources.memory"
        )
    return f"self.{field} == oldSelf.{field}"


_STAGE_RULES = (
    *(
        cel(
            f"self.filter(s, has(s.{kind})).size() <= 1",
            f"spec.compression: at most one {kind} stage (per-stage results are keyed by name)",
        )
        for kind in ("prune", "distill", "quantize")
    ),
    cel(
        "!self.exists(s, has(s.quantize)) || has(self[self.size() - 1].quantize)",
        "spec.compression: quantize must be the last stage (an int8 model cannot be trained)",
    ),
)


class TrainingJobSpec(ApiModel):
    """A distributed PyTorch training job: workers run torchrun, then compression stages."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.trainer.precision != 'fp16'"
                " || (type(self.resources.gpus) == int && self.resources.gpus > 0)",
                "spec.trainer.precision: fp16 needs spec.resources.gpus > 0 (use bf16 on CPU;"
                ' "auto" may choose 0)',
                field_path=".trainer.precision",
            ),
            cel(
                "type(self.resources.gpus) != int || self.resources.gpus == 0"
                " || type(self.procsPerWorker) != int"
                " || self.procsPerWorker <= self.resources.gpus",
                "spec.procsPerWorker may not exceed spec.resources.gpus (one process per GPU)",
                field_path=".procsPerWorker",
            ),
            cel(
                "!self.compression.exists(s, has(s.quantize) && s.quantize.method == 'static')"
                " || self.trainer.model == 'cnn'",
                "spec.compression[].quantize.method: static quantization needs model cnn",
                field_path=".compression",
            ),
            *(
                cel(
                    f"self.suspend || oldSelf.suspend || {_unchanged(field)}",
                    f"spec.{field} may change only while the job is suspended "
                    "(set spec.suspend: true first)",
                    field_path=f".{field}",
                    reason="FieldValueForbidden",
                )
                for field in IMMUTABLE_WHILE_RUNNING
            ),
        )
    )

    suspend: bool = False
    """Suspended jobs have no pods; resuming starts the gang again (from the checkpoint)."""
    restart_request: Annotated[str, Field(max_length=253)] = ""
    """Set a new value (any text; `kubectl trainyard restart` writes the time) to restart the
    whole gang once: every worker pod is deleted and the next attempt starts, resuming from
    the latest checkpoint on a PersistentVolumeClaim. Counted in status.restarts and
    status.disruptions, never against backoffLimit. While the job is suspended the value is
    only recorded (resuming starts a new gang anyway); a finished job ignores it (event
    RestartIgnored)."""
    workers: Annotated[int, Field(ge=1, le=MAX_WORKERS)] = 1
    """Worker pods (torchrun nodes)."""
    procs_per_worker: Annotated[
        Annotated[int, Field(ge=1, le=MAX_PROCS_PER_WORKER)] | Literal["auto"],
        Field(
            json_schema_extra=validations(
                cel(
                    f"type(self) == int ? (self >= 1 && self <= {MAX_PROCS_PER_WORKER})"
                    " : self == 'auto'",
                    'spec.procsPerWorker must be "auto" or an integer from 1 to '
                    f"{MAX_PROCS_PER_WORKER}",
                )
            )
        ),
    ] = "auto"
    """Processes per worker: "auto" = one per GPU of the worker (with resources.gpus "auto":
    per GPU the operator chose), 1 without GPUs; or an integer >= 1."""
    image: Annotated[str, Field(max_length=1024)] = ""
    """Container image; "" uses the operator's configured trainer image."""
    command: list[LongString] = Field(default_factory=list, max_length=64)
    """Your own program instead of the built-in trainer, run with the same env contract."""
    args: list[LongString] = Field(default_factory=list, max_length=256)
    """Arguments to command."""
    env: list[EnvVar] = Field(
        default_factory=list,
        max_length=128,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    """Extra environment variables (contract names are reserved)."""
    resources: Resources = Field(default_factory=Resources)
    """Per-worker resources."""
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    """The built-in trainer's configuration."""
    compression: list[CompressionStage] = Field(
        default_factory=list, max_length=3, json_schema_extra=validations(*_STAGE_RULES)
    )
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

    def procs_for(self, gpus: int) -> int:
        """Processes per worker with "auto" resolved for `gpus` GPUs per worker (one process
        per GPU, else 1). `TrainingJob.procs` passes the GPUs the workers actually get."""
        if self.procs_per_worker == "auto":
            return max(gpus, 1)
        return self.procs_per_worker
