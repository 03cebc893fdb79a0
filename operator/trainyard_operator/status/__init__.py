"""Status: the pure decision layer between observed pods and the TrainingJob's status.

`reconcile(job, pods, now, progress, create_failure)` returns a `Plan` (next status +
actions); `PodView` is the slice of a pod it reads; `readings` parses the trainer's metrics
and termination message; `events` keys the events a pass plans, and derives those a status
implies, so each is posted once. The handlers (`trainyard_operator.handlers`) do the I/O around it;
nothing here talks to the API server.
"""

from trainyard_operator.status.events import TERMINAL_PHASES, Event, implied_events
from trainyard_operator.status.pods import PodView
from trainyard_operator.status.readings import progress_from_metrics, results_from_message
from trainyard_operator.status.reconcile import (
    CreateFailure,
    Plan,
    PodRef,
    checkpoints_lost_on_restart,
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
    "checkpoints_lost_on_restart",
    "format_time",
    "implied_events",
    "parse_time",
    "progress_from_metrics",
    "reconcile",
    "results_from_message",
]
