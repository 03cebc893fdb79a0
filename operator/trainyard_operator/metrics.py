"""The operator's Prometheus metrics (prefix trainyard_, base units, bounded labels).

One `OperatorMetrics` per process, on its own registry, served by `main` on
TRAINYARD_OPERATOR_METRICS_PORT. `clients` counts every API request it makes here; the
handlers record phases, outcomes and timings after each reconcile. Per-job series (progress,
loss, stragglers) carry the job name and are removed when the job is deleted, so they never
pile up.
"""

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.process_collector import ProcessCollector

PHASES = ("Pending", "Running", "Compressing", "Restarting", "Suspended", "Succeeded", "Failed")


class OperatorMetrics:
    """The operator's metrics and the bookkeeping behind the jobs-by-phase gauge."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        ProcessCollector(registry=self.registry)
        r = self.registry
        self.jobs = Gauge(
            "trainyard_jobs", "TrainingJobs by phase", ["namespace", "phase"], registry=r
        )
        self.created = Counter(
            "trainyard_jobs_created", "TrainingJobs the operator started", ["namespace"], registry=r
        )
        self.succeeded = Counter(
            "trainyard_jobs_succeeded", "TrainingJobs that succeeded", ["namespace"], registry=r
        )
        self.failed = Counter(
            "trainyard_jobs_failed", "TrainingJobs that failed", ["namespace", "reason"], registry=r
        )
        self.restarted = Counter(
            "trainyard_jobs_restarted", "Whole-gang restarts", ["namespace", "reason"], registry=r
        )
        self.reconcile_duration = Histogram(
            "trainyard_reconcile_duration_seconds",
            "Time of one reconcile pass (decision plus API calls)",
            registry=r,
        )
        self.time_to_running = Histogram(
            "trainyard_job_time_to_running_seconds",
            "From the TrainingJob's creation to all of its first gang running",
            buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600),
            registry=r,
        )
        self.api_requests = Counter(
            "trainyard_api_requests",
            "Kubernetes API requests made by the operator",
            ["verb"],
            registry=r,
        )
        self.api_throttled = Counter(
            "trainyard_api_throttled_seconds",
            "Seconds API requests waited for the operator's own rate limit (TRAINYARD_API_QPS)",
            registry=r,
        )
        self.progress = Gauge(
            "trainyard_job_progress_percent",
            "Progress of a running job (0-100)",
            ["namespace", "job"],
            registry=r,
        )
        self.loss = Gauge(
            "trainyard_job_loss",
            "Last training loss of a running job",
            ["namespace", "job"],
            registry=r,
        )
        self.stragglers = Gauge(
            "trainyard_job_stragglers",
            "Workers of a running job slower than the straggler factor of its median step",
            ["namespace", "job"],
            registry=r,
        )
        self.slowest_ratio = Gauge(
            "trainyard_job_slowest_worker_ratio",
            "A running job's slowest compute time per step over its workers' median",
            ["namespace", "job"],
            registry=r,
        )
        self.stragglers_found = Counter(
            "trainyard_stragglers",
            "Workers found straggling (once per worker and episode)",
            ["namespace"],
            registry=r,
        )
        self.leader = Gauge(
            "trainyard_operator_leader",
            "1 while this replica holds the leader Lease and acts; 0 while it stands by",
            registry=r,
        )
        self._phase_of: dict[tuple[str, str], str] = {}

    def set_phase(self, namespace: str, name: str, phase: str) -> None:
        """Record the job's current phase (moves it between the jobs{phase} series)."""
        old = self._phase_of.get((namespace, name))
        if old == phase:
            return
        if old is not None:
            self.jobs.labels(namespace=namespace, phase=old).dec()
        self.jobs.labels(namespace=namespace, phase=phase).inc()
        self._phase_of[(namespace, name)] = phase

    def forget(self, namespace: str, name: str) -> None:
        """The job is gone: drop it from the phase gauge and remove its per-job series."""
        old = self._phase_of.pop((namespace, name), None)
        if old is not None:
            self.jobs.labels(namespace=namespace, phase=old).dec()
        for gauge in (self.progress, self.loss, self.stragglers, self.slowest_ratio):
            with contextlib.suppress(KeyError):
                gauge.remove(namespace, name)

    def set_health(self, namespace: str, name: str, ratio: float, stragglers: int) -> None:
        """Per-job straggler gauges (while every worker's step times are read)."""
        self.slowest_ratio.labels(namespace=namespace, job=name).set(ratio)
        self.stragglers.labels(namespace=namespace, job=name).set(stragglers)

    def set_progress(self, namespace: str, name: str, percent: int, loss: float | None) -> None:
        """Per-job progress gauges (only while the trainer reports)."""
        self.progress.labels(namespace=namespace, job=name).set(percent)
        if loss is not None:
            self.loss.labels(namespace=namespace, job=name).set(loss)
