"""Who is a straggler, and since when: the running gang's step times in brief (status.health).

Under DDP every rank steps in lockstep, so a step takes as long on every worker: the peers of
a slow worker wait for it in the gradient all-reduce. What tells it apart is its compute time
per step, a step's time less that wait, which every trainer counts
(`trainyard_trainer_step_compute_seconds_total` beside `trainyard_trainer_steps_total`,
docs/contracts.md). The handlers read every worker's counters at each progress read and keep
the last window of them per worker (`remember`); `step_seconds` turns one worker's history
into its compute seconds per step averaged over the window, and `assess` compares the workers
with the gang's median, as an alert rule `avg(...)[window] > factor * median for: window`
would:

- a worker whose average is above `factor` x the median is slow (status.health.slowWorkers,
  with since when); one that stays slow for a whole window is a straggler: the Straggler
  condition names it, and it gets one Straggler event (keyed by the worker and since when it
  is slow, status/events.py). It stops being slow, and a straggler, when its average is back
  under the factor;
- averaging over the window smooths the step-to-step noise of a busy machine, and the second
  window keeps a burst of a few seconds, however slow, from being called a straggler: only a
  worker slow throughout is; nothing is judged before a worker's readings span a full window
  (a gang that just started, an operator that just restarted), so warm-up never counts;
- the median of an even count is the lower middle value, so that in a gang of two the slow
  worker is compared with the other one rather than with their mean;
- the numbers are written to the status when the slow workers or stragglers change, else
  every `REFRESH_SECONDS`, not at every read, so a long job costs no status write per read.

Pure: plain numbers in, the next status.health, the Straggler condition and events out.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from trainyard_operator.api.status import GangHealth, SlowWorker
from trainyard_operator.status.events import STRAGGLER, Event, straggler_events
from trainyard_operator.status.times import format_time, parse_time, seconds_since

#: The condition type; its reasons while True and once every worker is back in step.
CONDITION = STRAGGLER
SLOW = "SlowWorkers"
EVEN = "WorkersEven"
#: Its reason when the gang it judged is gone (restarted, suspended or finished).
STOPPED = "GangNotRunning"
#: The longest the status's numbers lag behind the readings when no straggler changes.
REFRESH_SECONDS = 30.0


@dataclass(frozen=True)
class StragglerPolicy:
    """TRAINYARD_STRAGGLER_FACTOR and TRAINYARD_STRAGGLER_WINDOW_SECONDS."""

    factor: float
    window_seconds: float


@dataclass(frozen=True)
class StepCounters:
    """One reading of a worker's step counters."""

    at: float
    """When it was read, in seconds of the reader's monotonic clock."""
    steps: float
    compute_seconds: float


def remember(
    history: Sequence[StepCounters], reading: StepCounters, window: float
) -> list[StepCounters]:
    """The history with `reading` added, less what a window no longer needs (the newest
    reading at least a window old stays: the window's average starts from it)."""
    if history and reading.steps < history[-1].steps:
        history = []  # the counters went back: a new trainer process, a new history
    kept = [*history, reading]
    start = reading.at - window
    old = [i for i, item in enumerate(kept) if item.at <= start]
    return kept[old[-1] :] if old else kept


def step_seconds(history: Sequence[StepCounters], window: float) -> float | None:
    """Compute seconds per step over the last window; None until the history spans a window,
    or when no step was made in it (a stalled worker is the progress watchdog's case)."""
    if not history:
        return None
    latest = history[-1]
    base = next((item for item in reversed(history) if item.at <= latest.at - window), None)
    if base is None or latest.steps <= base.steps:
        return None
    return max(0.0, latest.compute_seconds - base.compute_seconds) / (latest.steps - base.steps)


@dataclass(frozen=True)
class Assessment:
    """What one round of readings changes in the status."""

    health: GangHealth
    condition: tuple[Literal["True", "False"], str, str] | None = None
    """(status, reason, message) of the Straggler condition; None: leave it as it is."""
    events: tuple[Event, ...] = ()


def assess(
    old: GangHealth | None,
    times: Mapping[int, float],
    now: datetime,
    policy: StragglerPolicy,
) -> Assessment | None:
    """The gang's health from each worker's compute seconds per step (`times`, by worker
    index); None when there is nothing to write (fewer than two workers measured, or the same
    slow workers and stragglers as the stored health, written less than REFRESH_SECONDS ago)."""
    measured = {w: t for w, t in times.items() if t > 0}
    if len(measured) < 2:
        return None
    median = statistics.median_low(measured.values())
    ratios = {w: t / median for w, t in measured.items()}
    slowest = max(measured, key=lambda w: (ratios[w], -w))
    before = {s.worker: s for s in old.slow_workers} if old is not None else {}
    slow: list[SlowWorker] = []
    for worker in sorted(set(before) | set(measured)):
        if worker not in measured:
            slow.append(before[worker])  # not read this time: unknown, kept as it was
        elif ratios[worker] >= policy.factor:
            since = before[worker].since if worker in before else format_time(now)
            ratio = round(ratios[worker], 2)
            slow.append(SlowWorker(worker=worker, since=since, ratio=ratio))
    window = timedelta(seconds=policy.window_seconds)
    stragglers = [s.worker for s in slow if parse_time(s.since) + window <= now]
    was = old.stragglers if old is not None else []
    same = [(s.worker, s.since) for s in slow] == [(w, s.since) for w, s in before.items()]
    age = seconds_since(old.updated_at, now) if old is not None else None
    if same and stragglers == was and age is not None and age < REFRESH_SECONDS:
        return None
    health = GangHealth(
        median_step_seconds=_significant(median),
        slowest_worker=slowest,
        slowest_step_seconds=_significant(measured[slowest]),
        slowest_ratio=round(ratios[slowest], 2),
        slow_workers=slow,
        stragglers=stragglers,
        updated_at=format_time(now),
    )
    events = tuple(straggler_events(health, set(stragglers) - set(was)))
    if stragglers:
        return Assessment(health, ("True", SLOW, _slow_message(health, policy)), events)
    even = f"every worker within {policy.factor:g}x the gang's median compute time per step"
    return Assessment(health, ("False", EVEN, even) if was else None, events)


def _slow_message(health: GangHealth, policy: StragglerPolicy) -> str:
    median = health.median_step_seconds or 0.0
    slow = ", ".join(
        f"worker {s.worker} ({s.ratio:.2f}x since {s.since})"
        for s in health.slow_workers
        if s.worker in health.stragglers
    )
    return (
        f"{slow}: above {policy.factor:g}x the gang's median compute time per step "
        f"({median:.3g} s), averaged over {policy.window_seconds:g} s, for at least as long"
    )


def _significant(value: float) -> float:
    # Four significant digits: what a reader compares, and fewer digits that change for nothing.
    return float(f"{value:.4g}")
