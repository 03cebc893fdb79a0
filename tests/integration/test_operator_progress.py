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


class _Hostile(BaseHTTPRequestHandler):
    """A worker's endpoint turned against the operator: a redirect to another address of
    the cluster, or a body that never ends."""

    redirect_to = ""
    sent: list[int] = []  # bytes of endless body each request got out before the reader left
    served = threading.Event()

    def do_GET(self) -> None:
        if self.redirect_to:
            self.send_response(302)
            self.send_header("Location", self.redirect_to)
            self.send_header("Content-Length", "0")
            self.end_headers()
            _Hostile.served.set()
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(1 << 30))  # 1 GiB promised
        self.end_headers()
        chunk = b"# " + b"x" * (1 << 16) + b"\n"
        total = 0
        try:
            while total < 1 << 30:
                self.wfile.write(chunk)
                total += len(chunk)
        except OSError:
            pass  # the reader hung up: what a bounded reader does
        _Hostile.sent.append(total)
        _Hostile.served.set()

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Recorder(BaseHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self) -> None:
        _Recorder.requests.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serving(address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> Iterator[int]:
    server = ThreadingHTTPServer(address, handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _rss_bytes(operator: OperatorProcess) -> float:
    for line in operator.metrics_text().splitlines():
        if line.startswith("process_resident_memory_bytes "):
            return float(line.split()[1])
    raise AssertionError("the operator reports no process_resident_memory_bytes")


def test_a_hostile_worker_endpoint_cannot_steer_or_flood_the_operator(
    operator: OperatorProcess, jobs: Jobs
) -> None:
    jobs.create("hostile", workers=1)
    jobs.wait_phase("hostile", "Running")
    ip = jobs.pods("hostile")[0]["status"]["podIP"]
    baseline = _rss_bytes(operator)

    with serving(("127.0.0.1", 0), _Recorder) as recorder_port:
        _Hostile.redirect_to = f"http://127.0.0.1:{recorder_port}/steal"
        _Hostile.served.clear()
        with serving((ip, 9400), _Hostile):
            wait_for("the operator to read the redirect", _Hostile.served.is_set)
            # a second read proves the first one finished without following it
            _Hostile.served.clear()
            wait_for("a second read", _Hostile.served.is_set)
    assert _Recorder.requests == [], "the operator followed a redirect"

    _Hostile.redirect_to = ""
    _Hostile.sent.clear()
    with serving((ip, 9400), _Hostile):
        wait_for("three reads of the endless body", lambda: len(_Hostile.sent) >= 3, timeout=120)
    # each read stopped near the operator's cap (1 MiB), plus what socket buffers hold
    assert max(_Hostile.sent) < 16 << 20, _Hostile.sent
    assert operator.running()
    assert _rss_bytes(operator) < baseline + (64 << 20)
    assert jobs.status("hostile")["phase"] == "Running"
