"""`python -m trainyard_trainer`: the worker-process entry point (run under torchrun).

The order is the contract with the operator (docs/contracts.md): read `TRAINYARD_CONFIG`
and load the dataset first, so a bad config or an empty dataPath exits with code 2 and one
line naming the field before any process group or training exists; then form the process
group (bounded wait for the master), run the job (`runner.run_job`), and exit 0. SIGTERM
checkpoints and exits 143; any other failure writes `error: <cause>` as the termination
message and exits 1. Each worker also leaves its exit code for `launch.py`, which turns
torchrun's catch-all 1 back into these codes.
"""

from __future__ import annotations

import os
import sys
import traceback

# Threads per process before torch starts its pools: several ranks share a node's cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch

from trainyard_trainer.config import ConfigError, load_config_json
from trainyard_trainer.datasets import load_dataset
from trainyard_trainer.distributed import (
    GpusMissingError,
    MasterUnreachableError,
    init_distributed,
    shutdown,
)
from trainyard_trainer.launch import record_exit
from trainyard_trainer.logs import emit
from trainyard_trainer.results import write_error
from trainyard_trainer.runner import run_job
from trainyard_trainer.train import PreemptedError, StopSignal

EXIT_CONFIG = 2
EXIT_SIGTERM = 143


# gloo reports a dead peer as a plain RuntimeError from inside the collective (often via
# DDP's comm-hook future), so the transport's own wording is what identifies it.
_PEER_LOSS_MARKS = ("Connection reset by peer", "Connection closed by peer", "Broken pipe")


def _is_peer_loss(exc: BaseException) -> bool:
    if isinstance(exc, torch.distributed.DistNetworkError):
        return True
    return any(mark in str(exc) for mark in _PEER_LOSS_MARKS)


def _is_global_main() -> bool:
    return os.environ.get("RANK", "0") == "0"


def main() -> int:
    stop = StopSignal()
    stop.install()
    outcome = _Outcome()
    code = _run(stop, outcome)
    record_exit(code, signalled=stop.requested, peer_lost=outcome.peer_lost)
    return code


class _Outcome:
    """What `launch.resolve` needs to know besides the exit code."""

    peer_lost = False


def _run(stop: StopSignal, outcome: _Outcome) -> int:
    threads = os.environ.get("OMP_NUM_THREADS", "")
    torch.set_num_threads(int(threads) if threads.isdigit() and int(threads) > 0 else 1)
    try:
        cfg = load_config_json(os.environ.get("TRAINYARD_CONFIG"))
        bundle = load_dataset(cfg.trainer.dataset, cfg.trainer.data_path, cfg.trainer.model)
    except ConfigError as exc:
        emit(f"trainyard-trainer: config error: {exc}", level="error", stream=sys.stderr)
        if _is_global_main():
            write_error(str(exc))
        return EXIT_CONFIG
    try:
        ctx = init_distributed()
    except (MasterUnreachableError, GpusMissingError) as exc:
        emit(f"trainyard-trainer: {exc}", level="error", stream=sys.stderr)
        write_error(str(exc))
        return 1
    try:
        run_job(cfg, bundle, ctx, stop)
    except PreemptedError as exc:
        emit(f"[trainyard] stopping on {exc}; exit {EXIT_SIGTERM}")
        return EXIT_SIGTERM
    except Exception as exc:
        if _is_peer_loss(exc):
            # Another rank died (its process or pod was killed); launch.py decides.
            outcome.peer_lost = True
            emit(f"trainyard-trainer: lost a peer: {exc}", level="error", stream=sys.stderr)
            if ctx.is_main:
                write_error(f"lost a peer: {exc}")
            return 1
        emit(traceback.format_exc(), level="error", stream=sys.stderr)
        if ctx.is_main:
            write_error(f"{type(exc).__name__}: {exc}")
        return 1
    finally:
        shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
