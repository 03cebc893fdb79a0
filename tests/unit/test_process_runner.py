"""The process runner maps a pod onto a real local process (no API server needed).

Each test builds the pod dict the agent would hand over and runs a real `python -c` child:
what a user of the local cluster notices is the environment the program sees, the folders its
volumes land in, the termination message and exit code reported, and that deleting a pod
stops its whole process tree.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from trainyard_local.process_runner import ProcessRunner
from trainyard_local.runners import ContainerState, PodHandle, RunnerOptions


def make_pod(
    name: str,
    command: list[str],
    *,
    env: list[dict[str, Any]] | None = None,
    volumes: list[dict[str, Any]] | None = None,
    mounts: list[dict[str, Any]] | None = None,
    policy: str = "File",
    grace: int = 30,
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "team-a",
            "uid": f"uid-{name}",
            "labels": {"trainyard.dev/restart": "0"},
        },
        "spec": {
            "terminationGracePeriodSeconds": grace,
            "volumes": volumes or [],
            "containers": [
                {
                    "name": "trainer",
                    "image": "trainyard-trainer:0.1.0",
                    "command": command,
                    "env": env or [],
                    "volumeMounts": mounts or [],
                    "resources": {"limits": {"cpu": "1500m"}},
                    "terminationMessagePolicy": policy,
                }
            ],
        },
    }


def handle(tmp_path: Path, pod: dict[str, Any], ip: str = "127.2.0.9") -> PodHandle:
    meta = pod["metadata"]
    return PodHandle(
        pod=pod,
        node_name="demo-cpu-0",
        pod_ip=ip,
        host_ip="127.0.0.1",
        work_dir=tmp_path / "pods" / f"{meta['namespace']}_{meta['name']}_{meta['uid']}",
        accepted_at=dt.datetime.now(dt.UTC),
    )


def wait_terminated(runner: ProcessRunner, pod: PodHandle, timeout: float = 30) -> ContainerState:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = runner.poll(pod).containers["trainer"]
        if state.state == "terminated":
            return state
        time.sleep(0.05)
    raise AssertionError(f"container still {runner.poll(pod).containers['trainer']}")


@pytest.fixture
def runner(tmp_path: Path) -> ProcessRunner:
    return ProcessRunner(
        RunnerOptions(state_dir=tmp_path, kubeconfig=tmp_path / "kubeconfig", cluster="t")
    )


DUMP_ENV = (
    "import json, os, sys; "
    "keys = sys.argv[1:]; "
    "open(os.environ['TRAINYARD_TERMINATION_LOG'], 'w').write("
    "json.dumps({k: os.environ.get(k) for k in keys}))"
)


def test_env_is_mapped_for_torchrun_and_the_trainer(runner: ProcessRunner, tmp_path: Path) -> None:
    keys = [
        "MASTER_ADDR",
        "PET_MASTER_ADDR",
        "MASTER_PORT",
        "PET_MASTER_PORT",
        "TRAINYARD_OUTPUT_DIR",
        "TRAINYARD_METRICS_HOST",
        "POD_NAME",
        "OMP_NUM_THREADS",
        "CKPT",
        "PATH",
    ]
    master = "job-worker-0.job.team-a.svc"
    pod = handle(
        tmp_path,
        make_pod(
            "job-worker-1",
            ["python", "-c", DUMP_ENV, *keys],
            env=[
                {"name": "MASTER_ADDR", "value": master},
                {"name": "PET_MASTER_ADDR", "value": master},
                {"name": "MASTER_PORT", "value": "29500"},
                {"name": "PET_MASTER_PORT", "value": "29500"},
                {"name": "TRAINYARD_OUTPUT_DIR", "value": "/output"},
                {"name": "CKPT", "value": "$(TRAINYARD_OUTPUT_DIR)/ckpt"},
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            ],
            volumes=[{"name": "output", "persistentVolumeClaim": {"claimName": "ckpts"}}],
            mounts=[{"name": "output", "mountPath": "/output"}],
        ),
    )
    runner.start(pod)
    state = wait_terminated(runner, pod)
    assert state.exit_code == 0, state
    seen = json.loads(state.message)
    output = tmp_path / "volumes" / "pvc" / "team-a" / "ckpts"
    assert seen["MASTER_ADDR"] == seen["PET_MASTER_ADDR"] == "127.0.0.1"
    assert seen["MASTER_PORT"] == seen["PET_MASTER_PORT"] != "29500"
    assert seen["TRAINYARD_OUTPUT_DIR"] == str(output)
    assert seen["CKPT"] == f"{output}/ckpt"
    assert seen["TRAINYARD_METRICS_HOST"] == "127.2.0.9"
    assert seen["POD_NAME"] == "job-worker-1"
    assert seen["OMP_NUM_THREADS"] == "2"  # 1500m rounded up
    assert seen["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    assert output.is_dir()


def test_workers_of_one_job_share_a_port_and_other_jobs_get_their_own(
    runner: ProcessRunner, tmp_path: Path
) -> None:
    def port_of(pod_name: str, job: str) -> str:
        pod = handle(
            tmp_path,
            make_pod(
                pod_name,
                ["python", "-c", DUMP_ENV, "MASTER_PORT"],
                env=[
                    {"name": "MASTER_ADDR", "value": f"{job}-worker-0.{job}.team-a.svc"},
                    {"name": "MASTER_PORT", "value": "29500"},
                ],
            ),
        )
        runner.start(pod)
        return str(json.loads(wait_terminated(runner, pod).message)["MASTER_PORT"])

    first = port_of("a-worker-0", "a")
    assert port_of("a-worker-1", "a") == first
    assert port_of("b-worker-0", "b") != first


def test_failed_exit_falls_back_to_the_log_tail(runner: ProcessRunner, tmp_path: Path) -> None:
    pod = handle(
        tmp_path,
        make_pod(
            "crash",
            ["python", "-c", "print('loading'); raise SystemExit('error: trainer.epochs')"],
            policy="FallbackToLogsOnError",
        ),
    )
    runner.start(pod)
    state = wait_terminated(runner, pod)
    assert state.exit_code == 1
    assert state.reason == "Error"
    assert "error: trainer.epochs" in state.message
    assert "loading" in (pod.work_dir / "trainer.log").read_text()


def wait_for_text(path: Path, timeout: float = 60) -> str:
    """The file's content once it exists and is not empty (a bound only against a hang)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            text = path.read_text()
        except FileNotFoundError:
            text = ""
        if text.strip():
            return text
        assert time.monotonic() < deadline, f"{path} stayed empty for {timeout:.0f} s"
        time.sleep(0.05)


def test_deleting_a_pod_stops_its_process_tree(runner: ProcessRunner, tmp_path: Path) -> None:
    # the child ignores SIGTERM, so only the SIGKILL after the grace period ends it
    script = (
        "import signal, subprocess, sys, time; "
        "child = subprocess.Popen([sys.executable, '-c', "
        "'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)']); "
        "print(child.pid, flush=True); time.sleep(600)"
    )
    pod = handle(
        tmp_path,
        make_pod(
            "sleeper",
            ["python", "-c", script],
            volumes=[{"name": "scratch", "emptyDir": {}}],
            mounts=[{"name": "scratch", "mountPath": "/scratch"}],
            grace=1,
        ),
    )
    runner.start(pod)
    log_path = pod.work_dir / "trainer.log"
    try:
        # the log pump creates the file when the first line arrives, the runner the pid file
        # when the process is up: wait for both, however busy the machine is
        child = int(wait_for_text(log_path).split()[0])
        leader = int(wait_for_text(pod.work_dir / "trainer.pid"))
        assert runner.poll(pod).containers["trainer"].state == "running"
    finally:
        runner.stop(pod)  # never leave the tree running, whatever failed above
    scratch = pod.work_dir / "volumes" / "scratch"
    # the reaper thread removes the emptyDir just after the last process dies: wait for both
    deadline = time.monotonic() + 30
    while (alive(child) or alive(leader) or scratch.exists()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child)
    assert not alive(leader)
    assert not scratch.exists()
    assert log_path.exists()  # logs outlive the pod


def test_unsupported_volume_is_reported_naming_it(runner: ProcessRunner, tmp_path: Path) -> None:
    pod = handle(
        tmp_path,
        make_pod(
            "hosty",
            ["python", "-c", "pass"],
            volumes=[{"name": "creds", "hostPath": {"path": "/etc"}}],
            mounts=[{"name": "creds", "mountPath": "/creds"}],
        ),
    )
    runner.start(pod)
    state = runner.poll(pod).containers["trainer"]
    assert state.state == "waiting"
    assert state.reason == "CreateContainerConfigError"
    assert "volume creds" in state.message
    assert "hostPath" in state.message


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")
