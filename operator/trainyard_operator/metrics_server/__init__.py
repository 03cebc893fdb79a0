"""/metrics behind Kubernetes authentication and authorization (TRAINYARD_METRICS_AUTH).

What controller-runtime's secure metrics (filters.WithAuthenticationAndAuthorization) do,
for the operator's Prometheus page, which names every namespace's jobs: HTTPS only, and each
request's bearer token is reviewed by the API server (TokenReview, then a
SubjectAccessReview for `get` on the non-resource URL /metrics). 401 without a valid token,
403 without the right, the metrics otherwise. Answers are cached for seconds per token hash.

`decisions` is pure (which answer for which review result, the cache); `reviews` makes the
two API calls; `tls` provides the certificate; `server` serves from a thread of its own.
With the switch off, `main` keeps prometheus_client's plain HTTP server.
"""

from __future__ import annotations

from pathlib import Path

from kubernetes import client
from prometheus_client import CollectorRegistry

from trainyard_operator.metrics_server.reviews import KubeReviews, ReviewError
from trainyard_operator.metrics_server.server import Gate, SecureMetricsServer
from trainyard_operator.metrics_server.tls import (
    CertificateFiles,
    default_hosts,
    load_self_signed,
    server_context,
)

__all__ = ["Gate", "KubeReviews", "ReviewError", "SecureMetricsServer", "serve_secure_metrics"]


def serve_secure_metrics(
    registry: CollectorRegistry,
    api: client.ApiClient,
    *,
    host: str,
    port: int,
    cert_dir: str = "",
    request_timeout: float = 30.0,
) -> SecureMetricsServer:
    """Start serving; raises OSError or ssl.SSLError when the port or certificate is bad."""
    context = server_context()
    certificate = None
    if cert_dir:
        certificate = CertificateFiles(Path(cert_dir))
        certificate.load(context)
    else:
        load_self_signed(context, default_hosts(host))
    gate = Gate(KubeReviews(api, timeout=request_timeout))
    return SecureMetricsServer(
        registry, gate, context, host=host, port=port, certificate=certificate
    )
