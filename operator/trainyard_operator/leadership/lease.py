"""Who may hold the Lease: the pure decision, as client-go's leader election makes it.

A candidate never compares the Lease's renewTime with its own clock (replicas' clocks may
differ); it counts how long it has seen the same record unchanged. A record unchanged for
longer than its leaseDurationSeconds belongs to a leader that stopped renewing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime


@dataclass(frozen=True)
class LeaseTiming:
    """client-go's defaults: a standby takes over at most ~duration + retry after a crash."""

    duration: float = 15.0
    """leaseDurationSeconds written into the Lease: how long a standby waits on a silent leader."""
    renew_deadline: float = 10.0
    """The leader stops acting when it has not renewed for this long (< duration, so it has
    stopped before any standby may take over)."""
    retry: float = 2.0
    """Seconds between tries (to take the Lease as a standby, to renew it as the leader)."""

    def __post_init__(self) -> None:
        if not 0 < self.retry < self.renew_deadline < self.duration:
            raise ValueError(
                "lease timing needs 0 < retry < renew deadline < duration, got "
                f"{self.retry} / {self.renew_deadline} / {self.duration}"
            )


@dataclass(frozen=True)
class LeaseRecord:
    """The fields of a Lease's spec that leader election uses."""

    holder: str | None
    duration_seconds: int
    acquired: datetime | None
    renewed: datetime | None
    transitions: int = 0


def claim(
    current: LeaseRecord | None,
    me: str,
    *,
    unchanged_for: float,
    now: datetime,
    timing: LeaseTiming,
) -> LeaseRecord | None:
    """The record `me` should write to hold the Lease, or None when another holds it.

    `unchanged_for`: seconds this candidate has seen `current` without any change.
    """
    duration = max(1, round(timing.duration))
    if current is None:
        return LeaseRecord(me, duration, now, now, 0)
    if current.holder == me:
        return replace(current, duration_seconds=duration, renewed=now)
    released = not current.holder
    expired = unchanged_for > current.duration_seconds
    if not (released or expired):
        return None
    return LeaseRecord(me, duration, now, now, current.transitions + 1)


def released(current: LeaseRecord, now: datetime) -> LeaseRecord:
    """What a leader that stops on purpose writes: no holder, so a standby takes over at once."""
    return replace(current, holder=None, duration_seconds=1, renewed=now)
