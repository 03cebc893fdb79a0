"""Who is a straggler and since when (status/health.py), with plain numbers.

What a user notices: status.health's median, slowest worker and ratio; the Straggler
condition; exactly one Straggler event per slow worker and episode, also across passes, an
operator restart (implied events) and a gang restart (which ends the episode).
"""

from __future__ import annotations

from datetime import timedelta

from trainyard_operator.api.status import GangHealth
from trainyard_operator.status import implied_events, reconcile
from trainyard_operator.status.conditions import get_condition
from trainyard_operator.status.health import (
    REFRESH_SECONDS,
    StepCounters,
    StragglerPolicy,
    assess,
    remember,
    step_seconds,
)
from trainyard_operator.status.times import format_time
from unit.test_status_reconcile import T0, make_job, pod, step

POLICY = StragglerPolicy(factor=1.5, window_seconds=10)


def history(*points: tuple[float, float, float]) -> list[StepCounters]:
    kept: list[StepCounters] = []
    for at, steps, compute in points:
        kept = remember(kept, StepCounters(at, steps, compute), POLICY.window_seconds)
    return kept


def test_step_time_is_averaged_over_a_full_window_only() -> None:
    # 10 steps a second, 0.05 s of compute each
    points = [(t, 10.0 * t, 0.5 * t) for t in range(0, 13)]
    assert step_seconds(history(*points[:10]), 10) is None  # 9 s of readings: not judged yet
    assert step_seconds(history(*points), 10) == 0.05
    # the history keeps what the window needs and no more
    assert [c.at for c in history(*points)] == [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]


def test_a_restarted_trainer_starts_a_new_history() -> None:
    kept = history((0, 100, 5), (10, 200, 10))
    assert step_seconds(kept, 10) == 0.05
    kept = remember(kept, StepCounters(11, 3, 0.1), 10)  # counters went back
    assert kept == [StepCounters(11, 3, 0.1)]
    assert step_seconds(kept, 10) is None


def test_a_worker_without_steps_in_the_window_is_not_judged() -> None:
    assert step_seconds(history((0, 50, 2), (10, 50, 2)), 10) is None


SLOW = {0: 0.10, 1: 0.11, 2: 0.25}
WINDOW = timedelta(seconds=POLICY.window_seconds)


def slow_for(seconds: float, times: dict[int, float] = SLOW) -> GangHealth:
    """The health of a gang whose `times` have held since T0, judged `seconds` later."""
    first = assess(None, times, T0, POLICY)
    assert first is not None
    later = assess(first.health, times, T0 + timedelta(seconds=seconds), POLICY)
    return later.health if later is not None else first.health


def test_a_worker_slow_for_a_window_becomes_a_straggler_with_one_event() -> None:
    first = assess(None, SLOW, T0, POLICY)
    assert first is not None
    health = first.health
    assert health.median_step_seconds == 0.11
    assert (health.slowest_worker, health.slowest_ratio) == (2, 2.27)
    # slow from now on, but not a straggler before a whole window of it
    assert [(s.worker, s.since) for s in health.slow_workers] == [(2, format_time(T0))]
    assert health.stragglers == [] and first.condition is None and first.events == ()
    # not yet, just before the window is over
    early = assess(health, SLOW, T0 + WINDOW - timedelta(seconds=1), POLICY)
    assert early is None  # nothing changed worth a status write

    judged = assess(health, SLOW, T0 + WINDOW, POLICY)
    assert judged is not None
    assert judged.health.stragglers == [2]
    assert judged.condition is not None and judged.condition[:2] == ("True", "SlowWorkers")
    assert "worker 2 (2.27x since" in judged.condition[2]
    (event,) = judged.events
    assert (event.type, event.reason) == ("Warning", "Straggler")
    assert event.message.startswith("worker 2 is slower than the rest of the gang: 2.27x")
    assert event.key == f"Straggler/worker-2@{format_time(T0)}"

    # still slow a refresh later: same since, no second event
    later = T0 + WINDOW + timedelta(seconds=REFRESH_SECONDS + 1)
    again = assess(judged.health, {0: 0.10, 1: 0.11, 2: 0.30}, later, POLICY)
    assert again is not None
    assert again.health.stragglers == [2] and again.events == ()
    assert [s.since for s in again.health.slow_workers] == [format_time(T0)]


def test_a_burst_shorter_than_the_window_is_no_straggler() -> None:
    first = assess(None, {0: 0.1, 1: 0.1, 2: 0.9}, T0, POLICY)
    assert first is not None and first.health.slow_workers
    # 9x slower, but back in step before the window is over: never a straggler, no event
    back = assess(first.health, {0: 0.1, 1: 0.1, 2: 0.11}, T0 + WINDOW / 2, POLICY)
    assert back is not None
    assert back.health.slow_workers == [] and back.health.stragglers == []
    assert back.condition is None and back.events == ()


def test_a_straggler_that_catches_up_ends_its_episode() -> None:
    health = slow_for(POLICY.window_seconds)
    assert health.stragglers == [2]
    t1 = T0 + WINDOW + timedelta(seconds=2)
    back = assess(health, {0: 0.10, 1: 0.10, 2: 0.12}, t1, POLICY)
    assert back is not None
    assert back.health.stragglers == [] and back.health.slow_workers == []
    assert back.condition == (
        "False",
        "WorkersEven",
        "every worker within 1.5x the gang's median compute time per step",
    )
    assert back.events == ()
    # a new episode is a new occurrence: a new event with a new key
    t2 = t1 + timedelta(seconds=40)
    slow_again = assess(back.health, SLOW, t2, POLICY)
    assert slow_again is not None
    relapse = assess(slow_again.health, SLOW, t2 + WINDOW, POLICY)
    assert relapse is not None
    assert [e.key for e in relapse.events] == [f"Straggler/worker-2@{format_time(t2)}"]


def test_in_a_gang_of_two_the_slow_worker_is_compared_with_the_other() -> None:
    # the mean of 0.1 and 0.2 would make the slow one only 1.33x "the median"
    health = slow_for(POLICY.window_seconds, {0: 0.1, 1: 0.2})
    assert health.median_step_seconds == 0.1
    assert health.stragglers == [1]


def test_an_even_gang_has_no_straggler_and_no_condition() -> None:
    outcome = assess(None, {0: 0.1, 1: 0.12, 2: 0.11, 3: 0.1}, T0, POLICY)
    assert outcome is not None
    assert outcome.health.slow_workers == [] and outcome.condition is None
    assert outcome.health.slowest_worker == 1
    assert assess(None, {0: 0.1}, T0, POLICY) is None  # one worker: nobody to compare with


def test_a_straggler_not_read_this_time_stays_one() -> None:
    health = slow_for(POLICY.window_seconds)
    later = T0 + WINDOW + timedelta(seconds=REFRESH_SECONDS + 1)
    unread = assess(health, {0: 0.10, 1: 0.11}, later, POLICY)
    assert unread is not None
    assert unread.health.stragglers == [2]
    assert unread.events == ()


def test_reconcile_reports_a_straggler_once_and_a_gang_restart_ends_it() -> None:
    pods = [pod(0), pod(1), pod(2)]
    job = make_job(workers=3)
    job = step(job, reconcile(job, [], T0))
    job = step(job, reconcile(job, pods, T0 + timedelta(seconds=1)))
    assert job.status.phase == "Running"
    slow = {0: 0.10, 1: 0.10, 2: 0.25}
    t0 = T0 + timedelta(seconds=20)
    plan = reconcile(job, pods, t0, step_times=slow, stragglers=POLICY)
    assert plan.events == () and get_condition(plan.status.conditions, "Straggler") is None
    job = step(job, plan)
    t1 = t0 + WINDOW
    plan = reconcile(job, pods, t1, step_times=slow, stragglers=POLICY)
    assert [e.reason for e in plan.events] == ["Straggler"]
    cond = get_condition(plan.status.conditions, "Straggler")
    assert cond is not None and (cond.status, cond.reason) == ("True", "SlowWorkers")
    health = plan.status.health
    assert isinstance(health, GangHealth) and health.slowest_worker == 2
    # the written status implies the same event (a restarted operator re-posts it, and the
    # API server refuses the duplicate by its name)
    implied = implied_events(plan.status, t1, warn_checkpoints=False)
    assert plan.events[0].key in {e.key for e in implied}
    job = step(job, plan)

    # the next passes, still slow: no further event
    for seconds in (1, 2, 40):
        later = t1 + timedelta(seconds=seconds)
        plan = reconcile(job, pods, later, step_times=slow, stragglers=POLICY)
        assert "Straggler" not in [e.reason for e in plan.events]
        job = step(job, plan)

    # worker 2 fails: the gang restarts and the episode ends
    failed = [pod(0), pod(1), pod(2, "Failed", exit_code=137)]
    plan = reconcile(job, failed, t1 + timedelta(seconds=50), stragglers=POLICY)
    assert plan.status.phase == "Restarting"
    cond = get_condition(plan.status.conditions, "Straggler")
    assert cond is not None and (cond.status, cond.reason) == ("False", "GangNotRunning")
    assert plan.status.health is not None
    assert plan.status.health.stragglers == [] and plan.status.health.slow_workers == []
