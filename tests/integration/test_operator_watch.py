"""What the operator asks the API server to send it: only worker pods, filtered by the
server, never every pod of the cluster. Read from the embedded API server's audit log, which
records each pod list and watch with its request URI (and so its selectors)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from integration.operator_fixtures import wait_for
from trainyard_local.cluster import LocalCluster
from trainyard_local.operator_process import OperatorProcess
from trainyard_operator.api.constants import LABEL_JOB_NAME

pytestmark = pytest.mark.integration


def _pod_requests(cluster: LocalCluster, user: str) -> list[dict[str, Any]]:
    """Audited pod lists and watches made by `user` (the operator's ServiceAccount)."""
    if not cluster.audit_log.exists():
        return []
    found = []
    with cluster.audit_log.open() as log:
        for line in log:
            event = json.loads(line)
            if event.get("user", {}).get("username") == user:
                found.append(event)
    return found


def test_the_pod_watch_asks_the_server_for_worker_pods_only(
    operator: OperatorProcess, local_cluster: LocalCluster, namespace: str
) -> None:
    user = f"system:serviceaccount:{namespace}:trainyard-operator"
    requests = wait_for(
        "the operator's pod watch in the audit log",
        lambda: [e for e in _pod_requests(local_cluster, user) if e["verb"] == "watch"],
        timeout=90,
    )
    assert isinstance(requests, list)
    for event in requests:
        query = parse_qs(urlsplit(event["requestURI"]).query)
        assert query.get("labelSelector") == [LABEL_JOB_NAME], event["requestURI"]
