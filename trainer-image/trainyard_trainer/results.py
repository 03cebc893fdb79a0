"""Results: the full JSON summary in the output path and the compact termination message.

`results.json` holds everything measured (per-epoch history, per-stage latency, artifact
paths). The termination message is what the operator copies into `status.results`, so it
has exactly the shape in docs/contracts.md and is kept under the kubelet's 4096-byte limit;
on failure it is one line `error: <field or cause>`. Only global rank 0 calls these.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainyard_trainer.checkpoint import atomic_write_text
from trainyard_trainer.logs import emit

TERMINATION_LIMIT = 4096
DEFAULT_TERMINATION_LOG = "/dev/termination-log"


@dataclass
class StageResult:
    """What one stage (or training itself, as stage `train`) produced."""

    name: str
    accuracy: float
    parameters: int
    model_bytes: int
    sparsity: float
    seconds: float
    latency_ms: float
    artifact: str

    def full(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "accuracy": round(self.accuracy, 6),
            "parameters": self.parameters,
            "modelBytes": self.model_bytes,
            "sparsity": round(self.sparsity, 6),
            "seconds": round(self.seconds, 3),
            "latencyMs": round(self.latency_ms, 4),
            "artifact": self.artifact,
        }

    def compact(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "accuracy": round(self.accuracy, 4),
            "modelBytes": self.model_bytes,
            "sparsity": round(self.sparsity, 4),
            "seconds": round(self.seconds, 2),
        }


@dataclass
class Summary:
    """The run's results; `stages[-1]` describes the final model."""

    job: str
    world_size: int
    stages: list[StageResult] = field(default_factory=list)
    history: list[dict[str, float]] = field(default_factory=list)
    first_loss: float | None = None
    resumed_from: str | None = None
    artifact_path: str = ""

    def full(self) -> dict[str, Any]:
        final = self.stages[-1] if self.stages else None
        return {
            "job": self.job,
            "worldSize": self.world_size,
            "accuracy": final.accuracy if final else None,
            "parameters": final.parameters if final else None,
            "modelBytes": final.model_bytes if final else None,
            "artifactPath": self.artifact_path,
            "firstLoss": self.first_loss,
            "resumedFrom": self.resumed_from,
            "history": self.history,
            "stages": [s.full() for s in self.stages],
        }

    def compact(self) -> dict[str, Any]:
        final = self.stages[-1]
        return {
            "accuracy": round(final.accuracy, 4),
            "parameters": final.parameters,
            "modelBytes": final.model_bytes,
            "stages": [s.compact() for s in self.stages],
            "artifactPath": self.artifact_path,
        }


def termination_path() -> Path:
    return Path(os.environ.get("TRAINYARD_TERMINATION_LOG", DEFAULT_TERMINATION_LOG))


def compact_json(summary: Summary) -> str:
    """The termination message JSON, trimmed to fit the limit (stages go first)."""
    data = summary.compact()
    text = json.dumps(data, separators=(",", ":"))
    while len(text.encode()) > TERMINATION_LIMIT and data["stages"]:
        data["stages"] = data["stages"][:-1]
        text = json.dumps(data, separators=(",", ":"))
    return text


def _write_termination(text: str) -> None:
    path = termination_path()
    try:
        # /dev/termination-log exists in a pod; elsewhere the parent may be missing.
        if path.parent.is_dir():
            path.write_text(text[:TERMINATION_LIMIT])
    except OSError as exc:
        emit(f"[results] cannot write termination message to {path}: {exc}", level="warning")


def write_results(summary: Summary, output: Path) -> Path:
    """Write results.json (atomically) and the termination message; returns results.json."""
    path = output / "results.json"
    atomic_write_text(path, json.dumps(summary.full(), indent=2) + "\n")
    _write_termination(compact_json(summary))
    return path


def write_error(cause: str) -> None:
    """One line `error: <cause>` as the termination message."""
    line = " ".join(cause.split())
    _write_termination(f"error: {line}"[: TERMINATION_LIMIT - 1] + "\n")
