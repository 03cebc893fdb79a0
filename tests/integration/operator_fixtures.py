"""Fixtures for the operator's integration tests: the operator under its own RBAC, and a
small client for TrainingJobs and their pods.

Registered through `pytest_plugins` in tests/conftest.py. Fixtures:

    operator_rules   session: the ClusterRole `trainyard-operator-test` holding exactly the
                     rules of deploy/helm/trainyard/files/operator-rules.yaml
    operator         an `OperatorProcess` watching the test's `namespace`, authenticated as the
                     ServiceAccount `trainyard-operator` bound to those rules (never admin);
                     its log is printed when the test fails
    operator_factory the same, as a factory (start(), restart after a kill); keyword
                     arguments add TRAINYARD_* settings to its environment
    jobs             `Jobs`: create TrainingJobs, read status, pods, events in `namespace`

Helpers: `wait_for` (re-exported from trainyard_local's plugin), `condition(status, type)`,
`wait_until_authorized` (a new binding has reached the API server's authorizer).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from trainyard_local import binaries
from trainyard_local.operator_process import OperatorProcess
from trainyard_local.pytest_plugin import wait_for
from trainyard_operator.api.constants import GROUP, LABEL_JOB_NAME, PLURAL, VERSION

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy/helm/trainyard/files/operator-rules.yaml"
ROLE = "trainyard-operator-test"
SERVICE_ACCOUNT = "trainyard-operator"

__all__ = ["Jobs", "condition", "wait_for", "wait_until_authorized"]


def condition(status: dict[str, Any], kind: str) -> dict[str, Any] | None:
    """The status condition of this type, if any."""
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind), None)


class Jobs:
    """TrainingJobs, their pods and events in one namespace, through the admin client."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.namespace = namespace
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)

    def create(
        self, name: str, *, pod_annotations: dict[str, str] | None = None, **spec: Any
    ) -> dict[str, Any]:
        """Create a TrainingJob; keyword arguments are spec fields (camelCase)."""
        spec = {"resources": {"cpu": "10m", "memory": "32Mi"}, **spec}
        if pod_annotations:
            spec["podTemplate"] = {"metadata": {"annotations": pod_annotations}}
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "TrainingJob",
            "metadata": {"name": name},
            "spec": spec,
        }
        return self.apply(body)

    def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        created: dict[str, Any] = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, manifest
        )
        return created

    def get(self, name: str) -> dict[str, Any] | None:
        try:
            response = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, name, _preload_content=False
            )
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        data: dict[str, Any] = json.loads(response.data)
        return data

    def status(self, name: str) -> dict[str, Any]:
        job = self.get(name)
        return (job or {}).get("status") or {}

    def patch_spec(self, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, {"spec": spec}
        )

    def delete(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, propagation_policy="Background"
        )

    def pods(self, name: str) -> list[dict[str, Any]]:
        """The job's worker pods (every attempt), sorted by name."""
        response = self.core.list_namespaced_pod(
            self.namespace, label_selector=f"{LABEL_JOB_NAME}={name}", _preload_content=False
        )
        items: list[dict[str, Any]] = json.loads(response.data)["items"]
        return sorted(items, key=lambda p: p["metadata"]["name"])

    def pod_phases(self, name: str) -> list[str]:
        return [p.get("status", {}).get("phase", "") for p in self.pods(name)]

    def annotate_pod(self, pod: str, annotations: dict[str, str]) -> None:
        self.core.patch_namespaced_pod(
            pod, self.namespace, {"metadata": {"annotations": annotations}}
        )

    def events(self, name: str) -> list[tuple[str, str, str]]:
        """(type, reason, message) of the events on the TrainingJob, oldest first."""
        response = self.core.list_namespaced_event(
            self.namespace,
            field_selector=f"involvedObject.name={name},involvedObject.kind=TrainingJob",
            _preload_content=False,
        )
        items = json.loads(response.data)["items"]
        items.sort(key=lambda e: (e.get("firstTimestamp") or "", e["metadata"]["name"]))
        return [(e["type"], e["reason"], e.get("message", "")) for e in items]

    def reasons(self, name: str) -> list[str]:
        return [reason for _, reason, _ in self.events(name)]

    def wait_event(self, name: str, reason: str, timeout: float = 60.0) -> tuple[str, str, str]:
        """Wait for an event with this reason on the job (posted right after the status)."""

        def probe() -> tuple[str, str, str] | None:
            return next((e for e in self.events(name) if e[1] == reason), None)

        event = wait_for(f"event {reason} on {name}", probe, timeout=timeout)
        assert isinstance(event, tuple)
        return event

    def wait_phase(self, name: str, phase: str, timeout: float = 60.0) -> dict[str, Any]:
        """Wait until status.phase is `phase`; returns the status."""

        def probe() -> dict[str, Any] | None:
            status = self.status(name)
            return status if status.get("phase") == phase else None

        status = wait_for(f"{self.namespace}/{name} to reach phase {phase}", probe, timeout=timeout)
        assert isinstance(status, dict)
        return status

    def wait_pods(
        self,
        name: str,
        count: int,
        phase: str = "Running",
        restart: int | None = None,
        timeout: float = 60.0,
    ) -> list[dict[str, Any]]:
        """Wait until exactly `count` pods exist, all in `phase` (and of attempt `restart`)."""

        def probe() -> bool:
            pods = self.pods(name)
            if len(pods) != count:
                return False
            for pod in pods:
                if pod.get("status", {}).get("phase") != phase:
                    return False
                label = pod["metadata"]["labels"].get("trainyard.dev/restart")
                if restart is not None and label != str(restart):
                    return False
            return True

        wait_for(f"{count} {phase} pods of {name}", probe, timeout=timeout)
        return self.pods(name)


@pytest.fixture(scope="session")
def operator_rules(api_client: client.ApiClient, crd_installed: object) -> str:
    """The test ClusterRole, made from the one rules file the Helm chart uses too."""
    rbac = client.RbacAuthorizationV1Api(api_client)
    rules = yaml.safe_load(RULES.read_text())
    body = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": ROLE},
        "rules": rules,
    }
    try:
        rbac.create_cluster_role(body)
    except ApiException as err:
        if err.status != 409:
            raise
        rbac.replace_cluster_role(ROLE, body)
    return ROLE


@pytest.fixture
def operator_factory(
    namespace: str,
    api_client: client.ApiClient,
    sa_kubeconfig: Callable[[str, str], Path],
    operator_rules: str,
    tmp_path: Path,
) -> Iterator[Callable[[], OperatorProcess]]:
    """Start operators for `namespace` as its ServiceAccount `trainyard-operator`."""
    kubeconfig = sa_kubeconfig(namespace, SERVICE_ACCOUNT)
    client.RbacAuthorizationV1Api(api_client).create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "trainyard-operator"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": operator_rules,
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": namespace}
            ],
        },
    )
    wait_until_authorized(api_client, namespace)
    started: list[OperatorProcess] = []

    def start(**env: str) -> OperatorProcess:
        process = OperatorProcess(
            kubeconfig,
            [namespace],
            log_path=tmp_path / f"operator-{len(started)}.log",
            # Read trainer metrics every second, so progress tests need not wait long.
            env={"TRAINYARD_PROGRESS_INTERVAL_SECONDS": "1", **env},
        )
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.stop()
        print(f"--- {process.log_path}\n{process.log_tail(60)}")


@pytest.fixture
def operator(operator_factory: Callable[[], OperatorProcess]) -> OperatorProcess:
    return operator_factory()


@pytest.fixture
def jobs(api_client: client.ApiClient, namespace: str, crd_installed: object) -> Jobs:
    return Jobs(api_client, namespace)


def wait_until_authorized(
    api: client.ApiClient,
    namespace: str,
    service_account: str = SERVICE_ACCOUNT,
    *,
    cluster_wide: bool = False,
    verb: str = "watch",
    group: str = GROUP,
    resource: str = PLURAL,
) -> None:
    """RBAC reaches the API server's authorizer cache a moment after the binding is made.

    Waits until the ServiceAccount may `verb` the resource (by default: watch TrainingJobs)
    in `namespace` (in every namespace with `cluster_wide`, as a ClusterRoleBinding grants).
    """
    authz = client.AuthorizationV1Api(api)
    review = {
        "spec": {
            "user": f"system:serviceaccount:{namespace}:{service_account}",
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"],
            "resourceAttributes": {
                "namespace": "" if cluster_wide else namespace,
                "verb": verb,
                "group": group,
                "resource": resource,
            },
        }
    }

    def allowed() -> bool:
        answer = authz.create_subject_access_review(review)
        return bool(answer.status and answer.status.allowed)

    wait_for(f"{service_account}'s binding to take effect", allowed, timeout=60)


@pytest.fixture(scope="session")
def crd_installed(kubeconfig: Path) -> object:
    """The TrainingJob CRD from crds/, established (tests/integration/conftest.py defines
    its own for that folder)."""
    crd = ROOT / "crds" / "trainyard.dev_trainingjobs.yaml"
    kubectl = [str(binaries.binary("kubectl")), f"--kubeconfig={kubeconfig}"]
    for args in (
        ["apply", "--server-side", "--force-conflicts", "-f", str(crd)],
        ["wait", "--for=condition=Established", "--timeout=60s", f"crd/{PLURAL}.{GROUP}"],
    ):
        done = subprocess.run([*kubectl, *args], capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
    return True
