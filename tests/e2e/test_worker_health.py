"""Per-worker health end to end: a worker slowed from outside is found and named once, and the
Grafana dashboard's queries parse and show it.

On `e2e_stack` (conftest.py: the chart's RBAC, real torchrun processes as pods, a real
Prometheus; the operator reads every worker each second and judges stragglers over
TRAINYARD_STRAGGLER_WINDOW_SECONDS=10 at the default factor 1.5: a worker whose 10 s
average stays above 1.5x the median for 10 s), three workers train the MLP on synthetic
images with DDP. Once the operator has measured an even gang, worker 2's trainer process is
slowed from outside with SIGSTOP/SIGCONT duty cycles (stopped 0.3 s of every 0.4 s), as a
throttled GPU or a noisy neighbour would slow it. The steps are large (batch 512) so that
compute dominates them, as it does on real jobs: stops then land in the worker's own
compute, while with tiny steps they would land in the all-reduce and slow the gang alike.

What a user notices: one Straggler event naming worker 2, the Straggler condition and
status.health, the operator's straggler metrics, the condition clearing once the worker
keeps up again; and on the dashboard, every panel's PromQL parses (promtool) and returns
series from these real trainers. The detection delay (first SIGSTOP to the event) is printed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from e2e.stack import E2EStack
from e2e.test_demo_flow import create_job, kubectl, pod_dir, trainer_processes, wait_for
from trainyard_local.demo import delete_job, get_job

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy/monitoring/grafana-dashboard.json"
NAME = "stragglers"
SLOW_WORKER = 2
STOP_SECONDS, RUN_SECONDS = 0.3, 0.1
#: How long the slowing goes on after the event, to show that no second event follows, also
#: across a refresh of the status's numbers (status/health.py REFRESH_SECONDS, 30 s).
KEEP_SLOW_SECONDS = 35


class DutyCycle:
    """SIGSTOP/SIGCONT the given processes in turn on a thread, until stopped."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.started_at = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="duty cycle", daemon=True)

    def start(self) -> DutyCycle:
        self._thread.start()
        wait = time.monotonic() + 10
        while not self.started_at and time.monotonic() < wait:
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._signal(signal.SIGCONT)

    def _signal(self, sig: signal.Signals) -> None:
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):  # it exited: nothing to slow
                os.kill(pid, sig)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._signal(signal.SIGSTOP)
            if not self.started_at:
                self.started_at = time.time()
            self._stop.wait(STOP_SECONDS)
            self._signal(signal.SIGCONT)
            self._stop.wait(RUN_SECONDS)


@dataclass
class StragglerRun:
    """What the module's one run saw (the fixture below makes it)."""

    started_at: float
    baseline: dict[str, Any]
    slowed_at: float
    seen_at: float
    events: list[dict[str, Any]]
    status: dict[str, Any]
    operator_metrics: str
    found_before: float
    """trainyard_stragglers_total of the job namespace before the slowing (other jobs of the
    session may have had stragglers of their own)."""
    recovered: dict[str, Any] = field(default_factory=dict)

    @property
    def delay(self) -> float:
        return self.seen_at - self.slowed_at


def job_manifest() -> dict[str, Any]:
    return {
        "apiVersion": "trainyard.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": NAME},
        "spec": {
            "workers": 3,
            "resources": {"cpu": "1", "memory": "2Gi"},
            "trainer": {"model": "mlp", "dataset": "synthetic", "epochs": 1000, "batchSize": 512},
            # one checkpoint at the end: worker 0 does no extra work at every epoch's end
            "checkpoint": {"everyEpochs": 100000},
            "runPolicy": {"restartPolicy": "Never"},
        },
    }


def straggler_events(stack: E2EStack) -> list[dict[str, Any]]:
    api = config.new_client_from_config(config_file=str(stack.kubeconfig))  # type: ignore[no-untyped-call]
    with api:
        answer = client.CoreV1Api(api).list_namespaced_event(
            stack.job_namespace,
            field_selector=f"involvedObject.name={NAME},reason=Straggler",
            _preload_content=False,
        )
    items: list[dict[str, Any]] = json.loads(answer.data)["items"]
    return items


def status_of(stack: E2EStack) -> dict[str, Any]:
    job = get_job(stack.kubeconfig, stack.job_namespace, NAME) or {}
    status: dict[str, Any] = job.get("status") or {}
    return status


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    found = [c for c in status.get("conditions") or [] if c["type"] == kind]
    return found[0] if found else {}


def stragglers_found(stack: E2EStack, text: str | None = None) -> float:
    """The operator's trainyard_stragglers_total for the job namespace (0 before any)."""
    sample = f'trainyard_stragglers_total{{namespace="{stack.job_namespace}"}} '
    for line in (text if text is not None else stack.operator.metrics_text()).splitlines():
        if line.startswith(sample):
            return float(line.split()[-1])
    return 0.0


@pytest.fixture(scope="module")
def straggler_run(e2e_stack: E2EStack) -> Iterator[StragglerRun]:
    stack = e2e_stack
    started_at = time.time()
    create_job(stack, job_manifest())
    duty: DutyCycle | None = None
    try:
        # an even gang measured: every worker's counters over a full window
        def measured() -> dict[str, Any] | None:
            status = status_of(stack)
            if status.get("phase") in ("Failed", "Succeeded"):
                pytest.fail(f"the job ended early: {json.dumps(status, indent=1)}")
            health = status.get("health") or {}
            return status if health.get("medianStepSeconds") else None

        baseline = wait_for("the gang's first health reading", measured, 300, stack)
        (pod,) = json.loads(
            kubectl(
                stack,
                "get",
                "pods",
                "-n",
                stack.job_namespace,
                "-l",
                f"trainyard.dev/job-name={NAME},trainyard.dev/worker-index={SLOW_WORKER}",
                "-o",
                "json",
            )
        )["items"]
        container = int((pod_dir(stack, pod) / "trainer.pid").read_text())
        pids = trainer_processes(container)
        assert pids, f"worker {SLOW_WORKER} has no trainer process under its torchrun"

        found_before = stragglers_found(stack)
        duty = DutyCycle(pids).start()
        wait_for("a Straggler event", lambda: straggler_events(stack), 180, stack)
        seen_at = time.time()
        # slow on: the worker stays a straggler, and is not announced again
        time.sleep(KEEP_SLOW_SECONDS)  # a span to observe, not a wait for an outcome
        run = StragglerRun(
            started_at=started_at,
            baseline=baseline,
            slowed_at=duty.started_at,
            seen_at=seen_at,
            events=straggler_events(stack),
            status=status_of(stack),
            operator_metrics=stack.operator.metrics_text(),
            found_before=found_before,
        )
        duty.stop()

        def caught_up() -> dict[str, Any] | None:
            status = status_of(stack)
            cond = condition(status, "Straggler")
            return status if cond.get("status") == "False" else None

        run.recovered = wait_for("worker 2 to keep up again", caught_up, 180, stack)
        ratios = [
            (s.get("health") or {}).get("slowestRatio")
            for s in (run.baseline, run.status, run.recovered)
        ]
        print(
            f"\nstraggler detection delay: {run.delay:.1f} s from the first SIGSTOP to the "
            f"event (window 10 s, factor 1.5, reads every 1 s); slowest/median before, "
            f"while slowed, after: {ratios}; {run.status['health']}"
        )
        yield run
    finally:
        if duty is not None:
            duty.stop()
        delete_job(stack.kubeconfig, stack.job_namespace, NAME)


def test_a_slowed_worker_is_named_once_and_cleared_when_it_keeps_up(
    straggler_run: StragglerRun, e2e_stack: E2EStack, record_property: Any
) -> None:
    run = straggler_run
    record_property("straggler_detection_delay_seconds", round(run.delay, 1))
    # before the slowing, an even gang: numbers, and no straggler
    before = run.baseline["health"]
    assert before["stragglers"] == [], before
    assert before["slowestRatio"] < 1.5

    # exactly one event, naming the slowed worker, though it stayed slow for 35 s more
    (event,) = run.events
    assert event["type"] == "Warning"
    assert event["message"].startswith(f"worker {SLOW_WORKER} is slower than the rest")
    health = run.status["health"]
    assert health["stragglers"] == [SLOW_WORKER], health
    assert [s["worker"] for s in health["slowWorkers"]] == [SLOW_WORKER], health
    assert health["slowestWorker"] == SLOW_WORKER and health["slowestRatio"] >= 1.5
    straggling = condition(run.status, "Straggler")
    assert (straggling["status"], straggling["reason"]) == ("True", "SlowWorkers")
    assert f"worker {SLOW_WORKER} (" in straggling["message"]
    # the operator's metrics: one straggler now, one found in all
    namespace = e2e_stack.job_namespace
    assert f'trainyard_job_stragglers{{job="{NAME}",namespace="{namespace}"}} 1.0' in (
        run.operator_metrics
    )
    assert stragglers_found(e2e_stack, run.operator_metrics) == run.found_before + 1
    # the detection follows the slowing within the window and a few reads
    assert 0 < run.delay < 60, run.delay

    # let go, the worker keeps up again: the condition clears, no straggler is listed
    cleared = condition(run.recovered, "Straggler")
    assert cleared["reason"] == "WorkersEven", cleared
    assert run.recovered["health"]["stragglers"] == []
    assert run.recovered["health"]["slowWorkers"] == []
    assert run.recovered["phase"] == "Running"


def promtool() -> str:
    found = shutil.which("promtool") or (
        "/usr/bin/promtool" if Path("/usr/bin/promtool").exists() else None
    )
    if found is None:
        pytest.fail("promtool is not installed: run `make prometheus`", pytrace=False)
    return found


def panel_queries() -> list[tuple[str, list[str]]]:
    """(panel title, its PromQL) with Grafana's variables as a dashboard user would set them."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (
            panel["title"],
            [
                t["expr"].replace("$namespace", ".*").replace("$__rate_interval", "1m")
                for t in panel["targets"]
            ],
        )
        for panel in dashboard["panels"]
    ]


def test_every_dashboard_panel_parses_and_shows_series(
    straggler_run: StragglerRun, e2e_stack: E2EStack, tmp_path: Path
) -> None:
    panels = panel_queries()
    titles = [title for title, _ in panels]
    assert "Step compute time per worker" in titles and "Stragglers" in titles
    tool = promtool()

    # promtool parses each expression as a recording rule: a syntax error names the rule
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"panel_{p}_{t}", "expr": expr}
                    for p, (_, exprs) in enumerate(panels)
                    for t, expr in enumerate(exprs)
                ],
            }
        ]
    }
    rule_file = tmp_path / "dashboard-rules.yaml"
    rule_file.write_text(yaml.safe_dump(rules))
    checked = subprocess.run(
        [tool, "check", "rules", str(rule_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr

    # each panel, as Grafana draws it (a range query over the run), has series to draw
    start = int(straggler_run.started_at)
    for title, exprs in panels:
        series = 0
        for expr in exprs:
            answer = subprocess.run(
                [
                    tool,
                    "query",
                    "range",
                    "-o",
                    "json",
                    f"--start={start}",
                    f"--end={int(time.time())}",
                    "--step=5s",
                    e2e_stack.prometheus.url,
                    expr,
                ],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert answer.returncode == 0, f"{title}: {expr}: {answer.stderr}"
            series += len(json.loads(answer.stdout or "[]"))
        assert series > 0, f"panel {title!r} shows no series: {exprs}"

    # the per-worker panel shows the slowed worker above the others while it was slowed
    (per_worker,) = [exprs for title, exprs in panels if title == "Step compute time per worker"]
    at = int(straggler_run.seen_at + KEEP_SLOW_SECONDS - 1)  # the end of the slowing
    answer = subprocess.run(
        [
            tool,
            "query",
            "instant",
            "-o",
            "json",
            f"--time={at}",
            e2e_stack.prometheus.url,
            *per_worker,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = {
        item["metric"]["trainyard_dev_worker_index"]: float(item["value"][1])
        for item in json.loads(answer.stdout)
        if item["metric"].get("trainyard_dev_job_name") == NAME
    }
    assert set(lines) == {"0", "1", "2"}, lines
    assert lines[str(SLOW_WORKER)] > max(lines["0"], lines["1"]), lines
