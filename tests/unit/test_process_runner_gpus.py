"""GPUs on the process runner: each pod's processes see only the devices allocated to them
from their node's share, as NVIDIA's device plugin would hand them out.

No GPU is needed: the test asserts the CUDA_VISIBLE_DEVICES that each real pod process gets
(it writes its environment to its termination log and stays up, holding its devices).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from trainyard_local.devices import plan_devices
from trainyard_local.process_runner import ProcessRunner
from trainyard_local.runners import ContainerState, PodHandle, RunnerOptions

# writes what it sees, then holds its devices until stopped (or exits at once with "exit")
SHOW_AND_HOLD = (
    "import json, os, sys, time; "
    "open(os.environ['TRAINYARD_TERMINATION_LOG'], 'w').write("
    "json.dumps({'devices': os.environ.get('CUDA_VISIBLE_DEVICES')})); "
    "sys.argv[1:] == ['exit'] or time.sleep(120)"
)
NODES = plan_devices([("t-cpu-0", 0), ("t-gpu-0", 8), ("t-gpu-1", 8)])


_started: list[PodHandle] = []


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[ProcessRunner]:
    options = RunnerOptions(
        state_dir=tmp_path, kubeconfig=tmp_path / "kubeconfig", cluster="t", gpu_devices=NODES
    )
    made = ProcessRunner(options)
    yield made
    while _started:  # no process outlives its test
        made.stop(_started.pop())


def start(
    runner: ProcessRunner,
    tmp_path: Path,
    name: str,
    node: str,
    gpus: int | None,
    *,
    env: list[dict[str, Any]] | None = None,
    hold: bool = True,
) -> PodHandle:
    limits: dict[str, str] = {"cpu": "1"}
    if gpus is not None:
        limits["nvidia.com/gpu"] = str(gpus)
    pod = {
        "metadata": {"name": name, "namespace": "team-a", "uid": f"uid-{name}", "labels": {}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "trainer",
                    "command": ["python", "-c", SHOW_AND_HOLD, *([] if hold else ["exit"])],
                    "env": env or [],
                    "resources": {"limits": limits, "requests": limits},
                }
            ],
        },
    }
    handle = PodHandle(
        pod=pod,
        node_name=node,
        pod_ip="127.2.0.9",
        host_ip="127.0.0.1",
        work_dir=tmp_path / "pods" / name,
        accepted_at=dt.datetime.now(dt.UTC),
    )
    _started.append(handle)
    runner.start(handle)
    return handle


def devices_seen(pod: PodHandle, timeout: float = 30) -> str | None:
    """What CUDA_VISIBLE_DEVICES the pod's process got (None: unset)."""
    log = pod.work_dir / "trainer.termination-log"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text() if log.exists() else ""
        if text:
            seen: str | None = json.loads(text)["devices"]
            return seen
        time.sleep(0.05)
    raise AssertionError(f"{pod.name} wrote nothing")


def state(runner: ProcessRunner, pod: PodHandle) -> ContainerState:
    return runner.poll(pod).containers["trainer"]


def wait_terminated(runner: ProcessRunner, pod: PodHandle, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while state(runner, pod).state != "terminated":
        assert time.monotonic() < deadline, state(runner, pod)
        time.sleep(0.05)


def test_gpu_nodes_own_consecutive_device_ranges() -> None:
    ranges = plan_devices([("a", 0), ("b", 2), ("c", 3)])
    assert ranges == {"b": (0, 1), "c": (2, 3, 4)}


def test_pods_on_one_node_never_share_a_gpu(runner: ProcessRunner, tmp_path: Path) -> None:
    first = start(runner, tmp_path, "w0", "t-gpu-0", 4)
    second = start(runner, tmp_path, "w1", "t-gpu-0", 4)
    other_node = start(runner, tmp_path, "w2", "t-gpu-1", 2)
    assert devices_seen(first) == "0,1,2,3"
    assert devices_seen(second) == "4,5,6,7"
    assert devices_seen(other_node) == "8,9"
    # the node's 8 are held: a ninth GPU is refused rather than shared
    refused = start(runner, tmp_path, "w3", "t-gpu-0", 1)
    waiting = state(runner, refused)
    assert (waiting.state, waiting.reason) == ("waiting", "CreateContainerConfigError")
    assert "nvidia.com/gpu: 1 asked for, 0 of node t-gpu-0's 8 free" in waiting.message


def test_a_pod_without_gpus_sees_none_even_if_it_sets_its_own(
    runner: ProcessRunner, tmp_path: Path
) -> None:
    assert devices_seen(start(runner, tmp_path, "cpu", "t-cpu-0", None)) == ""
    zero = start(runner, tmp_path, "zero", "t-gpu-0", 0)
    assert devices_seen(zero) == ""
    sneaky = start(
        runner,
        tmp_path,
        "sneaky",
        "t-gpu-0",
        1,
        env=[{"name": "CUDA_VISIBLE_DEVICES", "value": "0,1,2,3,4,5,6,7"}],
    )
    assert devices_seen(sneaky) == "0"


def test_devices_are_free_again_when_a_pod_ends_or_is_stopped(
    runner: ProcessRunner, tmp_path: Path
) -> None:
    done = start(runner, tmp_path, "done", "t-gpu-0", 8, hold=False)
    assert devices_seen(done) == "0,1,2,3,4,5,6,7"
    wait_terminated(runner, done)
    held = start(runner, tmp_path, "held", "t-gpu-0", 6)
    assert devices_seen(held) == "0,1,2,3,4,5"
    runner.stop(held)
    again = start(runner, tmp_path, "again", "t-gpu-0", 8)
    assert devices_seen(again) == "0,1,2,3,4,5,6,7"
