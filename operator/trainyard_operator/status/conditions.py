"""metav1.Condition bookkeeping: one entry per type, lastTransitionTime kept when unchanged.

The reconcile logic (`status.reconcile`) calls `set_condition` for every decision; this module
makes sure that re-deciding the same thing does not move lastTransitionTime (so `kubectl
describe` shows when a state began, not when the operator last looked).
"""

from datetime import datetime
from typing import Literal

from trainyard_operator.api.status import Condition
from trainyard_operator.status.times import format_time

ConditionStatus = Literal["True", "False", "Unknown"]

# The order conditions are listed in, so that the object reads like a timeline.
ORDER = ("Created", "Running", "Restarting", "Straggler", "Suspended", "Succeeded", "Failed")


def get_condition(conditions: list[Condition], kind: str) -> Condition | None:
    """The condition of this type, if present."""
    return next((c for c in conditions if c.type == kind), None)


def status_of(conditions: list[Condition], kind: str) -> str | None:
    """The status ("True", "False", "Unknown") of the condition of this type; None if absent."""
    cond = get_condition(conditions, kind)
    return cond.status if cond else None


def set_condition(
    conditions: list[Condition],
    kind: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    *,
    now: datetime,
    generation: int,
    add: bool = True,
) -> list[Condition]:
    """Return the list with `kind` set; lastTransitionTime moves only when status changes.

    With add=False a missing condition stays missing (used for False states of conditions
    that never applied, e.g. Suspended=False on a job that was never suspended).
    """
    old = get_condition(conditions, kind)
    if old is None and not add:
        return conditions
    unchanged = old is not None and old.status == status
    since = old.last_transition_time if unchanged and old is not None else format_time(now)
    new = Condition(
        type=kind,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=since,
        observed_generation=generation,
    )
    rest = [c for c in conditions if c.type != kind]
    rest.append(new)
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(rest, key=lambda c: rank.get(c.type, len(ORDER)))
