"""The fake runner: pods that "run" by annotation rules, for operator tests (test tooling).

Nothing executes. A pod bound to a fake node is Running at once and then follows the
annotations below (docs/contracts.md is the contract; `agent.py` turns what `poll` returns
into pod status):

    fake.trainyard.dev/run-seconds          terminate after this many seconds Running
    fake.trainyard.dev/exit-code            exit code on termination (default 0); on a Running
                                            pod without run-seconds: terminate now
    fake.trainyard.dev/termination-message  the terminated container's message
    fake.trainyard.dev/waiting-reason       stay Pending, containers waiting with this reason

An image whose registry host ends in `.invalid` waits with ErrImagePull, then
ImagePullBackOff. A malformed annotation value leaves the containers waiting with
CreateContainerConfigError and a message naming the annotation. A terminated pod stays
terminated whatever its annotations do afterwards (restartPolicy is not honoured: no
container is ever restarted, so the pod ends Succeeded or Failed).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from trainyard_local.runners import ContainerState, Observation, PodHandle, RunnerOptions

PREFIX = "fake.trainyard.dev/"
RUN_SECONDS = PREFIX + "run-seconds"
EXIT_CODE = PREFIX + "exit-code"
TERMINATION_MESSAGE = PREFIX + "termination-message"
WAITING_REASON = PREFIX + "waiting-reason"

#: How long an unpullable image shows ErrImagePull before ImagePullBackOff, as a kubelet
#: alternates them on its first retries.
IMAGE_PULL_ERROR_SECONDS = 2.0


def registry_host(image: str) -> str:
    """The registry part of an image reference ('' for Docker Hub short names)."""
    first, sep, _rest = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first.split(":", 1)[0]
    return ""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class _Fake:
    running_since: dt.datetime | None = None
    final: Observation | None = None


class _BadAnnotationError(ValueError):
    pass


def _number(annotations: dict[str, str], key: str) -> float | None:
    raw = annotations.get(key)
    if raw is None or raw.strip() == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise _BadAnnotationError(f"{key}: {raw!r} is not a number") from None
    if value < 0:
        raise _BadAnnotationError(f"{key}: {raw!r} must be >= 0")
    return value


def _exit_code(annotations: dict[str, str]) -> int | None:
    raw = annotations.get(EXIT_CODE)
    if raw is None or raw.strip() == "":
        return None
    try:
        code = int(raw)
    except ValueError:
        raise _BadAnnotationError(f"{EXIT_CODE}: {raw!r} is not an integer") from None
    if not 0 <= code <= 255:
        raise _BadAnnotationError(f"{EXIT_CODE}: {raw!r} must be within 0..255")
    return code


class FakeRunner:
    """Implements the `Runner` protocol from annotations and elapsed time alone."""

    def __init__(self, options: RunnerOptions) -> None:
        self.options = options
        self._pods: dict[str, _Fake] = {}

    def start(self, pod: PodHandle) -> None:
        self._pods.setdefault(pod.uid, _Fake())

    def stop(self, pod: PodHandle) -> None:
        self._pods.pop(pod.uid, None)

    def poll(self, pod: PodHandle) -> Observation:
        fake = self._pods.setdefault(pod.uid, _Fake())
        if fake.final is not None:
            return fake.final
        now = _now()
        names = [c["name"] for c in pod.containers]
        annotations = pod.annotations

        def waiting(reason: str, message: str) -> Observation:
            return Observation({n: ContainerState("waiting", reason, message) for n in names})

        try:
            run_seconds = _number(annotations, RUN_SECONDS)
            exit_code = _exit_code(annotations)
        except _BadAnnotationError as error:
            return waiting("CreateContainerConfigError", str(error))

        pulling = self._image_errors(pod, now)
        if pulling:
            return Observation(
                {n: pulling.get(n, ContainerState("waiting", "ContainerCreating")) for n in names}
            )
        reason = annotations.get(WAITING_REASON, "").strip()
        if reason:
            return waiting(reason, f"held by the annotation {WAITING_REASON} (fake runner)")

        if fake.running_since is None:
            fake.running_since = now
        started = fake.running_since
        elapsed = (now - started).total_seconds()
        finished = (run_seconds is not None and elapsed >= run_seconds) or (
            run_seconds is None and exit_code is not None
        )
        if not finished:
            return Observation({n: ContainerState("running", started_at=started) for n in names})
        code = exit_code or 0
        fake.final = Observation(
            {
                n: ContainerState(
                    "terminated",
                    reason="Completed" if code == 0 else "Error",
                    message=annotations.get(TERMINATION_MESSAGE, ""),
                    exit_code=code,
                    started_at=started,
                    finished_at=now,
                )
                for n in names
            }
        )
        return fake.final

    def _image_errors(self, pod: PodHandle, now: dt.datetime) -> dict[str, ContainerState]:
        errors = {}
        in_backoff = (now - pod.accepted_at).total_seconds() >= IMAGE_PULL_ERROR_SECONDS
        for container in pod.containers:
            image = str(container.get("image", ""))
            host = registry_host(image)
            if host.endswith(".invalid"):
                if in_backoff:
                    errors[container["name"]] = ContainerState(
                        "waiting", "ImagePullBackOff", f'Back-off pulling image "{image}"'
                    )
                else:
                    errors[container["name"]] = ContainerState(
                        "waiting",
                        "ErrImagePull",
                        f'failed to pull image "{image}": registry host {host} does not resolve '
                        "(fake runner: *.invalid registries never do)",
                    )
        return errors
