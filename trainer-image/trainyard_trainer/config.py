"""The trainer's configuration: small dataclasses parsed from the `TRAINYARD_CONFIG` JSON.

The JSON carries the TrainingJob's `spec.trainer`, `compression`, `output` and `checkpoint`
with the CRD's camelCase names (docs/contracts.md). Missing keys take the CRD's defaults, so
`local.py` can pass a hand-written manifest through unchanged. Everything a run could trip
over later (unknown names, bounds, stage order, dataset/model pairs) is checked here, before
any process group or dataset exists; `ConfigError` names the field, and `__main__` turns it
into exit code 2. The bounds mirror the operator's pydantic models in
`trainyard_operator.api.spec` (the two images share no code, so they are repeated here).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

MODELS = ("mlp", "cnn", "transformer")
DATASETS = ("digits", "text", "synthetic", "mnist", "fashion-mnist", "cifar10", "imagefolder")
# Datasets that exist only on disk: dataPath is required for them.
FILE_DATASETS = ("mnist", "fashion-mnist", "cifar10", "imagefolder")
TOKEN_DATASETS = ("text",)
OPTIMIZERS = ("adam", "adamw", "sgd")
PRECISIONS = ("fp32", "bf16", "fp16")
STRATEGIES = ("ddp", "fsdp")
STAGES = ("prune", "distill", "quantize")
PRUNE_METHODS = ("global-unstructured", "l1-structured")
QUANTIZE_METHODS = ("dynamic", "static")


class ConfigError(ValueError):
    """A configuration value that cannot run; the message starts with the field's path."""

    def __init__(self, field_path: str, problem: str) -> None:
        super().__init__(f"{field_path}: {problem}")
        self.field_path = field_path


@dataclass(frozen=True)
class TrainerConfig:
    """`spec.trainer`: what to train and how."""

    model: str = "mlp"
    dataset: str = "digits"
    data_path: str = ""
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 0.001
    optimizer: str = "adam"
    precision: str = "fp32"
    strategy: str = "ddp"
    seed: int = 0


@dataclass(frozen=True)
class PruneConfig:
    """`compression[i].prune`: magnitude pruning, fine-tuned, stored sparse."""

    amount: float = 0.5
    method: str = "global-unstructured"
    fine_tune_epochs: int = 2


@dataclass(frozen=True)
class DistillConfig:
    """`compression[i].distill`: knowledge distillation into a narrower student."""

    student_scale: float = 0.25
    temperature: float = 4.0
    alpha: float = 0.7
    epochs: int = 5


@dataclass(frozen=True)
class QuantizeConfig:
    """`compression[i].quantize`: post-training int8 quantization."""

    method: str = "dynamic"
    dtype: str = "int8"
    calibration_batches: int = 10


StageConfig = PruneConfig | DistillConfig | QuantizeConfig


@dataclass(frozen=True)
class Stage:
    """One declared compression stage: its name and its settings."""

    name: str
    config: StageConfig


@dataclass(frozen=True)
class OutputConfig:
    """`spec.output`: where artifacts and checkpoints are written."""

    path: str = "/output"


@dataclass(frozen=True)
class CheckpointConfig:
    """`spec.checkpoint`: cadence and retention of training checkpoints."""

    every_epochs: int = 1
    keep: int = 2


@dataclass(frozen=True)
class JobConfig:
    """The whole trainer configuration of one TrainingJob."""

    job: str = "local"
    namespace: str = "default"
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    compression: tuple[Stage, ...] = ()
    output: OutputConfig = field(default_factory=OutputConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)

    def total_epochs(self) -> int:
        """Epochs of every phase together (training and the stages that train)."""
        total = self.trainer.epochs
        for stage in self.compression:
            if isinstance(stage.config, PruneConfig):
                total += stage.config.fine_tune_epochs
            elif isinstance(stage.config, DistillConfig):
                total += stage.config.epochs
        return total


# --- field readers: each names the field it reads in its error --------------------------


def _obj(value: Any, path: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(path, f"must be an object, got {type(value).__name__}")
    return value


def _no_unknown(obj: dict[str, Any], known: tuple[str, ...], path: str) -> None:
    for key in obj:
        if key not in known:
            raise ConfigError(f"{path}.{key}", f"unknown field (known: {', '.join(known)})")


def _int(obj: dict[str, Any], key: str, default: int, path: str, *, minimum: int) -> int:
    value = obj.get(key, default)
    where = f"{path}.{key}"
    # JSON has one number type; 3.0 is accepted as 3, but true is not a number here.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(where, f"must be an integer, got {value!r}")
    if value < minimum:
        raise ConfigError(where, f"must be >= {minimum}, got {value}")
    return value


def _float(
    obj: dict[str, Any],
    key: str,
    default: float,
    path: str,
    *,
    low: float,
    high: float,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    value = obj.get(key, default)
    where = f"{path}.{key}"
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(where, f"must be a number, got {value!r}")
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if too_low or too_high:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        raise ConfigError(where, f"must be in {left}{low:g}, {high:g}{right}, got {value}")
    return float(value)


def _choice(
    obj: dict[str, Any], key: str, default: str, path: str, options: tuple[str, ...]
) -> str:
    value = obj.get(key, default)
    if value not in options:
        raise ConfigError(f"{path}.{key}", f"must be one of {', '.join(options)}, got {value!r}")
    return str(value)


def _str(obj: dict[str, Any], key: str, default: str, path: str) -> str:
    value = obj.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ConfigError(f"{path}.{key}", f"must be a string, got {value!r}")
    return value


def parse_trainer(raw: Any) -> TrainerConfig:
    """Parse and check `trainer`; model/dataset pairs are checked here as well."""
    obj = _obj(raw, "trainer")
    p = "trainer"
    _no_unknown(
        obj,
        (
            "model",
            "dataset",
            "dataPath",
            "epochs",
            "batchSize",
            "learningRate",
            "optimizer",
            "precision",
            "strategy",
            "seed",
        ),
        p,
    )
    cfg = TrainerConfig(
        model=_choice(obj, "model", "mlp", p, MODELS),
        dataset=_choice(obj, "dataset", "digits", p, DATASETS),
        data_path=_str(obj, "dataPath", "", p),
        epochs=_int(obj, "epochs", 10, p, minimum=1),
        batch_size=_int(obj, "batchSize", 64, p, minimum=1),
        learning_rate=_float(obj, "learningRate", 0.001, p, low=0, high=10, low_open=True),
        optimizer=_choice(obj, "optimizer", "adam", p, OPTIMIZERS),
        precision=_choice(obj, "precision", "fp32", p, PRECISIONS),
        strategy=_choice(obj, "strategy", "ddp", p, STRATEGIES),
        seed=_int(obj, "seed", 0, p, minimum=0),
    )
    if cfg.dataset in FILE_DATASETS and not cfg.data_path:
        raise ConfigError("trainer.dataPath", f"required for dataset {cfg.dataset}")
    if cfg.model == "transformer" and cfg.dataset not in (*TOKEN_DATASETS, "synthetic"):
        raise ConfigError(
            "trainer.model",
            f"transformer needs a token dataset (text, synthetic), not {cfg.dataset}",
        )
    if cfg.model != "transformer" and cfg.dataset in TOKEN_DATASETS:
        raise ConfigError(
            "trainer.model", f"{cfg.model} needs an image dataset; use transformer for text"
        )
    return cfg


def _parse_stage(raw: Any, index: int, model: str) -> Stage:
    path = f"compression[{index}]"
    obj = _obj(raw, path)
    # The operator may serialize the two unset members of a stage as null.
    present = {k: v for k, v in obj.items() if v is not None}
    _no_unknown(present, STAGES, path)
    if len(present) != 1:
        raise ConfigError(path, "must set exactly one of prune, distill, quantize")
    name, body = next(iter(present.items()))
    p = f"{path}.{name}"
    settings = _obj(body, p)
    config: StageConfig
    if name == "prune":
        _no_unknown(settings, ("amount", "method", "fineTuneEpochs"), p)
        config = PruneConfig(
            amount=_float(settings, "amount", 0.5, p, low=0, high=1, low_open=True, high_open=True),
            method=_choice(settings, "method", "global-unstructured", p, PRUNE_METHODS),
            fine_tune_epochs=_int(settings, "fineTuneEpochs", 2, p, minimum=0),
        )
    elif name == "distill":
        _no_unknown(settings, ("studentScale", "temperature", "alpha", "epochs"), p)
        config = DistillConfig(
            student_scale=_float(settings, "studentScale", 0.25, p, low=0, high=1, low_open=True),
            temperature=_float(settings, "temperature", 4.0, p, low=0, high=100, low_open=True),
            alpha=_float(settings, "alpha", 0.7, p, low=0, high=1),
            epochs=_int(settings, "epochs", 5, p, minimum=1),
        )
    else:
        _no_unknown(settings, ("method", "dtype", "calibrationBatches"), p)
        config = QuantizeConfig(
            method=_choice(settings, "method", "dynamic", p, QUANTIZE_METHODS),
            dtype=_choice(settings, "dtype", "int8", p, ("int8",)),
            calibration_batches=_int(settings, "calibrationBatches", 10, p, minimum=1),
        )
        if config.method == "static" and model != "cnn":
            raise ConfigError(f"{p}.method", f"static quantization needs the cnn, not {model}")
    return Stage(name=name, config=config)


def parse_compression(raw: Any, model: str) -> tuple[Stage, ...]:
    """Parse `compression`: at most one stage of each kind, quantize last."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError("compression", f"must be a list, got {type(raw).__name__}")
    stages = tuple(_parse_stage(item, i, model) for i, item in enumerate(raw))
    seen: set[str] = set()
    for i, stage in enumerate(stages):
        if stage.name in seen:
            # Per-stage results and metrics are keyed by stage name.
            raise ConfigError(f"compression[{i}]", f"stage {stage.name} appears twice")
        seen.add(stage.name)
        if stage.name == "quantize" and i != len(stages) - 1:
            # int8 models cannot be fine-tuned or distilled from, so nothing may follow.
            raise ConfigError(f"compression[{i}].quantize", "quantize must be the last stage")
    return stages


def parse_config(raw: Any) -> JobConfig:
    """Parse the whole `TRAINYARD_CONFIG` object (already decoded from JSON)."""
    obj = _obj(raw, "config")
    trainer = parse_trainer(obj.get("trainer"))
    output = _obj(obj.get("output"), "output")
    _no_unknown(output, ("path", "volumeClaimName"), "output")
    ckpt = _obj(obj.get("checkpoint"), "checkpoint")
    _no_unknown(ckpt, ("everyEpochs", "keep"), "checkpoint")
    job = _str(obj, "job", "local", "config")
    if job in {"", ".", ".."} or "/" in job or "\0" in job:
        # It names the run's TensorBoard folder under the output volume.
        raise ConfigError("config.job", f"must be a plain name (a TrainingJob's), got {job!r}")
    return JobConfig(
        job=job,
        namespace=_str(obj, "namespace", "default", "config"),
        trainer=trainer,
        compression=parse_compression(obj.get("compression"), trainer.model),
        output=OutputConfig(path=_str(output, "path", "/output", "output")),
        checkpoint=CheckpointConfig(
            every_epochs=_int(ckpt, "everyEpochs", 1, "checkpoint", minimum=1),
            keep=_int(ckpt, "keep", 2, "checkpoint", minimum=1),
        ),
    )


def load_config_json(text: str | None) -> JobConfig:
    """Parse the `TRAINYARD_CONFIG` text; unset or empty means every default."""
    if not text:
        return parse_config({})
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError("TRAINYARD_CONFIG", f"not valid JSON ({exc.msg} at {exc.pos})") from exc
    return parse_config(raw)
