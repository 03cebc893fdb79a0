"""The pure leader-election decision: who may write the Lease, from what a candidate saw."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from trainyard_operator.leadership import LeaseRecord, LeaseTiming, claim
from trainyard_operator.leadership.lease import released

NOW = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
EARLIER = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)
TIMING = LeaseTiming()


def held_by(holder: str | None, transitions: int = 3) -> LeaseRecord:
    return LeaseRecord(holder, 15, EARLIER, EARLIER, transitions)


def test_the_first_candidate_creates_the_lease() -> None:
    record = claim(None, "a", unchanged_for=0, now=NOW, timing=TIMING)
    assert record == LeaseRecord("a", 15, NOW, NOW, 0)


def test_the_holder_renews_keeping_its_acquire_time_and_count() -> None:
    record = claim(held_by("a"), "a", unchanged_for=0, now=NOW, timing=TIMING)
    assert record == LeaseRecord("a", 15, EARLIER, NOW, 3)


def test_a_live_leader_keeps_the_lease_whatever_the_clocks_say() -> None:
    # renewTime is an hour old by this candidate's clock, but it saw the record change
    # a moment ago: the leader's clock may simply differ
    assert claim(held_by("a"), "b", unchanged_for=5, now=NOW, timing=TIMING) is None


def test_a_silent_leader_loses_the_lease_after_its_duration() -> None:
    record = claim(held_by("a"), "b", unchanged_for=15.5, now=NOW, timing=TIMING)
    assert record == LeaseRecord("b", 15, NOW, NOW, 4)


def test_a_released_lease_is_taken_at_once() -> None:
    record = claim(released(held_by("a"), NOW), "b", unchanged_for=0, now=NOW, timing=TIMING)
    assert record is not None and record.holder == "b" and record.transitions == 4


@pytest.mark.parametrize(("retry", "deadline", "duration"), [(2, 10, 10), (10, 2, 15), (0, 1, 2)])
def test_timing_that_could_let_two_leaders_act_is_refused(
    retry: float, deadline: float, duration: float
) -> None:
    with pytest.raises(ValueError, match="retry < renew deadline < duration"):
        LeaseTiming(duration=duration, renew_deadline=deadline, retry=retry)
