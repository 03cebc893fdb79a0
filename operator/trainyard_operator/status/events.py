"""The events that tell a user what happened to a job, keyed so that each is posted once.

A pass writes a transition into the status (a gang restart, the job's end, a suspension)
and then posts its event; an operator killed between the two used to lose the event for
good, because its successor finds the transition already written and plans nothing. So every
event reconcile plans carries a key made from the status that records its transition, and
the handlers name the Event object after the job's uid and that key: posting the same event
twice is refused by the API server (409), never shown twice. A worker's first pass posts
`implied_events` of the stored status: those already posted are refused, the lost ones appear.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from trainyard_operator.api.status import GangHealth, TrainingJobStatus
from trainyard_operator.status.conditions import get_condition
from trainyard_operator.status.times import parse_time

EventType = Literal["Normal", "Warning"]
TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})

#: Events of one gang attempt: at most one of each per value of status.restarts.
PER_ATTEMPT = frozenset({"GangRestart", "ProgressDeadlineExceeded", "WorkersTerminating"})
#: Where a gang restart's condition message says what it did after saying why.
RESTART_SEPARATOR = "; restarting the gang"
#: The Restarting condition's reason when spec.restartRequest asked for the restart.
RESTART_REQUESTED = "RestartRequested"
#: A finished job's event when spec.restartRequest changed (one per value).
RESTART_IGNORED = "RestartIgnored"
RESUMED_MESSAGE = "spec.suspend is false: creating the workers again"
#: The events of a `gpus: auto` choice: the first one, and one the cluster forced to change.
GPUS_CHOSEN = "GpusChosen"
GPUS_CHANGED = "GpusChanged"
#: A worker slower than the others (status.health, status/health.py): one event per worker
#: and episode, keyed by the worker and since when it is slow.
STRAGGLER = "Straggler"
CHECKPOINTS_MESSAGE = (
    "checkpoints go to an emptyDir (spec.output.volumeClaimName is empty), so a gang "
    "restart trains from epoch 0 again; give the job a PersistentVolumeClaim to resume "
    "from the latest checkpoint instead"
)
#: A restarted operator re-posts only what changed this recently; older events, if they
#: were lost, would mostly have expired from the API server by now (events live 1 h).
IMPLIED_WINDOW = timedelta(minutes=10)


@dataclass(frozen=True)
class Event:
    """A Kubernetes event to post on the TrainingJob."""

    type: EventType
    reason: str
    message: str
    key: str = ""
    """Which occurrence this is (see `event_key`); empty for events that are not deduplicated."""


def restart_event_type(cause: str) -> EventType:
    """A gang restart someone asked for is news, not a warning."""
    return "Normal" if cause == RESTART_REQUESTED else "Warning"


def event_key(reason: str, message: str, status: TrainingJobStatus) -> str:
    """The occurrence an event of `reason` announces, read from the status that records it."""

    def since(kind: str) -> str:
        cond = get_condition(status.conditions, kind)
        return cond.last_transition_time if cond is not None else "-"

    ended = get_condition(status.conditions, status.phase or "")
    if status.phase in TERMINAL_PHASES and ended is not None and ended.reason == reason:
        return f"{reason}/{status.phase}@{since(status.phase or '')}"
    if reason in PER_ATTEMPT:
        return f"{reason}/attempt-{status.restarts}"
    if reason in ("Suspended", "Resumed"):
        return f"{reason}@{since('Suspended')}"
    if reason in (GPUS_CHOSEN, GPUS_CHANGED) and status.gpus is not None:
        return f"{reason}@{status.gpus.decided_at}"
    if reason == RESTART_IGNORED:
        request = hashlib.sha256((status.restart_request or "").encode()).hexdigest()[:12]
        return f"{reason}/{request}"
    if reason in ("WorkersCreated", "PodCreateFailed"):
        # By message (which names the attempt): after a gang restart the Created condition
        # still describes the previous attempt until the next gang is planned, so the count
        # of restarts alone would give the old gang's event the new gang's key.
        digest = hashlib.sha256(message.encode()).hexdigest()[:12]
        return f"{reason}/{digest}@{since('Created')}/{since('Suspended')}"
    return reason  # once per job (CheckpointsNotPersistent)


def keyed(events: list[Event], status: TrainingJobStatus) -> tuple[Event, ...]:
    """The events with their keys, from the status the same pass writes (an event that
    came with its key keeps it)."""
    return tuple(replace(e, key=e.key or event_key(e.reason, e.message, status)) for e in events)


def straggler_events(health: GangHealth, workers: set[int] | None = None) -> list[Event]:
    """The Straggler event of each straggler in `health` (of `workers` only, if given),
    keyed by the worker and since when it is slow: one per worker and episode."""
    median = health.median_step_seconds or 0.0
    return [
        Event(
            "Warning",
            STRAGGLER,
            f"worker {s.worker} is slower than the rest of the gang: {s.ratio:.2f}x its median "
            f"compute time per step ({median:.3g} s) since {s.since}",
            key=f"{STRAGGLER}/worker-{s.worker}@{s.since}",
        )
        for s in health.slow_workers
        if s.worker in health.stragglers and (workers is None or s.worker in workers)
    ]


def implied_events(
    status: TrainingJobStatus, now: datetime, *, warn_checkpoints: bool
) -> tuple[Event, ...]:
    """The events the status says were due at its latest transitions (if any is recent).

    `warn_checkpoints`: the job is one whose first workers warrant CheckpointsNotPersistent.
    """
    times = [parse_time(c.last_transition_time) for c in status.conditions]
    if not times or max(times) < now - IMPLIED_WINDOW:
        return ()
    cond = {c.type: c for c in status.conditions}
    events: list[Event] = []
    gpus = status.gpus
    if gpus is not None and gpus.decided_at and parse_time(gpus.decided_at) >= now - IMPLIED_WINDOW:
        if gpus.previous is None:
            events.append(Event("Normal", GPUS_CHOSEN, gpus.message))
        else:
            events.append(Event("Warning", GPUS_CHANGED, gpus.message))
    if status.phase in TERMINAL_PHASES:
        ended = cond.get(status.phase or "")
        if ended is not None and ended.status == "True":
            kind: EventType = "Normal" if status.phase == "Succeeded" else "Warning"
            events.append(Event(kind, ended.reason, ended.message))
        return keyed(events, status)
    suspended = cond.get("Suspended")
    if status.phase == "Suspended":
        if suspended is not None and suspended.status == "True":
            events.append(Event("Normal", "Suspended", suspended.message))
        return keyed(events, status)
    if suspended is not None and suspended.status == "False" and suspended.reason == "Resumed":
        events.append(Event("Normal", "Resumed", RESUMED_MESSAGE))
    restarting = cond.get("Restarting")
    if restarting is not None and restarting.status == "True" and status.restarts > 0:
        kind = restart_event_type(restarting.reason)
        events.append(Event(kind, "GangRestart", restarting.message))
        if restarting.reason == "ProgressDeadlineExceeded":
            why = restarting.message.split(RESTART_SEPARATOR, 1)[0]
            events.append(Event("Warning", "ProgressDeadlineExceeded", why))
    created = cond.get("Created")
    if created is not None and created.status == "True" and created.reason == "WorkersCreated":
        events.append(Event("Normal", "WorkersCreated", created.message))
        if warn_checkpoints:
            events.append(Event("Normal", "CheckpointsNotPersistent", CHECKPOINTS_MESSAGE))
    if created is not None and created.status == "False" and created.reason == "PodCreateFailed":
        events.append(Event("Warning", "PodCreateFailed", created.message))
    running = cond.get("Running")
    if running is not None and running.status == "False" and running.reason == "WorkersTerminating":
        events.append(Event("Warning", "WorkersTerminating", running.message))
    straggling = cond.get(STRAGGLER)
    if straggling is not None and straggling.status == "True" and status.health is not None:
        events.extend(straggler_events(status.health))
    return keyed(events, status)
