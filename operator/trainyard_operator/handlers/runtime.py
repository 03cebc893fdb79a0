"""What every handler shares for the life of the operator process: settings, the API client,
metrics, the pod index, one `JobWorker` per TrainingJob, and the PodGroup flavour found at
start-up.

`handlers.registration` creates it in kopf's startup handler and keeps it in kopf's memo;
`handlers.worker` reads it. Nothing here makes decisions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import aiohttp
import kopf

from trainyard_operator.builders import BuildSettings, PodGroupFlavor
from trainyard_operator.clients import KubeClient
from trainyard_operator.metrics import OperatorMetrics
from trainyard_operator.settings import OperatorSettings
from trainyard_operator.status import PodView

if TYPE_CHECKING:
    from trainyard_operator.handlers.worker import JobWorker

JobKey = tuple[str, str]


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
    workers: dict[JobKey, JobWorker] = field(default_factory=dict)

    def pods_of(self, key: JobKey) -> list[PodView]:
        """The job's worker pods as last seen by the watch (every attempt)."""
        if self.pods is None:
            return []
        return list(self.pods.get(key, []) or [])
