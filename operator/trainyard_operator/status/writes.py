"""Which status changes may wait: the rule behind TRAINYARD_STATUS_COALESCE_SECONDS.

A gang of N workers coming up moves the worker counts N times or more (created, scheduled,
running one by one), and each move changes the status (`workers`, and the Running
condition's "n of m running" message). Writing every one costs the API server a request per
pod per job; `handlers.worker` instead holds a change that only moves counts for a short
window and writes it with the next change or when the window ends. Everything a user or a
controller acts on is written at once: phase, conditions (status, reason), restarts, start and
completion times, progress, health, results, the GPU choice, the observed generation.
"""

from __future__ import annotations

from typing import Any

from trainyard_operator.api.status import TrainingJobStatus


def counts_only(old: TrainingJobStatus, new: TrainingJobStatus) -> bool:
    """True when `new` differs from `old` at most in the worker counts and in the messages
    of conditions whose status and reason stay the same."""
    return _essence(old) == _essence(new)


def _essence(status: TrainingJobStatus) -> dict[str, Any]:
    wire: dict[str, Any] = status.to_wire()
    wire.pop("workers", None)
    wire["conditions"] = [
        {k: v for k, v in condition.items() if k != "message"}
        for condition in wire.get("conditions") or []
    ]
    return wire
