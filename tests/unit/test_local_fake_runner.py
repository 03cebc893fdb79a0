"""The fake runner's annotation rules and the agent's status shape, without a cluster
(the same rules against a real API server: tests/integration/test_cluster_fake_agent.py)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from trainyard_local import agent, fake_runner, nodes
from trainyard_local.runners import ContainerState, Observation, PodHandle, RunnerOptions

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(fake_runner, "_now", lambda: clock.now)
    return clock


@pytest.fixture
def runner(tmp_path: Path) -> fake_runner.FakeRunner:
    return fake_runner.FakeRunner(RunnerOptions(tmp_path, tmp_path / "kubeconfig", "t"))


def handle(annotations: dict[str, str] | None = None, image: str = "example.com/a:1") -> PodHandle:
    pod: dict[str, Any] = {
        "metadata": {"name": "p", "namespace": "n", "uid": "u1", "annotations": annotations or {}},
        "spec": {
            "containers": [{"name": "main", "image": image}, {"name": "side", "image": image}]
        },
    }
    return PodHandle(pod, "t-cpu-0", "127.1.0.1", "127.0.0.1", Path("/nonexistent"), T0)


def states(runner: fake_runner.FakeRunner, pod: PodHandle) -> list[ContainerState]:
    return list(runner.poll(pod).containers.values())


def test_runs_until_run_seconds_then_exits_with_the_annotated_code(
    runner: fake_runner.FakeRunner, clock: Clock
) -> None:
    pod = handle(
        {
            fake_runner.RUN_SECONDS: "10",
            fake_runner.EXIT_CODE: "1",
            fake_runner.TERMINATION_MESSAGE: "error: x",
        }
    )
    runner.start(pod)
    assert {s.state for s in states(runner, pod)} == {"running"}
    clock.advance(9.9)
    assert {s.state for s in states(runner, pod)} == {"running"}
    clock.advance(0.2)
    done = states(runner, pod)
    assert [(s.state, s.exit_code, s.reason, s.message) for s in done] == [
        ("terminated", 1, "Error", "error: x")
    ] * 2
    # terminated stays terminated, whatever happens to the annotations afterwards
    pod.pod["metadata"]["annotations"] = {}
    assert states(runner, pod) == done


def test_exit_code_on_a_running_pod_terminates_it_now(
    runner: fake_runner.FakeRunner, clock: Clock
) -> None:
    pod = handle()
    runner.start(pod)
    clock.advance(100)
    assert {s.state for s in states(runner, pod)} == {"running"}
    pod.pod["metadata"]["annotations"] = {fake_runner.EXIT_CODE: "137"}
    assert {(s.state, s.exit_code) for s in states(runner, pod)} == {("terminated", 137)}


def test_waiting_reason_holds_the_pod_and_run_seconds_count_from_running(
    runner: fake_runner.FakeRunner, clock: Clock
) -> None:
    pod = handle({fake_runner.WAITING_REASON: "ErrImagePull", fake_runner.RUN_SECONDS: "5"})
    runner.start(pod)
    clock.advance(60)
    assert {(s.state, s.reason) for s in states(runner, pod)} == {("waiting", "ErrImagePull")}
    del pod.pod["metadata"]["annotations"][fake_runner.WAITING_REASON]
    assert {s.state for s in states(runner, pod)} == {"running"}
    clock.advance(5)
    assert {(s.state, s.exit_code) for s in states(runner, pod)} == {("terminated", 0)}


def test_invalid_registry_pulls_fail_then_back_off(
    runner: fake_runner.FakeRunner, clock: Clock
) -> None:
    pod = handle(image="registry.invalid/missing:1")
    runner.start(pod)
    assert {s.reason for s in states(runner, pod)} == {"ErrImagePull"}
    clock.advance(fake_runner.IMAGE_PULL_ERROR_SECONDS)
    assert {s.reason for s in states(runner, pod)} == {"ImagePullBackOff"}


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        ({fake_runner.EXIT_CODE: "abc"}, "fake.trainyard.dev/exit-code: 'abc' is not an integer"),
        (
            {fake_runner.EXIT_CODE: "300"},
            "fake.trainyard.dev/exit-code: '300' must be within 0..255",
        ),
        ({fake_runner.RUN_SECONDS: "-1"}, "fake.trainyard.dev/run-seconds: '-1' must be >= 0"),
    ],
)
def test_malformed_annotations_name_themselves(
    runner: fake_runner.FakeRunner, clock: Clock, annotations: dict[str, str], message: str
) -> None:
    pod = handle(annotations)
    runner.start(pod)
    assert {(s.reason, s.message) for s in states(runner, pod)} == {
        ("CreateContainerConfigError", message)
    }


@pytest.mark.parametrize(
    ("image", "host"),
    [
        ("registry.invalid/missing:1", "registry.invalid"),
        ("localhost:5000/x", "localhost"),
        ("busybox", ""),
        ("library/busybox:1", ""),
        ("ghcr.io/org/img@sha256:abc", "ghcr.io"),
    ],
)
def test_registry_host(image: str, host: str) -> None:
    assert fake_runner.registry_host(image) == host


def test_status_follows_the_containers() -> None:
    record = agent.PodRecord(handle())
    running = ContainerState("running", started_at=T0)
    failed = ContainerState(
        "terminated", reason="Error", exit_code=3, started_at=T0, finished_at=T0
    )
    status = agent.build_status(record, Observation({"main": running, "side": running}), "fake")
    assert status["phase"] == "Running"
    assert status["podIP"] == "127.1.0.1" and status["podIPs"] == [{"ip": "127.1.0.1"}]
    ready = {c["type"]: c["status"] for c in status["conditions"]}
    assert ready["Ready"] == ready["ContainersReady"] == "True"
    # one container still running keeps the pod Running; both ended with one failure: Failed
    obs = Observation({"main": failed, "side": running})
    assert agent.build_status(record, obs, "fake")["phase"] == "Running"
    done = ContainerState("terminated", exit_code=0, started_at=T0, finished_at=T0)
    final = agent.build_status(record, Observation({"main": failed, "side": done}), "fake")
    assert final["phase"] == "Failed"
    assert final["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 3
    assert {c["type"]: c.get("reason") for c in final["conditions"]}["Ready"] == "PodCompleted"
    # a container the runner does not mention waits, so the pod is Pending
    assert agent.build_status(record, Observation({}), "fake")["phase"] == "Pending"


def test_ip_pool_hands_out_distinct_loopback_addresses() -> None:
    pool = agent.IpPool("127.1")
    first, second = pool.allocate(), pool.allocate()
    assert (first, second) == ("127.1.0.1", "127.1.0.2")
    assert not pool.claim("127.1.0.1")  # taken
    assert not pool.claim("10.0.0.1")  # not ours
    pool.release(first)
    # a released address is not handed out again at once (its process may still be stopping)
    assert pool.allocate() == "127.1.0.3"
    ips = {pool.allocate() for _ in range(300)}
    assert len(ips) == 300 and "127.1.1.1" in ips and "127.1.0.255" not in ips


def test_node_plan_rejects_bad_counts_naming_the_option() -> None:
    specs = nodes.plan_nodes("c", 1, 2, 4)
    assert [s.name for s in specs] == ["c-cpu-0", "c-gpu-0", "c-gpu-1"]
    assert specs[1].capacity["nvidia.com/gpu"] == "4"
    with pytest.raises(ValueError, match="--gpu-nodes: must be >= 0"):
        nodes.plan_nodes("c", 1, -1, 8)
    with pytest.raises(ValueError, match="--gpus-per-node"):
        nodes.plan_nodes("c", 0, 1, 0)
    with pytest.raises(ValueError, match="--name 'C_1'"):
        nodes.check_cluster_name("C_1")


def test_a_state_without_times_gives_a_stable_status() -> None:
    # a runner that reports no start time must not make the agent patch on every tick
    record = agent.PodRecord(handle())
    obs = Observation({"main": ContainerState("running"), "side": ContainerState("running")})
    first = agent.build_status(record, obs, "process")
    assert agent.build_status(record, obs, "process") == first
