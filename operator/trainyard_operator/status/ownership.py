"""Which of the pods labelled with a job's name are the job's own: the ones whose controller
ownerReference carries the job's UID.

Labels say which job *name* a pod was made for; only the UID says which job. A job deleted
with `--cascade=orphan` leaves its pods behind without owners, and a job re-created under the
same name would otherwise adopt them — their phases, exit codes and stale results. Such
strays (pods of ours, by label, owned by no live job of that name) are reported once and
removed, and their names are freed for the new job's workers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from trainyard_operator.status.events import Event
from trainyard_operator.status.pods import PodView
from trainyard_operator.status.reconcile import PodRef


@dataclass(frozen=True)
class Ownership:
    """The job's own pods, and what to do about the strays among those with its name."""

    own: list[PodView]
    delete: list[PodRef]
    event: Event | None
    strays: frozenset[str]
    """UIDs of every stray seen, reported now or before."""


def sort_by_owner(pods: Sequence[PodView], job_uid: str, reported: frozenset[str]) -> Ownership:
    """Split `pods` by their controller's UID; `reported` holds stray UIDs already told of."""
    own = [p for p in pods if p.owner_uid == job_uid]
    strays = [p for p in pods if p.owner_uid != job_uid]
    delete = [PodRef(p.name, p.uid) for p in strays if not p.deleting]
    fresh = sorted(p.name for p in strays if p.uid not in reported)
    event = None
    if fresh:
        event = Event(
            "Warning",
            "StrayWorkersRemoved",
            f"pods {', '.join(fresh)} carry this job's name but belong to no live job (a job of "
            "the same name deleted with --cascade=orphan?): they are not adopted and are "
            "deleted; this job's workers take their names once they are gone",
        )
    return Ownership(own=own, delete=delete, event=event, strays=frozenset(p.uid for p in strays))
