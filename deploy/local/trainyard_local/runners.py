"""What a node agent's runner is: the small protocol between `agent.py` and the code that
"runs" a pod, plus the registry that maps `--agent`/`--runner` names to implementations.

The agent owns everything Kubernetes-facing (nodes, leases, watches, pod IPs, status
patches, deletion); a runner only starts, observes and stops pods. `fake_runner.py`
follows annotation rules (docs/contracts.md); `process_runner.py` runs the container command
as a local process. Adding a runner = adding a module and one line in RUNNERS.
"""

from __future__ import annotations

import datetime as dt
import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol


@dataclass(frozen=True)
class ContainerState:
    """One container as a kubelet would report it (the three shapes of `state`)."""

    state: Literal["waiting", "running", "terminated"]
    reason: str = ""
    message: str = ""
    exit_code: int | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None

    def __post_init__(self) -> None:
        if self.state == "terminated" and self.exit_code is None:
            raise ValueError("ContainerState: a terminated container needs exit_code")


@dataclass(frozen=True)
class Observation:
    """What a runner sees for one pod: a state per container name.

    Containers missing from the mapping are reported as waiting (ContainerCreating).
    """

    containers: dict[str, ContainerState] = field(default_factory=dict)


@dataclass
class PodHandle:
    """The agent's view of one pod it runs, handed to the runner on every call.

    `pod` is the latest object from the watch (camelCase JSON, as the API server sends it),
    so annotation changes on a live pod are visible at the next `poll`.
    """

    pod: dict[str, Any]
    node_name: str
    pod_ip: str
    host_ip: str
    #: a directory the runner may use for this pod (under the agent's state dir)
    work_dir: Path
    #: when the agent first saw the pod bound to its node (UTC)
    accepted_at: dt.datetime

    @property
    def uid(self) -> str:
        return str(self.pod["metadata"]["uid"])

    @property
    def namespace(self) -> str:
        return str(self.pod["metadata"]["namespace"])

    @property
    def name(self) -> str:
        return str(self.pod["metadata"]["name"])

    @property
    def annotations(self) -> dict[str, str]:
        return dict(self.pod["metadata"].get("annotations") or {})

    @property
    def containers(self) -> list[dict[str, Any]]:
        return list(self.pod["spec"].get("containers") or [])


class Runner(Protocol):
    """Starts, observes and stops pods on one agent's nodes. Called from one thread only."""

    def start(self, pod: PodHandle) -> None:
        """The pod was bound to one of our nodes (or found there when the agent started)."""

    def poll(self, pod: PodHandle) -> Observation:
        """Current container states; called often, so keep it in memory (no API calls)."""

    def stop(self, pod: PodHandle) -> None:
        """The pod is being deleted: stop whatever runs for it. Must be idempotent."""


@dataclass(frozen=True)
class RunnerOptions:
    """What every runner may need from the agent."""

    state_dir: Path
    kubeconfig: Path
    cluster: str
    gpu_devices: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    """Host GPU device indexes of each GPU node (`devices.plan_devices`)."""


@dataclass(frozen=True)
class RunnerEntry:
    """A registered runner: `target` is "module:Class", `ip_prefix` the pod IP range."""

    target: str
    ip_prefix: str
    description: str


#: Pod IPs are loopback so that nothing ever dials a private range: 127.1.x.y for fake
#: nodes, 127.2.x.y for process nodes (docs/contracts.md).
RUNNERS: dict[str, RunnerEntry] = {
    "fake": RunnerEntry(
        "trainyard_local.fake_runner:FakeRunner", "127.1", "annotation-driven fake pods"
    ),
    "process": RunnerEntry(
        "trainyard_local.process_runner:ProcessRunner",
        "127.2",
        "runs each container's command as a local process",
    ),
}


def check_runner_name(name: str) -> str:
    if name not in RUNNERS:
        raise ValueError(f"--agent {name!r}: choose one of {', '.join(sorted(RUNNERS))}")
    return name


def load_runner(name: str, options: RunnerOptions) -> Runner:
    """Import and construct the runner registered under `name`."""
    entry = RUNNERS[check_runner_name(name)]
    module_name, _, class_name = entry.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name == module_name:
            raise ValueError(
                f"--agent {name!r}: {module_name} is not implemented yet in this checkout"
            ) from error
        raise
    runner: Runner = getattr(module, class_name)(options)
    return runner
