"""Process-group set-up: backend choice, a bounded wait for the master, and small collectives.

Run under torchrun, the process reads RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR /
MASTER_PORT from the environment torchrun gives it; run as a plain `python -m
trainyard_trainer` it forms a one-process group on an in-memory store, so the train loop
(`train.py`) always has a process group and DDP (one code path for every world size).
The backend follows the GPUs the worker was given (`TRAINYARD_GPUS`, set by the operator:
the job's `resources.gpus`, or its choice for `auto`): nccl on CUDA with GPUs, gloo on CPU
without -- even where the node's GPUs are visible anyway -- so one TrainingJob manifest runs
on CPU-only kind and on GPU nodes. Without the variable (a plain local run) it follows the
hardware.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

DEFAULT_MASTER_TIMEOUT_S = 300.0


class MasterUnreachableError(RuntimeError):
    """The rendezvous master did not answer within the bounded wait."""


class GpusMissingError(RuntimeError):
    """The GPUs the worker was given cannot be used: CUDA sees none (driver, device plugin
    or runtime), or TRAINYARD_GPUS is not a count."""


GPUS_ENV = "TRAINYARD_GPUS"


def use_cuda(env: Mapping[str, str], available: bool) -> bool:
    """Whether to train on CUDA: as many GPUs as the worker was given (`TRAINYARD_GPUS`), or,
    without that variable, whenever CUDA is available."""
    given = env.get(GPUS_ENV, "").strip()
    if not given:
        return available
    try:
        count = int(given)
    except ValueError:
        raise GpusMissingError(f"{GPUS_ENV}={given!r} is not a number of GPUs") from None
    if count <= 0:
        return False
    if not available:
        raise GpusMissingError(
            f"the worker was given {given} GPU(s) ({GPUS_ENV}) but CUDA sees none: check the "
            "node's NVIDIA driver and device plugin (CUDA_VISIBLE_DEVICES="
            f"{env.get('CUDA_VISIBLE_DEVICES', '<unset>')!r})"
        )
    return True


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    backend: str
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Global rank 0: writes checkpoints, results and the termination message."""
        return self.rank == 0

    @property
    def is_local_main(self) -> bool:
        """Local rank 0 of a worker: prints progress and serves metrics."""
        return self.local_rank == 0


def wait_for_master(host: str, port: int, timeout_s: float) -> None:
    """Block until host:port accepts TCP connections, or raise after `timeout_s`.

    A worker pod often starts before worker 0's DNS name resolves or its store listens;
    retrying both with a deadline turns a silent hang into one clear error.
    """
    deadline = time.monotonic() + timeout_s
    last: OSError | None = None
    while True:
        try:
            with socket.create_connection((host, port), timeout=2.0):
                return
        except OSError as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise MasterUnreachableError(
                f"master {host}:{port} not reachable after {timeout_s:g}s ({last}); "
                "check that worker 0 is running (TRAINYARD_MASTER_TIMEOUT_SECONDS sets the wait)"
            )
        time.sleep(0.5)


def init_distributed() -> DistContext:
    """Initialize the default process group and choose the device."""
    env = os.environ
    cuda = use_cuda(env, torch.cuda.is_available())
    backend = "nccl" if cuda else "gloo"
    local_rank = int(env.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    timeout_s = float(env.get("TRAINYARD_MASTER_TIMEOUT_SECONDS", DEFAULT_MASTER_TIMEOUT_S))
    if "RANK" in env and "WORLD_SIZE" in env:
        rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
        if world > 1 and rank != 0:
            wait_for_master(env.get("MASTER_ADDR", "127.0.0.1"), int(env["MASTER_PORT"]), timeout_s)
        dist.init_process_group(backend, init_method="env://", timeout=timedelta(seconds=timeout_s))
    else:
        # No launcher: a group of one on an in-process store, so DDP still wraps the model.
        store = dist.HashStore()  # type: ignore[attr-defined]
        dist.init_process_group(backend, store=store, rank=0, world_size=1)
    return DistContext(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=local_rank,
        local_world_size=int(env.get("LOCAL_WORLD_SIZE", "1")),
        backend=backend,
        device=device,
    )


def shutdown() -> None:
    """Destroy the process group if one exists (safe to call on every exit path)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum a few floats over all ranks (metrics; float64 keeps counts exact)."""
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return [float(v) for v in tensor.tolist()]


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when it is true on any rank (agreeing on a stop)."""
    tensor = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())


def broadcast_object(obj: Any, device: torch.device) -> Any:
    """Rank 0's `obj` on every rank."""
    holder = [obj]
    dist.broadcast_object_list(holder, src=0, device=device)
    return holder[0]


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order, on every rank."""
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out
