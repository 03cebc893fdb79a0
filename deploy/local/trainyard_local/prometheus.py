"""A real Prometheus server for the embedded cluster: config, start, stop and PromQL queries.

`make demo` and the e2e test start one next to a `LocalCluster` (process agent). It is
Debian's `prometheus` binary (`make prometheus` installs it), on a free port of 127.0.0.1,
with its data and config under `<state dir>/prometheus/`. It scrapes every second:

- `job="trainyard-operator"`: the operator process's metrics port (a static target, since
  the operator runs as a local process next to the cluster);
- `job="trainyard-trainers"`: every running pod labelled `app.kubernetes.io/managed-by=
  trainyard-operator` at its container port named `metrics` (9400). Debian builds
  Prometheus without Kubernetes service discovery, so `TrainerTargetSync` lists those pods
  through the API every second and writes them to a file_sd file that Prometheus watches.
  Pod IPs are the process agent's loopback addresses (127.2.x.y), where each worker's
  metrics server listens. The pod labels `trainyard.dev/job-name` and
  `trainyard.dev/worker-index` become `trainyard_dev_job_name` and
  `trainyard_dev_worker_index`, as the chart's PodMonitor does on a real cluster, so
  deploy/monitoring's dashboard and alerts work on both.

deploy/monitoring/alerts.yaml is loaded as a rule file, so the alerts are checked by a real
rule engine too. The process is started and stopped by pid through `processes.py`.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from trainyard_local import processes

#: deploy/monitoring/alerts.yaml of this checkout (the package is installed editable)
ALERTS_FILE = Path(__file__).resolve().parents[2] / "monitoring" / "alerts.yaml"
SCRAPE_INTERVAL = "1s"

log = logging.getLogger("trainyard_local.prometheus")


class PrometheusError(RuntimeError):
    """Prometheus is missing, did not start, or refused a query (the message says which)."""


def prometheus_binary() -> Path:
    """Debian's prometheus, or one on PATH; a clear error naming `make prometheus` otherwise."""
    found = shutil.which("prometheus") or (
        "/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None
    )
    if not found:
        raise PrometheusError(
            "prometheus is not installed: run `make prometheus` (installs Debian's package)"
        )
    return Path(found)


TRAINER_SELECTOR = "app.kubernetes.io/managed-by=trainyard-operator"


def scrape_config(*, operator_target: str, trainer_targets_file: Path) -> dict[str, Any]:
    """The prometheus.yml that scrapes the operator and the trainer pods."""
    return {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "rule_files": [str(ALERTS_FILE)] if ALERTS_FILE.exists() else [],
        "scrape_configs": [
            {
                "job_name": "trainyard-operator",
                "static_configs": [{"targets": [operator_target]}],
            },
            {
                "job_name": "trainyard-trainers",
                "scrape_timeout": SCRAPE_INTERVAL,
                "file_sd_configs": [
                    {"files": [str(trainer_targets_file)], "refresh_interval": "5s"}
                ],
            },
        ],
    }


def trainer_targets(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """file_sd target groups for running trainer pods: `<pod IP>:<metrics port>` + labels."""
    groups = []
    for pod in pods:
        meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
        labels = meta.get("labels") or {}
        if status.get("phase") != "Running" or not status.get("podIP"):
            continue
        ports = [
            port["containerPort"]
            for container in spec.get("containers") or []
            for port in container.get("ports") or []
            if port.get("name") == "metrics"
        ]
        for port in ports:
            groups.append(
                {
                    "targets": [f"{status['podIP']}:{port}"],
                    "labels": {
                        "namespace": meta["namespace"],
                        "pod": meta["name"],
                        "trainyard_dev_job_name": labels.get("trainyard.dev/job-name", ""),
                        "trainyard_dev_worker_index": labels.get("trainyard.dev/worker-index", ""),
                    },
                }
            )
    return sorted(groups, key=lambda group: str(group["targets"]))


class TrainerTargetSync:
    """Keeps the trainers' file_sd file equal to the running trainer pods (1 s polling)."""

    def __init__(self, kubeconfig: Path, targets_file: Path, interval: float = 1.0) -> None:
        self.kubeconfig = kubeconfig
        self.targets_file = targets_file
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="trainer-targets", daemon=True)

    def sync_once(self, core: Any) -> list[dict[str, Any]]:
        answer = core.list_pod_for_all_namespaces(
            label_selector=TRAINER_SELECTOR, _preload_content=False
        )
        groups = trainer_targets(json.loads(answer.data)["items"])
        write_targets(self.targets_file, groups)
        return groups

    def _loop(self) -> None:
        from kubernetes import client, config

        api = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(self.kubeconfig)
        )
        core = client.CoreV1Api(api)
        while not self._stop.is_set():
            try:
                self.sync_once(core)
            except Exception:  # the API server may be restarting; try again next tick
                log.debug("trainer target sync failed", exc_info=True)
            self._stop.wait(self.interval)
        api.close()

    def start(self) -> TrainerTargetSync:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)


def write_targets(path: Path, groups: list[dict[str, Any]]) -> None:
    """Write a file_sd file atomically (Prometheus must never read half of one)."""
    text = json.dumps(groups, indent=1)
    if path.exists() and path.read_text() == text:
        return
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


@dataclass
class LocalPrometheus:
    """One Prometheus server under `home` (config, TSDB, log, pid)."""

    home: Path
    operator_target: str
    port: int = 0
    #: the server's Popen when this process started it (reaped on stop: no zombie, no warning)
    _popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.home / "prometheus.pid.json"

    @property
    def trainer_targets_file(self) -> Path:
        return self.home / "trainer-targets.json"

    @property
    def log_path(self) -> Path:
        return self.home / "prometheus.log"

    def start(self, *, timeout: float = 60.0) -> None:
        """Write the config and start the server; returns once it answers queries."""
        self.stop()
        binary = prometheus_binary()
        self.home.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = processes.free_ports(1)[0]
        config_path = self.home / "prometheus.yml"
        if not self.trainer_targets_file.exists():
            write_targets(self.trainer_targets_file, [])
        config_path.write_text(
            yaml.safe_dump(
                scrape_config(
                    operator_target=self.operator_target,
                    trainer_targets_file=self.trainer_targets_file,
                ),
                sort_keys=False,
            )
        )
        popen = self._popen = processes.spawn(
            [
                str(binary),
                f"--config.file={config_path}",
                f"--storage.tsdb.path={self.home / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1d",
                "--log.level=warn",
            ],
            self.log_path,
        )
        self.pid_file.write_text(
            json.dumps({"pid": popen.pid, "match": str(config_path), "port": self.port})
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if popen.poll() is not None:
                raise PrometheusError(
                    f"prometheus exited with {popen.returncode}; last lines of {self.log_path}:\n"
                    + processes.log_tail(self.log_path)
                )
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise PrometheusError(f"prometheus not ready after {timeout:.0f} s; see {self.log_path}")

    def stop(self) -> bool:
        """Stop the server recorded in the pid file; True if one was running."""
        try:
            record = json.loads(self.pid_file.read_text())
        except (FileNotFoundError, ValueError):
            return False
        popen = self._popen if self._popen and self._popen.pid == record["pid"] else None
        stopped = processes.stop(
            processes.Tracked("prometheus", int(record["pid"]), str(record["match"])), popen=popen
        )
        self._popen = None
        self.pid_file.unlink(missing_ok=True)
        return stopped

    @classmethod
    def running(cls, home: Path) -> LocalPrometheus | None:
        """The server recorded under `home`, if it still runs (for `demo down` and status)."""
        try:
            record = json.loads((home / "prometheus.pid.json").read_text())
        except (FileNotFoundError, ValueError):
            return None
        tracked = processes.Tracked("prometheus", int(record["pid"]), str(record["match"]))
        if not processes.is_running(tracked):
            return None
        return cls(home, "", port=int(record["port"]))

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query; the result vector (each item has `metric` and `value`)."""
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=10)
        body = response.json()
        if body.get("status") != "success":
            raise PrometheusError(f"query {promql!r}: {body.get('error', response.text)}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def targets(self) -> list[dict[str, Any]]:
        """The active scrape targets (job, health, last error), for diagnostics."""
        response = httpx.get(f"{self.url}/api/v1/targets", timeout=10)
        active: list[dict[str, Any]] = response.json()["data"]["activeTargets"]
        return active
