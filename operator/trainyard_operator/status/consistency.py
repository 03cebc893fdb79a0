"""Which cached objects a fresh list proves stale: the consistency pass's pure half.

kopf keeps its pod index and our job workers from watch events. When a watch cannot resume
(410 Gone after an API server restart, a long disconnect) kopf lists again, but nothing tells
it about objects deleted meanwhile: no DELETED event ever comes. Left alone, a pod deleted
in that gap stays in the index as a ghost (its job never notices the lost worker) and a job
deleted in that gap keeps a worker that retries a 404 forever. `handlers.consistency` lists
now and then and asks this module what to forget.

An object newer than the list (resourceVersion above the list's) was created after the
list was taken; it is not a ghost, only not in the list yet.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from trainyard_operator.status.pods import PodView


@dataclass(frozen=True)
class Cached:
    """A job as a worker knows it."""

    uid: str
    resource_version: int


def ghost_pods(indexed: Iterable[PodView], listed: frozenset[str], list_version: int) -> set[str]:
    """UIDs of indexed pods that the list, taken after them, no longer holds."""
    return {
        pod.uid
        for pod in indexed
        if pod.uid not in listed and 0 < pod.resource_version <= list_version
    }


def gone_jobs(
    cached: Mapping[tuple[str, str], Cached],
    listed: Mapping[tuple[str, str], str],
    list_version: int,
) -> set[tuple[str, str]]:
    """Keys of jobs with a worker whose job the list, taken after it, no longer holds (or
    holds under another uid: deleted and created again while the watch was away)."""
    return {
        key
        for key, job in cached.items()
        if listed.get(key) != job.uid and 0 < job.resource_version <= list_version
    }
