"""Entry point: `trainyard-operator` / `python -m trainyard_operator`.

Reads `OperatorSettings` from the environment, sets up the log (text or JSON: `logs`),
serves the Prometheus metrics (plain HTTP, or
with TRAINYARD_METRICS_AUTH HTTPS behind TokenReview and SubjectAccessReview:
`metrics_server`), imports the handlers (which registers them with kopf) and runs kopf
standalone (no peering objects) on the configured namespaces, with kopf's liveness endpoint
at /healthz.

With TRAINYARD_LEADER_ELECTION, kopf starts only once this replica holds the Lease
(`leadership`); a replica that can no longer renew it exits at once, as controller-runtime's
managers do, because it may no longer be the only one acting. A clean stop releases it.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import sys
import threading
import time
import uuid
from pathlib import Path

import kopf
from kopf._core.engines.peering import Identity
from kubernetes import client
from prometheus_client import start_http_server
from pydantic import ValidationError

from trainyard_operator import logs
from trainyard_operator.allocator import limit_malloc_arenas
from trainyard_operator.clients import load_configuration, missing_verbs
from trainyard_operator.leadership import LeaseElector, LeaseTiming, StandbyHealth
from trainyard_operator.metrics import OperatorMetrics
from trainyard_operator.metrics_server import serve_secure_metrics
from trainyard_operator.settings import OperatorSettings

log = logging.getLogger(__name__)
#: how long a refused rule is asked again at start (RBAC created with the operator settles)
RBAC_SETTLE_SECONDS = 30.0
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def main() -> None:
    """Run the operator until SIGINT or SIGTERM."""
    limit_malloc_arenas()  # before any thread starts (allocator.py)
    try:
        settings = OperatorSettings()
    except ValidationError as err:
        lines = [
            f"  TRAINYARD_{str(e['loc'][0]).upper()}={e.get('input')!r}: {e['msg']}"
            if e["loc"]
            else f"  {e['msg']}"
            for e in err.errors()
        ]
        sys.exit("trainyard-operator: bad settings in the environment:\n" + "\n".join(lines))
    logs.configure(settings.log_level, settings.log_format)
    if settings.network_policy and not settings.network_policy_operator_namespace:
        own = _own_namespace()
        if not own:
            sys.exit(
                "trainyard-operator: TRAINYARD_NETWORK_POLICY needs the operator's namespace, "
                "which each job's policy lets read the trainer metrics: set "
                "TRAINYARD_NETWORK_POLICY_OPERATOR_NAMESPACE (or POD_NAMESPACE)"
            )
        settings = settings.model_copy(update={"network_policy_operator_namespace": own})
    metrics = OperatorMetrics()
    _serve_metrics(settings, metrics)
    from trainyard_operator import handlers  # importing registers the handlers

    if settings.read_nodes:
        _check_node_reads(settings)
        handlers.registration.watch_gpu_nodes()

    host = settings.operator_bind_address
    if ":" in host:
        host = f"[{host}]"
    logging.getLogger(__name__).info(
        "watching %s; metrics on :%d%s, liveness on :%d/healthz",
        ",".join(settings.namespaces) or "all namespaces",
        settings.operator_metrics_port,
        " (https, authenticated and authorized)" if settings.metrics_auth else "",
        settings.operator_health_port,
    )
    elector = _elect(settings, metrics) if settings.leader_election else None
    kopf.run(
        standalone=True,
        # kopf derives its identity from the login name by default, which fails where the
        # uid has no passwd entry (the image runs as 65532, as the restricted profile wants)
        identity=Identity(f"trainyard-operator@{socket.gethostname()}"),
        clusterwide=not settings.namespaces,
        namespaces=settings.namespaces,
        liveness_endpoint=f"http://{host}:{settings.operator_health_port}/healthz",
        memo=kopf.Memo(settings=settings, metrics=metrics),
    )
    if elector is not None:
        elector.release()
        metrics.leader.set(0)


def _serve_metrics(settings: OperatorSettings, metrics: OperatorMetrics) -> None:
    """Serve /metrics from a daemon thread, plain or secure as the settings say."""
    if not settings.metrics_auth:
        start_http_server(
            settings.operator_metrics_port,
            addr=settings.operator_bind_address,
            registry=metrics.registry,
        )
        return
    try:
        serve_secure_metrics(
            metrics.registry,
            client.ApiClient(load_configuration()),
            host=settings.operator_bind_address,
            port=settings.operator_metrics_port,
            cert_dir=settings.metrics_cert_dir,
            request_timeout=settings.api_timeout_seconds,
        )
    except (OSError, ssl.SSLError) as err:
        sys.exit(f"trainyard-operator: cannot serve secure metrics: {err}")


def _check_node_reads(settings: OperatorSettings) -> None:
    """TRAINYARD_READ_NODES without the rule to read nodes: stop now, saying what is missing.
    (kopf's node watch would retry forbidden lists and, its index unfilled, hold back every
    job.) An API server that does not answer yet is kopf's to wait for, as usual. A rule
    created together with the operator (one `helm install`) may reach the API server's
    authorizer cache a moment after the pod starts, so a refusal is asked again for
    RBAC_SETTLE_SECONDS before it stops the operator."""
    deadline = time.monotonic() + RBAC_SETTLE_SECONDS
    while True:
        try:
            missing = missing_verbs(
                client.ApiClient(load_configuration()),
                "nodes",
                ("list", "watch"),
                timeout=settings.api_timeout_seconds,
            )
        except Exception as err:  # unreachable now: kopf retries, and fails loudly if forbidden
            log.warning("could not check the rule to read nodes: %s", err)
            return
        if not missing or time.monotonic() >= deadline:
            break
        time.sleep(2.0)
    if missing:
        sys.exit(
            f"trainyard-operator: TRAINYARD_READ_NODES needs {' and '.join(missing)} on nodes "
            "(read-only, cluster-scoped: bind deploy/helm/trainyard/files/node-reader-rules.yaml,"
            " as the chart does in its cluster-wide mode), or turn it off"
        )


def _own_namespace() -> str:
    """The namespace of this operator's pod: POD_NAMESPACE (the chart sets it from the
    downward API), else the mounted ServiceAccount's; "" outside a pod."""
    if namespace := os.environ.get("POD_NAMESPACE", ""):
        return namespace
    if SERVICE_ACCOUNT_NAMESPACE.exists():
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    return ""


def _elect(settings: OperatorSettings, metrics: OperatorMetrics) -> LeaseElector:
    """Stand by (answering /healthz) until this replica holds the Lease, then keep it."""
    namespace = settings.leader_election_namespace or _own_namespace()
    if not namespace:
        sys.exit(
            "trainyard-operator: TRAINYARD_LEADER_ELECTION needs the Lease's namespace: set "
            "TRAINYARD_LEADER_ELECTION_NAMESPACE (or POD_NAMESPACE)"
        )
    identity = settings.leader_election_identity or f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"
    configuration = load_configuration()
    elector = LeaseElector(
        client.ApiClient(configuration),
        namespace=namespace,
        name=settings.leader_election_lease,
        identity=identity,
        timing=LeaseTiming(
            duration=settings.lease_duration_seconds,
            renew_deadline=settings.lease_renew_deadline_seconds,
            retry=settings.lease_retry_seconds,
        ),
        request_timeout=settings.api_timeout_seconds,
    )
    log.info("%s: waiting for the lease %s/%s", identity, namespace, elector.name)
    metrics.leader.set(0)
    health = StandbyHealth(settings.operator_bind_address, settings.operator_health_port)
    try:
        elector.acquire(threading.Event())
    finally:
        health.close()
    metrics.leader.set(1)

    def lost() -> None:
        # Not a graceful stop: another replica may already act, so this one stops now.
        log.error("lost the lease %s/%s: exiting so that one replica acts", namespace, elector.name)
        logging.shutdown()
        os._exit(1)

    elector.keep(lost)
    return elector


if __name__ == "__main__":
    main()
