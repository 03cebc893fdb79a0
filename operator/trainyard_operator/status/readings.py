"""What the trainer reports, turned into status fields: live progress and final results.

Two channels, neither needing API credentials in the pod (docs/contracts.md):
- worker 0's Prometheus endpoint → `Progress` (`progress_from_metrics`), read by the handlers
  every few seconds while the job runs;
- worker 0's termination message → `Results` (`results_from_message`) once it exits 0.
Both parsers are pure and tolerant: a trainer that reports nothing leaves the fields empty.
"""

import json
import math
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, ValidationError

from trainyard_operator.api.status import Progress, Results, StageResult

PREFIX = "trainyard_trainer_"


def progress_from_metrics(text: str) -> Progress | None:
    """Parse the trainer's exposition text; None when it carries no trainer metrics."""
    values: dict[str, float] = {}
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
                elif not sample.labels and math.isfinite(sample.value):
                    values[name] = sample.value
    except ValueError:
        return None
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
