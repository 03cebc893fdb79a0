"""The kopf handlers: thin glue from watch events to one `JobWorker` per TrainingJob.

- startup: tune kopf (no annotations, no finalizers, no event posting of its own, no
  cluster scanning — so the operator needs no CRD or namespace permissions), build the
  shared `Runtime` and detect the PodGroup flavour;
- an index of worker pods by (namespace, job), kept by kopf from its pod watch; kopf fills
  indexes completely before it delivers any other event, so a restarted operator never sees
  a job before its pods;
- with TRAINYARD_READ_NODES (`watch_gpu_nodes`, called by `main`), an index of the GPU nodes
  that `gpus: auto` chooses from (`handlers.capacity`);
- event handlers that hand each TrainingJob version to its worker and wake a job's worker
  whenever one of its pods changes;
- the periodic consistency pass (`handlers.consistency`), started with the runtime.
Importing this module registers the handlers with kopf's default registry (`main` does it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import aiohttp
import kopf

from trainyard_operator.api.constants import GROUP, LABEL_JOB_NAME, PLURAL, VERSION
from trainyard_operator.builders import BuildSettings, NetworkPolicySettings
from trainyard_operator.clients import KubeClient
from trainyard_operator.handlers.capacity import node_view
from trainyard_operator.handlers.consistency import run_consistency_passes
from trainyard_operator.handlers.kopf_tuning import NoDiffBase
from trainyard_operator.handlers.memory import release_after_parking
from trainyard_operator.handlers.runtime import Runtime
from trainyard_operator.handlers.worker import JobWorker
from trainyard_operator.metrics import OperatorMetrics
from trainyard_operator.settings import OperatorSettings
from trainyard_operator.status import PodView
from trainyard_operator.status.gpus import NodeView

log = logging.getLogger(__name__)

WORKER_PODS = {LABEL_JOB_NAME: kopf.PRESENT}


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Tune kopf and build the runtime every other handler uses."""
    # kopf's persistence (progress and diff-base annotations) is left unused on purpose:
    # there are no change handlers to persist, and no daemons, timers or deletion handlers
    # that would need a finalizer, so kopf writes nothing to TrainingJobs or pods.
    # Our own events carry specific reasons; kopf's "Handler succeeded" ones would be noise.
    settings.posting.enabled = False
    # Serve only what exists at start-up and the namespaces given: no list/watch permission
    # on CustomResourceDefinitions or Namespaces is needed.
    settings.scanning.disabled = True
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.batching.batch_window = 0.05
    # The handlers' label filter is applied by kopf after the event arrives; this one is
    # sent to the API server, so only worker pods reach the operator, not every pod of the
    # cluster (memory, CPU and bandwidth then scale with the jobs, not with the cluster).
    settings.watching.label_selectors["pods"] = LABEL_JOB_NAME
    # No change handlers: kopf's per-event deep copy for them is skipped (kopf_tuning).
    settings.persistence.diffbase_storage = NoDiffBase()

    config: OperatorSettings = memo["settings"]
    metrics: OperatorMetrics = memo["metrics"]
    client = KubeClient.from_environment(
        metrics,
        config.api_concurrency,
        timeout=config.api_timeout_seconds,
        qps=config.api_qps,
        burst=config.api_burst,
    )
    http = aiohttp.ClientSession()
    flavor = await client.pod_group_flavor()
    fence = (
        NetworkPolicySettings(
            operator_namespace=config.network_policy_operator_namespace,
            operator_pods=config.network_policy_operator_pods,
            monitoring_namespaces=config.network_policy_monitoring_namespaces,
        )
        if config.network_policy
        else None
    )
    runtime = Runtime(
        settings=config,
        metrics=metrics,
        client=client,
        http=http,
        build=BuildSettings(
            trainer_image=config.trainer_image,
            pod_group_flavor=flavor,
            network_policy=fence,
            log_format=config.log_format,
        ),
        pod_group_flavor=flavor,
    )
    log.info(
        "gang scheduling: %s",
        f"PodGroups ({runtime.pod_group_flavor})"
        if runtime.pod_group_flavor
        else "no PodGroup API",
    )
    if fence is not None:
        log.info(
            "per-job NetworkPolicies: metrics open to namespaces %s and operator pods %s in %s",
            fence.monitoring_namespaces,
            fence.operator_pods,
            fence.operator_namespace,
        )
    memo["runtime"] = runtime
    runtime.tasks.append(
        asyncio.create_task(run_consistency_passes(runtime), name="consistency passes")
    )
    runtime.tasks.append(asyncio.create_task(release_after_parking(runtime), name="memory release"))


@kopf.on.cleanup()
async def shutdown(memo: kopf.Memo, **_: Any) -> None:
    """Stop every job worker and close connections."""
    runtime: Runtime | None = memo.get("runtime")
    if runtime is None:
        return
    for task in runtime.tasks:
        task.cancel()
    for worker in list(runtime.workers.values()):
        await worker.stop()
    await runtime.http.close()
    runtime.client.close()


@kopf.index("pods", labels=WORKER_PODS)
async def worker_pods(body: kopf.Body, **_: Any) -> dict[tuple[str, str], PodView] | None:
    """Worker pods by (namespace, job name), as small immutable views."""
    view = PodView.from_object(body)
    if view is None:
        return None
    return {(body.metadata.namespace or "", view.job): view}


async def gpu_nodes(body: kopf.Body, **_: Any) -> dict[str, NodeView] | None:
    """GPU nodes, all under the key "" (nodes without allocatable GPUs are not kept)."""
    view = node_view(body)
    return None if view is None else {"": view}


def watch_gpu_nodes() -> None:
    """Register the GPU node index: only with it does the operator list and watch Nodes
    (TRAINYARD_READ_NODES; the chart grants the rule in its cluster-wide mode). Like the pod
    index, kopf fills it before any job event, so a first choice never sees a partial list."""
    kopf.index(group="", version="v1", plural="nodes")(gpu_nodes)


def _take_indexes(runtime: Runtime, kwargs: Mapping[str, Any]) -> None:
    # kopf passes each index as a keyword named after its function.
    runtime.pods = kwargs["worker_pods"]
    runtime.nodes = kwargs.get("gpu_nodes")


@kopf.on.event("pods", labels=WORKER_PODS)
async def pod_changed(
    *, namespace: str | None, labels: Mapping[str, str], memo: Any, **kwargs: Any
) -> None:
    """Wake the worker of the pod's job (async: kopf would run a sync one in a thread)."""
    runtime: Runtime = memo["runtime"]
    _take_indexes(runtime, kwargs)
    key = (namespace or "", labels.get(LABEL_JOB_NAME, ""))
    worker = runtime.workers.get(key)
    if worker is not None:
        worker.poke()
    elif (parked := runtime.parked.pop(key, None)) is not None:
        # a pod of a parked job: a worker again, which reads the job first
        runtime.workers[key] = JobWorker(runtime, key, None, parked)


@kopf.on.event(GROUP, VERSION, PLURAL)
async def job_changed(*, event: kopf.RawEvent, memo: Any, **kwargs: Any) -> None:
    """Start, update or stop the worker of this TrainingJob."""
    runtime: Runtime = memo["runtime"]
    _take_indexes(runtime, kwargs)
    body = event["object"]
    meta = body.get("metadata") or {}
    key = (str(meta.get("namespace", "")), str(meta.get("name", "")))
    worker = runtime.workers.get(key)
    if worker is not None and worker.body.get("metadata", {}).get("uid") != meta.get("uid"):
        # A new job under an old name: its predecessor's worker must not act for it.
        await worker.stop()
        runtime.workers.pop(key, None)
        worker = None
    parked = runtime.parked.pop(key, None)
    if event["type"] == "DELETED":
        if worker is not None:
            await worker.stop()
            runtime.workers.pop(key, None)
        runtime.metrics.forget(*key)
        return
    if worker is not None:
        worker.offer(body)
        return
    if parked is not None and parked.uid != meta.get("uid"):
        parked = None  # a new job under the name of a parked one
    version = str(meta.get("resourceVersion", ""))
    if parked is not None and version.isdigit() and int(version) <= parked.resource_version:
        # nothing new since it parked (a watch that listed again): it stays parked
        runtime.parked[key] = parked
        return
    runtime.workers[key] = JobWorker(runtime, key, body, parked)
