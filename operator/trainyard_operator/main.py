"""Entry point: `trainyard-operator` / `python -m trainyard_operator`.

Reads `OperatorSettings` from the environment, serves the Prometheus metrics, imports the
handlers (which registers them with kopf) and runs kopf standalone (no peering objects) on
the configured namespaces, with kopf's liveness endpoint at /healthz.
"""

from __future__ import annotations

import logging
import socket
import sys

import kopf
from kopf._core.engines.peering import Identity
from prometheus_client import start_http_server
from pydantic import ValidationError

from trainyard_operator.metrics import OperatorMetrics
from trainyard_operator.settings import OperatorSettings


def main() -> None:
    """Run the operator until SIGINT or SIGTERM."""
    try:
        settings = OperatorSettings()
    except ValidationError as err:
        lines = [
            f"  TRAINYARD_{str(e['loc'][0]).upper()}={e.get('input')!r}: {e['msg']}"
            for e in err.errors()
        ]
        sys.exit("trainyard-operator: bad settings in the environment:\n" + "\n".join(lines))
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # kopf logs every watch event at DEBUG; keep its INFO chatter out unless asked.
    if settings.log_level != "DEBUG":
        logging.getLogger("kopf").setLevel(logging.WARNING)
    metrics = OperatorMetrics()
    start_http_server(
        settings.operator_metrics_port,
        addr=settings.operator_bind_address,
        registry=metrics.registry,
    )
    from trainyard_operator import handlers  # noqa: F401 - importing registers the handlers

    host = settings.operator_bind_address
    if ":" in host:
        host = f"[{host}]"
    logging.getLogger(__name__).info(
        "watching %s; metrics on :%d, liveness on :%d/healthz",
        ",".join(settings.namespaces) or "all namespaces",
        settings.operator_metrics_port,
        settings.operator_health_port,
    )
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


if __name__ == "__main__":
    main()
