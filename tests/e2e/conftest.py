"""The e2e stack: the demo's own flow, started once per e2e session (`e2e_stack` fixture).

A LocalCluster of its own with the process agent (worker pods run torchrun as real local
processes), the Helm chart installed with `trainyard_local.demo.install_chart`, the operator
as a local process under the chart ServiceAccount's TokenRequest token (so the chart's RBAC
is what it runs with), a real Prometheus scraping the operator and the trainer pods, and a
job namespace that enforces the restricted Pod Security profile. It lives next to the
session's fake-agent cluster of the integration tests (its own name, state dir and ports).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from e2e.stack import E2EStack
from trainyard_local import binaries
from trainyard_local.cluster import LocalCluster
from trainyard_local.demo import (
    CHART_NAMESPACE,
    CHART_OPERATOR_ENV,
    RELEASE,
    RESTRICTED,
    ensure_namespace,
    install_chart,
    service_account_kubeconfig,
)
from trainyard_local.operator_process import OperatorProcess
from trainyard_local.prometheus import LocalPrometheus, PrometheusError, TrainerTargetSync

JOB_NAMESPACE = "e2e-jobs"


@pytest.fixture(scope="session")
def e2e_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2EStack]:
    try:
        binaries.bin_dir(need=binaries.ALL)
    except binaries.BinariesMissingError as error:
        pytest.fail(str(error), pytrace=False)
    home = tmp_path_factory.mktemp("e2e")
    cluster = LocalCluster(
        f"e2e-{secrets.token_hex(3)}",
        state_dir=home / "cluster",
        cpu_nodes=1,
        gpu_nodes=0,
        agent="process",
        tie_to_parent=True,
    )
    cluster.start()
    operator: OperatorProcess | None = None
    prometheus: LocalPrometheus | None = None
    sync: TrainerTargetSync | None = None
    try:
        ensure_namespace(cluster.kubeconfig, CHART_NAMESPACE, RESTRICTED)
        install_chart(cluster.kubeconfig)
        operator_kubeconfig = service_account_kubeconfig(
            cluster.kubeconfig,
            server=cluster.server,
            ca_cert=cluster.pki.ca_cert,
            namespace=CHART_NAMESPACE,
            name=RELEASE,
            path=home / "operator.kubeconfig",
        )
        operator = OperatorProcess(
            operator_kubeconfig,
            log_path=home / "operator.log",
            # read the workers' metrics every second, so a short run shows its stages, and
            # judge stragglers over 10 s (test_worker_health.py) instead of a minute
            env={
                **CHART_OPERATOR_ENV,
                "TRAINYARD_PROGRESS_INTERVAL_SECONDS": "1",
                "TRAINYARD_STRAGGLER_WINDOW_SECONDS": "10",
            },
        ).start()
        prometheus = LocalPrometheus(
            home / "prometheus", operator_target=f"127.0.0.1:{operator.metrics_port}"
        )
        try:
            prometheus.start()
        except PrometheusError as error:
            pytest.fail(str(error), pytrace=False)
        sync = TrainerTargetSync(cluster.kubeconfig, prometheus.trainer_targets_file).start()
        ensure_namespace(cluster.kubeconfig, JOB_NAMESPACE, RESTRICTED)
        yield E2EStack(cluster, operator, operator_kubeconfig, prometheus, JOB_NAMESPACE)
    finally:
        if sync is not None:
            sync.stop()
        if prometheus is not None:
            prometheus.stop()
        if operator is not None:
            operator.stop()
        cluster.stop()
