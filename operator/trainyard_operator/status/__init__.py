"""Status: the pure decision layer between observed pods and the TrainingJob's status.

`reconcile(job, pods, now, progress, create_failure)` returns a `Plan` (next status +
actions); `PodView` is the slice of a pod it reads; `readings` parses the trainer's metrics
and termination message. The handlers (`trainyard_operator.handlers`) do the I/O around it;
nothing here talks to the API server.
"""

from trainyard_operator.status.pods import PodView
from trainyard_operator.status.readings import progress_from_metrics, results_from_message
from trainyard_operator.status.reconcile import (
    TERMINAL_PHASES,
    CreateFailure,
    Event,
    Plan,
    PodRef,
    reconcile,
)
from trainyard_operator.status.times import format_time, parse_time

__all__ = [
    "TERMINAL_PHASES",
    "CreateFailure",
    "Event",
    "Plan",
    "PodRef",
    "PodView",
    "format_time",
    "parse_time",
    "progress_from_metrics",
    "reconcile",
    "results_from_message",
]
