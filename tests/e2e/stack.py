"""What the `e2e_stack` fixture (conftest.py) hands to the e2e tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trainyard_local.cluster import LocalCluster
from trainyard_local.operator_process import OperatorProcess
from trainyard_local.prometheus import LocalPrometheus


@dataclass
class E2EStack:
    cluster: LocalCluster
    operator: OperatorProcess
    operator_kubeconfig: Path
    prometheus: LocalPrometheus
    job_namespace: str

    @property
    def kubeconfig(self) -> Path:
        return self.cluster.kubeconfig
