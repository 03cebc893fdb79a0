"""What the trainer reports, turned into status fields: live progress and final results.

Two channels, neither needing API credentials in the pod (docs/contracts.md):
- every worker's Prometheus endpoint → `TrainerReading` (`trainer_reading`), read by the
  handlers every few seconds while the job runs: worker 0's gives `Progress`, every worker's
  its step counters (status/health.py);
- worker 0's termination message → `Results` (`results_from_message`) once it exits 0.
Both parsers are pure and tolerant: a trainer that reports nothing leaves the fields empty.
"""

import json
import math
from dataclasses import dataclass
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, ValidationError

from trainyard_operator.api.status import Progress, Results, StageResult

PREFIX = "trainyard_trainer_"
#: The step counters (as their samples are named, less the prefix).
COUNTERS = frozenset({"steps_total", "step_compute_seconds_total"})


@dataclass(frozen=True)
class TrainerReading:
    """What one read of a worker's metrics page says."""

    progress: Progress | None
    """Its progress (what status.progress shows of worker 0); None without trainer gauges."""
    steps: float | None = None
    """trainyard_trainer_steps_total: optimizer steps of the worker's local rank 0."""
    compute_seconds: float | None = None
    """trainyard_trainer_step_compute_seconds_total: their time less the waits for peers."""


def trainer_reading(text: str) -> TrainerReading | None:
    """Parse a trainer's exposition text; None when it is not exposition text at all."""
    values: dict[str, float] = {}
    counters: dict[str, float] = {}
    stage = ""
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if not sample.name.startswith(PREFIX):
                    continue
                name = sample.name.removeprefix(PREFIX)
                if name == "stage":
                    if sample.value == 1:
                        stage = sample.labels.get("stage", "")
                elif name in COUNTERS and math.isfinite(sample.value) and sample.value >= 0:
                    counters[name] = sample.value
                elif not sample.labels and math.isfinite(sample.value):
                    values[name] = sample.value
    except ValueError:
        return None
    return TrainerReading(
        progress=_progress(values, stage),
        steps=counters.get("steps_total"),
        compute_seconds=counters.get("step_compute_seconds_total"),
    )


def progress_from_metrics(text: str) -> Progress | None:
    """Parse the trainer's exposition text; None when it carries no trainer metrics."""
    reading = trainer_reading(text)
    return reading.progress if reading is not None else None


def _progress(values: dict[str, float], stage: str) -> Progress | None:
    if not values and not stage:
        return None
    ratio = values.get("progress_ratio", 0.0)
    return Progress(
        stage=stage,
        epoch=int(values.get("epoch", 0)),
        total_epochs=int(values.get("epochs", 0)),
        percent=max(0, min(100, int(ratio * 100))),
        loss=_rounded(values.get("loss"), 4),
        accuracy=_rounded(values.get("accuracy"), 4),
        samples_per_second=_rounded(values.get("samples_per_second"), 1),
        eta_seconds=int(values["eta_seconds"]) if "eta_seconds" in values else None,
    )


def _rounded(value: float | None, digits: int) -> float | None:
    # Printer columns show the number as stored: 0.0736 reads better than 0.07357922578761575,
    # and fewer changing digits mean fewer status writes that change nothing a user reads.
    return None if value is None else round(value, digits)


def results_from_message(message: str) -> Results | None:
    """Parse worker 0's termination message; None when it is not the results JSON."""
    text = message.strip()
    if not text.startswith("{"):
        return None
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            return None
        # Keep only the fields this API version knows, so a newer trainer that reports more
        # still fills in what it can.
        data = _known(data, Results)
        data["stages"] = [
            _known(s, StageResult) for s in data.get("stages") or [] if isinstance(s, dict)
        ]
        return Results.model_validate(data)
    except (ValueError, ValidationError):
        return None


def _known(data: dict[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    names = {field.alias or name for name, field in model.model_fields.items()}
    return {key: value for key, value in data.items() if key in names}
