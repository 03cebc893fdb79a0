"""Handlers: the kopf glue and the per-job reconcile loop around `trainyard_operator.status`.

`registration` holds the kopf handlers (importing this package registers them), `worker`
the per-job loop that turns a `status.Plan` into API calls through `clients`, `progress`
the reads of worker 0's metrics, `capacity` the GPU nodes and quotas a `gpus: auto` choice
reads, and `runtime` the state they share.
"""

from trainyard_operator.handlers import registration
from trainyard_operator.handlers.runtime import Runtime
from trainyard_operator.handlers.worker import JobWorker

__all__ = ["JobWorker", "Runtime", "registration"]
