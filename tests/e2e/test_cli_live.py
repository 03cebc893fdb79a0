"""`kubectl trainyard` on a real DDP run (e2e stack: process agent, real torchrun workers, the
operator under the chart's RBAC): `list` shows the live stage, progress, ETA and loss;
`restart` restarts the gang, which resumes from the checkpoint on the job's volume; `watch`
and `logs -f` follow the whole run across the restart; `logs` merges both workers in time
order; the trainer's TensorBoard event files on the volume hold one point per epoch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from e2e.stack import E2EStack
from e2e.test_demo_flow import bind_local_volume, create_job, example, finished, wait_for
from trainyard_local.demo import get_job

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PLUGIN = Path(sys.executable).parent / "kubectl-trainyard"
NAME = "cli-live"
EPOCHS = 24


def plugin(stack: E2EStack, *args: str) -> list[str]:
    return [str(PLUGIN), *args, "-n", stack.job_namespace, f"--kubeconfig={stack.kubeconfig}"]


def run(stack: E2EStack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        plugin(stack, *args), capture_output=True, text=True, timeout=120, check=False
    )


def status(stack: E2EStack) -> dict[str, Any]:
    return (get_job(stack.kubeconfig, stack.job_namespace, NAME) or {}).get("status") or {}


def test_list_restart_watch_and_logs_on_a_real_run(e2e_stack: E2EStack) -> None:
    stack = e2e_stack
    claim = f"{NAME}-data"
    volume = bind_local_volume(stack, claim)
    job = example(epochs=EPOCHS)
    job["metadata"]["name"] = NAME
    # small batches: epochs of about a second, so the run lasts long enough to be looked at
    job["spec"]["trainer"]["batchSize"] = 8
    job["spec"]["output"] = {"volumeClaimName": claim}
    create_job(stack, job)
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    followers = {
        name: subprocess.Popen(
            plugin(stack, *args), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for name, args in {
            "logs": ("logs", NAME, "-f", "--timestamps"),
            "watch": ("watch", NAME, "--timeout", "900"),
        }.items()
    }
    try:
        # A few epochs in: `list` shows the live progress the operator reads from worker 0.
        def training() -> dict[str, Any] | None:
            progress = status(stack).get("progress") or {}
            live = progress.get("stage") == "train" and progress.get("epoch", 0) >= 3
            return progress if live and progress.get("loss") is not None else None

        wait_for("3 epochs of training", training, 600, stack)
        listed = run(stack, "list")
        assert listed.returncode == 0, listed.stderr
        row = next(line.split() for line in listed.stdout.splitlines() if line.startswith(NAME))
        name, phase, workers, stage, epochs, percent, eta, loss = row[:8]
        assert (name, phase, workers, stage) == (NAME, "Running", "2/2", "train"), row
        done, total = (int(n) for n in epochs.split("/"))
        assert 3 <= done < total == EPOCHS, row
        assert percent.endswith("%") and 0 < int(percent[:-1]) < 100, row
        assert eta[-1] in "smh" and eta != "-", row
        assert 0 < float(loss) < 5, row

        restarted = run(stack, "restart", NAME)
        assert restarted.returncode == 0, restarted.stderr
        wait_for("the restarted gang", lambda: status(stack).get("restarts") == 1, 300, stack)
        final = wait_for(f"{NAME} to finish", lambda: finished(stack, NAME), 900, stack)
        outputs = {name: proc.communicate(timeout=300) for name, proc in followers.items()}
    finally:
        for proc in followers.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert final["status"]["phase"] == "Succeeded", final["status"]
    assert final["status"]["restarts"] == 1 and final["status"]["disruptions"] == 1

    # watch: one line per change (not a terminal), through the restart, then the results.
    out, err = outputs["watch"]
    assert followers["watch"].returncode == 0, out + err
    phases = [line.split()[1] for line in out.splitlines() if line.startswith(f"{NAME} ")]
    assert phases[0] in ("Pending", "Running") and phases[-1] == "Succeeded", out
    # (the Restarting phase may pass between two reads: the agent stops pods at once)
    assert "restarts 0 stage train" in out and "restarts 1 stage train" in out, out
    assert "stage prune 1/2" in out or "stage prune 2/2" in out, out
    table = out.split("Results (status.results)", 1)[1]
    for stage in ("train", "prune", "quantize"):
        assert stage in table, out

    # logs -f: both workers of both attempts, prefixed by pod, the restart announced, and the
    # second attempt resuming from the checkpoint the first left on the volume.
    followed, err = outputs["logs"]
    assert followers["logs"].returncode == 0, err
    worker0, worker1 = f"[{NAME}-worker-0]", f"[{NAME}-worker-1]"
    assert f"[{NAME}] --- attempt 1 (gang restart 1) ---" in followed
    first, second = followed.split(f"[{NAME}] --- attempt 1")
    assert worker0 in first and worker1 in first and worker0 in second and worker1 in second
    assert f"{worker0} [checkpoint] resumed from ckpt-e" in second
    assert f"{worker0} [quantize] accuracy" in second and f"{worker1} [rank 1] parameters" in second

    # logs: the pods there now (attempt 1), merged by arrival time, not one after the other.
    merged = run(stack, "logs", NAME, "--timestamps")
    assert merged.returncode == 0, merged.stderr
    lines = merged.stdout.splitlines()
    stamps = [line.split(" ", 1)[0] for line in lines]
    assert stamps == sorted(stamps) and len(lines) > 20
    pods = [line.split()[1] for line in lines]
    assert pods.index(worker1) < len(pods) - 1 - pods[::-1].index(worker0)  # interleaved
    assert set(lines) <= set(followed.splitlines())  # -f showed every line

    # TensorBoard on the claim's folder: one point per epoch over both attempts.
    events = EventAccumulator(str(volume / "tensorboard" / NAME), size_guidance={"scalars": 0})
    events.Reload()
    steps = [e.step for e in events.Scalars("train/loss")]
    assert steps == list(range(1, EPOCHS + 1))
    assert [e.step for e in events.Scalars("prune/accuracy")] == [EPOCHS + 1, EPOCHS + 2]
