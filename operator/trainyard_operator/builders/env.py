"""The worker container's environment: the pod contract of docs/contracts.md.

torchrun reads `PET_<FLAG>` in place of its command-line flags, so the default command
(`python -m trainyard_trainer.launch`, torchrun with exit codes kept apart) needs no
arguments; `TRAINYARD_CONFIG` carries the built-in trainer's configuration as the CRD's own
(camelCase, defaulted) field names. `spec.env` follows the contract's variables; admission
already rejected any that reuse a reserved name.
"""

from __future__ import annotations

import json
from typing import Any

from trainyard_operator.api.constants import TERMINATION_LOG
from trainyard_operator.api.job import TrainingJob
from trainyard_operator.builders.meta import master_address
from trainyard_operator.builders.settings import BuildSettings


def trainer_config(job: TrainingJob) -> dict[str, Any]:
    """The `TRAINYARD_CONFIG` object: what the built-in trainer reads."""
    spec = job.spec
    return {
        "job": job.name,
        "namespace": job.namespace,
        "trainer": spec.trainer.to_wire(),
        "compression": [stage.to_wire() for stage in spec.compression],
        "output": {"path": spec.output.path},
        "checkpoint": spec.checkpoint.to_wire(),
    }


def contract_env(
    job: TrainingJob, index: int, restart: int, settings: BuildSettings
) -> list[dict[str, Any]]:
    """The contract's variables for worker `index` of gang attempt `restart`, in a fixed order."""
    spec = job.spec
    master = master_address(job)
    values = {
        "PET_NNODES": spec.workers,
        "PET_NPROC_PER_NODE": job.procs,
        "PET_NODE_RANK": index,
        "PET_MASTER_ADDR": master,
        "PET_MASTER_PORT": settings.master_port,
        # The operator restarts whole gangs; a torchrun retrying alone would rejoin a
        # rendezvous its peers have left.
        "PET_MAX_RESTARTS": 0,
        "MASTER_ADDR": master,
        "MASTER_PORT": settings.master_port,
        "NODE_RANK": index,
        "WORLD_SIZE": job.world_size,
        "TRAINYARD_JOB": job.name,
        "TRAINYARD_NAMESPACE": job.namespace,
        "TRAINYARD_RESTART": restart,
        # what the worker was given (the operator's choice for "auto"): the trainer uses CUDA
        # and nccl only with GPUs, gloo on CPU otherwise, whatever else the node may expose
        "TRAINYARD_GPUS": job.gpus,
        "TRAINYARD_CONFIG": json.dumps(trainer_config(job), separators=(",", ":")),
        "TRAINYARD_OUTPUT_DIR": spec.output.path,
        "TRAINYARD_METRICS_PORT": settings.metrics_port,
        "TRAINYARD_TERMINATION_LOG": TERMINATION_LOG,
        "TRAINYARD_LOG_FORMAT": settings.log_format,
        "PYTHONUNBUFFERED": 1,
    }
    return [{"name": name, "value": str(value)} for name, value in values.items()]


def worker_env(
    job: TrainingJob, index: int, restart: int, settings: BuildSettings
) -> list[dict[str, Any]]:
    """The contract's variables followed by the job's own `spec.env`."""
    return contract_env(job, index, restart, settings) + [e.to_wire() for e in job.spec.env]
