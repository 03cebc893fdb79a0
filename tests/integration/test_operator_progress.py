"""Live progress without API credentials in the pod: the operator reads worker 0's metrics
endpoint and writes status.progress (and the Stage/Progress printer columns); with no
progress for progressDeadlineSeconds it restarts the gang. The trainer's endpoint is played
by a small HTTP server bound to the fake pod's loopback IP on port 9400."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from integration.operator_fixtures import Jobs, condition, wait_for
from trainyard_local.operator_process import OperatorProcess
from trainyard_local.pytest_plugin import Kubectl

pytestmark = pytest.mark.integration

METRICS = """\
# TYPE trainyard_trainer_stage gauge
trainyard_trainer_stage{stage="train"} 0
trainyard_trainer_stage{stage="prune"} 1
# TYPE trainyard_trainer_epoch gauge
trainyard_trainer_epoch 1
# TYPE trainyard_trainer_epochs gauge
trainyard_trainer_epochs 2
# TYPE trainyard_trainer_progress_ratio gauge
trainyard_trainer_progress_ratio 0.875
# TYPE trainyard_trainer_loss gauge
trainyard_trainer_loss 0.125
# TYPE trainyard_trainer_accuracy gauge
trainyard_trainer_accuracy 0.96
# TYPE trainyard_trainer_eta_seconds gauge
trainyard_trainer_eta_seconds 30
"""


class _Metrics(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = METRICS.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def trainer_endpoint(ip: str) -> Iterator[None]:
    server = ThreadingHTTPServer((ip, 9400), _Metrics)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


def test_progress_is_read_from_worker_zero(
    operator: OperatorProcess, jobs: Jobs, kubectl: Kubectl, namespace: str
) -> None:
    jobs.create("learning", workers=2)
    jobs.wait_phase("learning", "Running")
    master = next(p for p in jobs.pods("learning") if p["metadata"]["name"].endswith("-0"))
    with trainer_endpoint(master["status"]["podIP"]):
        status = jobs.wait_phase("learning", "Compressing")
        wait_for("status.progress", lambda: jobs.status("learning").get("progress"))
        progress = jobs.status("learning")["progress"]
    assert progress["stage"] == "prune"
    assert (progress["epoch"], progress["totalEpochs"], progress["percent"]) == (1, 2, 87)
    assert progress["loss"] == 0.125 and progress["accuracy"] == 0.96
    assert progress["etaSeconds"] == 30 and progress["updatedAt"]
    assert status["restarts"] == 0
    table = kubectl("get", "tj", "learning", "-n", namespace)
    header, row = table.stdout.splitlines()[:2]
    assert "STAGE" in header and "PROGRESS" in header, header
    assert "prune" in row.split() and any(cell.startswith("87") for cell in row.split()), row
    samples = operator.metrics_text()
    assert f'trainyard_job_progress_percent{{job="learning",namespace="{namespace}"}} 87.0' in (
        samples
    )


def test_no_progress_for_the_deadline_restarts_the_gang(
    operator: OperatorProcess, jobs: Jobs
) -> None:
    jobs.create("hung", workers=2, runPolicy={"progressDeadlineSeconds": 3, "backoffLimit": 1})
    jobs.wait_pods("hung", 2, restart=1, timeout=90)
    assert jobs.status("hung")["restarts"] >= 1
    _, _, message = jobs.wait_event("hung", "GangRestart")
    assert "no training progress for progressDeadlineSeconds=3" in message
    jobs.wait_event("hung", "ProgressDeadlineExceeded")
    # Each new gang gets the same deadline; past backoffLimit the job fails.
    status = jobs.wait_phase("hung", "Failed", timeout=90)
    failed = condition(status, "Failed")
    assert failed is not None and failed["reason"] == "BackoffLimitExceeded"
    assert "no training progress" in failed["message"]
