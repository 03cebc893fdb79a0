"""Run the Trainyard operator as a local subprocess (test and demo tooling).

`OperatorProcess` starts `python -m trainyard_operator` with a given kubeconfig (in the tests:
a ServiceAccount token kubeconfig, never admin) and TRAINYARD_* settings, logs to a file,
waits until kopf's liveness endpoint answers, and stops it by pid. The operator's own
integration tests, the e2e tests and `make demo` use it; on a real cluster the operator runs
as the Helm chart's Deployment instead. Process handling is `processes.py`'s.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from subprocess import Popen
from types import TracebackType

import httpx

from trainyard_local import processes

#: Part of the operator's command line; `processes.stop` checks it before signalling a pid.
MATCH = "-m trainyard_operator"


class OperatorStartError(RuntimeError):
    """The operator exited or never became live; the message ends with its log."""


class OperatorProcess:
    """One operator process on 127.0.0.1 with its own metrics and health ports."""

    def __init__(
        self,
        kubeconfig: Path,
        namespaces: Sequence[str] = (),
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        trainer_image: str | None = None,
        metrics_port: int | None = None,
        health_port: int | None = None,
        python: str = sys.executable,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.namespaces = list(namespaces)
        self.log_path = log_path
        self.extra_env = dict(env or {})
        self.trainer_image = trainer_image
        ports = processes.free_ports(2)
        self.metrics_port = metrics_port or ports[0]
        self.health_port = health_port or ports[1]
        self.python = python
        self._popen: Popen[bytes] | None = None

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.health_port}/healthz"

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen else None

    def environment(self) -> dict[str, str]:
        """This process's environment without its TRAINYARD_* settings, plus the operator's."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINYARD_")}
        env.update(
            {
                "KUBECONFIG": str(self.kubeconfig),
                "TRAINYARD_NAMESPACES": ",".join(self.namespaces),
                "TRAINYARD_OPERATOR_METRICS_PORT": str(self.metrics_port),
                "TRAINYARD_OPERATOR_HEALTH_PORT": str(self.health_port),
                "TRAINYARD_OPERATOR_BIND_ADDRESS": "127.0.0.1",
                "PYTHONUNBUFFERED": "1",
            }
        )
        if self.trainer_image:
            env["TRAINYARD_TRAINER_IMAGE"] = self.trainer_image
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 60.0) -> OperatorProcess:
        """Spawn the operator and wait until its liveness endpoint answers 200."""
        if self.running():
            return self
        self._popen = processes.spawn(
            [self.python, "-m", "trainyard_operator"],
            self.log_path,
            env=self.environment(),
            tie_to_parent=True,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self._popen.poll() is not None:
                raise OperatorStartError(
                    f"the operator exited with {self._popen.returncode}; "
                    f"log {self.log_path}:\n{processes.log_tail(self.log_path)}"
                )
            if self._live():
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise OperatorStartError(
                    f"the operator was not live after {timeout:.0f} s; "
                    f"log {self.log_path}:\n{processes.log_tail(self.log_path)}"
                )
            time.sleep(0.1)

    def _live(self) -> bool:
        try:
            return httpx.get(self.health_url, timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def metrics_text(self) -> str:
        """The operator's /metrics page."""
        response = httpx.get(self.metrics_url, timeout=5.0)
        response.raise_for_status()
        return response.text

    def kill(self) -> None:
        """SIGKILL, as a crash would (no clean-up handlers run)."""
        if self._popen is not None and self._popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._popen.pid, signal.SIGKILL)
            self._popen.wait(timeout=10)

    def stop(self, grace_seconds: float = 10.0) -> None:
        """SIGTERM (kopf shuts down cleanly), then SIGKILL after the grace period."""
        if self._popen is None:
            return
        tracked = processes.Tracked("operator", self._popen.pid, MATCH)
        processes.stop(tracked, grace_seconds=grace_seconds, popen=self._popen)

    def log_tail(self, lines: int = 40) -> str:
        return processes.log_tail(self.log_path, lines)

    def __enter__(self) -> OperatorProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
