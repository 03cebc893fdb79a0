"""A real Prometheus server for the embedded cluster: config, start, stop and PromQL queries.

`make demo` and the e2e test start one next to a `LocalCluster` (process agent). It is
Debian's `prometheus` binary (`make prometheus` installs it), on a free port of 127.0.0.1,
with its data and config under `<state dir>/prometheus/`. It scrapes every second:

- `job="trainyard-operator"`: the operator process's metrics port (a static target, since
  the operator runs as a local process next to the cluster);
- `job="trainyard-trainers"`: every pod labelled `app.kubernetes.io/managed-by=
  trainyard-operator` at its container port named `metrics` (9400), found by Prometheus's
  own Kubernetes service discovery through the cluster's admin kubeconfig. Pod IPs are the
  process agent's loopback addresses (127.2.x.y), where each worker's metrics server
  listens. The pod labels `trainyard.dev/job-name` and `trainyard.dev/worker-index` become
  `trainyard_dev_job_name` and `trainyard_dev_worker_index`, as the chart's PodMonitor does
  on a real cluster, so deploy/monitoring's dashboard and alerts work on both.

deploy/monitoring/alerts.yaml is loaded as a rule file, so the alerts are checked by a real
rule engine too. The process is started and stopped by pid through `processes.py`.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from trainyard_local import processes

#: deploy/monitoring/alerts.yaml of this checkout (the package is installed editable)
ALERTS_FILE = Path(__file__).resolve().parents[2] / "monitoring" / "alerts.yaml"
SCRAPE_INTERVAL = "1s"


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


def scrape_config(*, operator_target: str, kubeconfig: Path) -> dict[str, Any]:
    """The prometheus.yml that scrapes the operator and the trainer pods."""
    trainer_relabel: list[dict[str, Any]] = [
        {
            "action": "keep",
            "source_labels": ["__meta_kubernetes_pod_label_app_kubernetes_io_managed_by"],
            "regex": "trainyard-operator",
        },
        {
            "action": "keep",
            "source_labels": ["__meta_kubernetes_pod_container_port_name"],
            "regex": "metrics",
        },
        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        {
            "source_labels": ["__meta_kubernetes_pod_label_trainyard_dev_job_name"],
            "target_label": "trainyard_dev_job_name",
        },
        {
            "source_labels": ["__meta_kubernetes_pod_label_trainyard_dev_worker_index"],
            "target_label": "trainyard_dev_worker_index",
        },
    ]
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
                "kubernetes_sd_configs": [{"role": "pod", "kubeconfig_file": str(kubeconfig)}],
                "relabel_configs": trainer_relabel,
            },
        ],
    }


@dataclass
class LocalPrometheus:
    """One Prometheus server under `home` (config, TSDB, log, pid)."""

    home: Path
    operator_target: str
    kubeconfig: Path
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.home / "prometheus.pid.json"

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
        config_path.write_text(
            yaml.safe_dump(
                scrape_config(operator_target=self.operator_target, kubeconfig=self.kubeconfig),
                sort_keys=False,
            )
        )
        popen = processes.spawn(
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
        stopped = processes.stop(
            processes.Tracked("prometheus", int(record["pid"]), str(record["match"]))
        )
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
        return cls(home, "", Path(), port=int(record["port"]))

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
