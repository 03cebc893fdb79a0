"""With TRAINYARD_METRICS_AUTH the operator's /metrics is HTTPS and answers only whom the API
server vouches for: 401 without a token or with one it does not accept, 403 for a
ServiceAccount that may not `get` the non-resource URL /metrics, the metrics for one that may.

Real reviews throughout: the operator runs under its ServiceAccount with the chart's
files/metrics-auth-rules.yaml bound cluster-wide (the only rules it gets for them), and the
scrapers' tokens come from the TokenRequest API. A mounted certificate is verified by its CA,
and a renewed one is served without a restart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from cryptography import x509
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from prometheus_client.parser import text_string_to_metric_families

from integration.operator_fixtures import wait_for, wait_until_authorized
from trainyard_local.operator_process import OperatorProcess
from unit.test_metrics_server import issue_serving_pair, trusting

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy/helm/trainyard/files/metrics-auth-rules.yaml"
#: what the chart's <fullname>-metrics-reader ClusterRole grants (test_helm_chart checks it)
READER_RULES = [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]
ROLE_REF = {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole"}


def _service_account(namespace: str, name: str) -> dict[str, str]:
    return {"kind": "ServiceAccount", "name": name, "namespace": namespace}


def _delete_cluster_rbac(rbac: client.RbacAuthorizationV1Api, name: str) -> None:
    for delete in (rbac.delete_cluster_role_binding, rbac.delete_cluster_role):
        try:
            delete(name)
        except ApiException as err:
            if err.status != 404:
                raise


@pytest.fixture
def cluster_roles(api_client: client.ApiClient) -> Iterator[Callable[..., str]]:
    """Make a ClusterRole and its ClusterRoleBinding (same name); deleted after the test."""
    rbac = client.RbacAuthorizationV1Api(api_client)
    made: list[str] = []

    def bind(name: str, rules: list[dict[str, object]], subject: dict[str, str]) -> str:
        made.append(name)
        rbac.create_cluster_role({"metadata": {"name": name}, "rules": rules})
        rbac.create_cluster_role_binding(
            {
                "metadata": {"name": name},
                "roleRef": {**ROLE_REF, "name": name},
                "subjects": [subject],
            }
        )
        return name

    yield bind
    for name in made:
        _delete_cluster_rbac(rbac, name)


@pytest.fixture
def metrics_auth_rules(
    api_client: client.ApiClient, namespace: str, cluster_roles: Callable[..., str]
) -> None:
    """The operator's ServiceAccount holds exactly files/metrics-auth-rules.yaml."""
    cluster_roles(
        f"metrics-auth-{namespace}",
        yaml.safe_load(RULES.read_text()),
        _service_account(namespace, "trainyard-operator"),
    )
    for group, resource in (
        ("authentication.k8s.io", "tokenreviews"),
        ("authorization.k8s.io", "subjectaccessreviews"),
    ):
        wait_until_authorized(
            api_client, namespace, cluster_wide=True, verb="create", group=group, resource=resource
        )


def _token(api_client: client.ApiClient, namespace: str, name: str) -> str:
    """A fresh ServiceAccount and a token of it from the TokenRequest API."""
    core = client.CoreV1Api(api_client)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": name}})
    request = {"spec": {"audiences": [], "expirationSeconds": 3600}}
    answer = core.create_namespaced_service_account_token(name, namespace, request)
    assert answer.status is not None and answer.status.token
    token: str = answer.status.token
    return token


def _may_get_metrics(api_client: client.ApiClient, namespace: str, name: str) -> bool:
    review = {
        "spec": {
            "user": f"system:serviceaccount:{namespace}:{name}",
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"],
            "nonResourceAttributes": {"path": "/metrics", "verb": "get"},
        }
    }
    answer = client.AuthorizationV1Api(api_client).create_subject_access_review(review)
    return bool(answer.status and answer.status.allowed)


@pytest.fixture
def reader_token(
    api_client: client.ApiClient, namespace: str, cluster_roles: Callable[..., str]
) -> str:
    """The token of `prometheus`, bound to a ClusterRole that may get /metrics."""
    token = _token(api_client, namespace, "prometheus")
    cluster_roles(
        f"metrics-reader-{namespace}", READER_RULES, _service_account(namespace, "prometheus")
    )
    wait_for(
        "prometheus's binding to take effect",
        lambda: _may_get_metrics(api_client, namespace, "prometheus"),
    )
    return token


def _https_url(operator: OperatorProcess) -> str:
    return f"https://127.0.0.1:{operator.metrics_port}/metrics"


def _get(http: httpx.Client, url: str, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return http.get(url, headers=headers, timeout=30.0)


def _families(text: str) -> set[str]:
    return {family.name for family in text_string_to_metric_families(text)}


def test_only_tokens_allowed_to_get_metrics_are_answered(
    operator_factory: Callable[..., OperatorProcess],
    metrics_auth_rules: None,
    reader_token: str,
    api_client: client.ApiClient,
    namespace: str,
) -> None:
    operator = operator_factory(TRAINYARD_METRICS_AUTH="true")
    url = _https_url(operator)
    outsider = _token(api_client, namespace, "outsider")

    # the certificate is self-signed at start-up: nothing to verify it against
    with httpx.Client(verify=False) as http:
        anonymous = _get(http, url)
        assert anonymous.status_code == 401, anonymous.text
        assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
        assert "trainyard_" not in anonymous.text
        bogus = _get(http, url, "not-a-token")
        assert bogus.status_code == 401, bogus.text

        refused = _get(http, url, outsider)
        assert refused.status_code == 403, refused.text
        assert f"system:serviceaccount:{namespace}:outsider" in refused.text
        assert "trainyard_" not in refused.text

        for _ in range(2):  # the second answer comes from the cache; it must be the same
            allowed = _get(http, url, reader_token)
            assert allowed.status_code == 200, allowed.text
            assert {"trainyard_operator_leader", "trainyard_jobs"} <= _families(allowed.text)

        # no plain HTTP on the metrics port any more
        with pytest.raises(httpx.HTTPError):
            httpx.get(operator.metrics_url, timeout=10.0)

        # a revoked right stops working once the cached answer expires
        client.RbacAuthorizationV1Api(api_client).delete_cluster_role_binding(
            f"metrics-reader-{namespace}"
        )
        wait_for(
            "the revoked reader to be refused",
            lambda: _get(http, url, reader_token).status_code == 403,
            timeout=120,
            interval=1.0,
        )
    assert "not-a-token" not in operator.log_tail(400)
    assert outsider not in operator.log_tail(400)
    assert reader_token not in operator.log_tail(400)


def test_without_the_review_rules_no_one_gets_the_metrics(
    operator_factory: Callable[..., OperatorProcess], reader_token: str
) -> None:
    # the operator's own rules (operator-rules.yaml) hold no reviews: these come from
    # metrics-auth-rules.yaml alone, and without them the endpoint fails closed
    operator = operator_factory(TRAINYARD_METRICS_AUTH="true")
    with httpx.Client(verify=False) as http:
        answer = _get(http, _https_url(operator), reader_token)
    assert answer.status_code == 500, answer.text
    assert "trainyard_" not in answer.text
    assert "metrics-auth-rules.yaml" in operator.log_tail(40)


def _verified(ca: x509.Certificate, url: str, token: str) -> bool:
    """True when the server's certificate chains to `ca` and the answer is 200."""
    try:
        with httpx.Client(verify=trusting(ca)) as http:
            return _get(http, url, token).status_code == 200
    except httpx.ConnectError:  # certificate verify failed
        return False


def test_a_mounted_certificate_is_verified_and_a_renewed_one_is_served(
    operator_factory: Callable[..., OperatorProcess],
    metrics_auth_rules: None,
    reader_token: str,
    tmp_path: Path,
) -> None:
    cert_dir = tmp_path / "metrics-tls"
    cert_dir.mkdir()
    first_ca = issue_serving_pair(cert_dir, "first-ca")
    operator = operator_factory(
        TRAINYARD_METRICS_AUTH="true", TRAINYARD_METRICS_CERT_DIR=str(cert_dir)
    )
    url = _https_url(operator)
    assert _verified(first_ca, url, reader_token)

    second_ca = issue_serving_pair(cert_dir, "second-ca")
    wait_for(
        "the renewed certificate to be served",
        lambda: _verified(second_ca, url, reader_token),
        timeout=120,
        interval=1.0,
    )
    assert not _verified(first_ca, url, reader_token)
