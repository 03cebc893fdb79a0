"""The periodic consistency pass: forget what a restarted watch never reported deleted.

Every TRAINYARD_RESYNC_SECONDS it lists TrainingJobs and worker pods (paged, label-selected)
and asks `status.consistency` which cached ones are stale: ghost pods are hidden from their
jobs (which then see the worker as lost and act on it), and workers of jobs that no longer
exist are stopped. Between passes it costs nothing; a failed list is retried next time.
"""

from __future__ import annotations

import asyncio
import logging

from trainyard_operator.handlers.runtime import Runtime
from trainyard_operator.status.consistency import Cached, ghost_pods, gone_jobs

log = logging.getLogger(__name__)


async def run_consistency_passes(runtime: Runtime) -> None:
    """Forever: wait one period, then run a pass (cancelled at shutdown)."""
    while True:
        await asyncio.sleep(runtime.settings.resync_seconds)
        try:
            await consistency_pass(runtime)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(
                "consistency pass failed; trying again in %.0fs", runtime.settings.resync_seconds
            )


async def consistency_pass(runtime: Runtime) -> None:
    namespaces = runtime.settings.namespaces
    pods_version, pod_uids = await runtime.client.list_worker_pods(namespaces)
    indexed = runtime.indexed_pods()
    ghosts = ghost_pods((pod for _, pod in indexed), pod_uids, pods_version)
    new = ghosts - runtime.ghosts
    # a ghost that left the index (kopf did see it go after all) need not be kept
    present = {pod.uid for _, pod in indexed}
    runtime.ghosts = frozenset(uid for uid in ghosts | runtime.ghosts if uid in present)
    if new:
        log.warning(
            "%d worker pods were deleted while the watch was away; forgetting them", len(new)
        )
        for key in {key for key, pod in indexed if pod.uid in new}:
            worker = runtime.workers.get(key)
            if worker is not None:
                worker.poke()

    jobs_version, listed = await runtime.client.list_jobs(namespaces)
    cached = {key: Cached(w.uid, w.resource_version) for key, w in runtime.workers.items()}
    cached.update({key: Cached(p.uid, p.resource_version) for key, p in runtime.parked.items()})
    for key in gone_jobs(cached, listed, jobs_version):
        parked = runtime.parked.get(key)
        if parked is not None and parked.uid == cached[key].uid:
            log.warning("%s/%s was deleted while the watch was away; forgotten", *key)
            del runtime.parked[key]
            runtime.metrics.forget(*key)
            continue
        worker = runtime.workers.get(key)
        if worker is None or worker.uid != cached[key].uid:
            continue  # replaced while we listed
        log.warning("%s/%s was deleted while the watch was away; its worker stops", *key)
        await worker.stop()
        runtime.workers.pop(key, None)
        runtime.metrics.forget(*key)
