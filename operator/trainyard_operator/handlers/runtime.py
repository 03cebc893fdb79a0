"""What every handler shares for the life of the operator process: settings, the API client,
metrics, the pod index (and the GPU node index), one `JobWorker` per TrainingJob, and the
PodGroup flavour found at start-up.

`handlers.registration` creates it in kopf's startup handler and keeps it in kopf's memo;
`handlers.worker` reads it. Nothing here makes decisions.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import aiohttp
import kopf

from trainyard_operator.builders import BuildSettings, PodGroupFlavor
from trainyard_operator.clients import KubeClient
from trainyard_operator.metrics import OperatorMetrics
from trainyard_operator.settings import OperatorSettings
from trainyard_operator.status import PodView
from trainyard_operator.status.gpus import NodeView

if TYPE_CHECKING:
    from trainyard_operator.handlers.worker import JobWorker

JobKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Parked:
    """A job with nothing to do (no pods, no timers, nothing owed), kept without a worker:
    its worker, its body and its parsed spec go, which makes thousands of suspended or
    finished jobs cheap to hold. A watch event for the job (or one of its pods) brings a
    worker back; what it must not do again is kept here."""

    uid: str
    resource_version: int
    timed_running: bool
    """time_to_running was observed for its first run already."""


@dataclass
class Runtime:
    """Operator-wide state shared by the handlers."""

    settings: OperatorSettings
    metrics: OperatorMetrics
    client: KubeClient
    http: aiohttp.ClientSession
    build: BuildSettings
    pod_group_flavor: PodGroupFlavor | None = None
    pods: kopf.Index[JobKey, PodView] | None = None
    """kopf's in-memory index of worker pods by (namespace, job), filled from its watch."""
    nodes: kopf.Index[str, NodeView] | None = None
    """kopf's index of GPU nodes (all under the key ""), with TRAINYARD_READ_NODES only."""
    workers: dict[JobKey, JobWorker] = field(default_factory=dict)
    parked: dict[JobKey, Parked] = field(default_factory=dict)
    """Jobs whose worker stopped because they had nothing to do (see Parked)."""
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    """Background tasks of the operator (the consistency passes), cancelled at shutdown."""
    ghosts: frozenset[str] = frozenset()
    """UIDs of indexed pods the consistency pass found deleted (kopf's index keeps them)."""

    def pods_of(self, key: JobKey) -> list[PodView]:
        """The job's worker pods as last seen by the watch (every attempt), less ghosts."""
        if self.pods is None:
            return []
        return [p for p in self.pods.get(key, []) or [] if p.uid not in self.ghosts]

    def indexed_pods(self) -> list[tuple[JobKey, PodView]]:
        """Every pod in the index with its job's key, ghosts included."""
        if self.pods is None:
            return []
        return [(key, p) for key in list(self.pods) for p in self.pods.get(key, []) or []]
