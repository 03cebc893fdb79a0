"""pytest fixtures for tests against a real local control plane (test tooling).

Registered by tests/conftest.py (`pytest_plugins = ["trainyard_local.pytest_plugin"]`).
The fixture names are a contract other test suites use:

    local_cluster        session: LocalCluster, 2 CPU nodes + 2 GPU nodes x 8 nvidia.com/gpu,
                         fake agent, state under pytest's tmp dir; started on first use,
                         stopped at the end of the session
    local_cluster_factory  session: factory(name, *, cpu_nodes=1, gpu_nodes=0,
                         gpus_per_node=8, agent="fake") -> LocalCluster for more clusters
                         (e.g. a process-agent one for e2e), each stopped at the end
    kubeconfig           Path of the admin kubeconfig (system:masters: bypasses RBAC)
    api_client           kubernetes.client.ApiClient with admin rights
    namespace            a fresh namespace per test (default ServiceAccount ready), deleted after
    restricted_namespace the same, labelled pod-security.kubernetes.io/enforce=restricted
    sa_kubeconfig        factory (namespace, service_account) -> Path: a kubeconfig holding a
                         TokenRequest token, for code that must run without admin rights
                         (the ServiceAccount is created when missing)
    kubectl              factory (*args, kubeconfig=None, input=None) -> CompletedProcess[str]
                         running the pinned kubectl (admin kubeconfig unless given)

A test that uses `local_cluster` (directly or through another fixture) is marked
`integration`. `wait_for(what, probe)` polls until a probe holds. Missing binaries fail the
test with the command that builds them; they never skip it.
"""

from __future__ import annotations

import re
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from trainyard_local import binaries
from trainyard_local.cluster import LocalCluster
from trainyard_local.kubeconfig import write_token_kubeconfig

#: The session cluster's shape (GPU nodes hold 8 GPUs each, so 9 never fit on one node).
CPU_NODES = 2
GPU_NODES = 2
GPUS_PER_NODE = 8
RESTRICTED_LABEL = "pod-security.kubernetes.io/enforce"
_SA_TIMEOUT = 60.0


class Kubectl(Protocol):
    def __call__(
        self, *args: str, kubeconfig: Path | None = None, input: str | None = None
    ) -> subprocess.CompletedProcess[str]: ...


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        used = getattr(item, "fixturenames", ())
        if "local_cluster" in used or "local_cluster_factory" in used:
            item.add_marker(pytest.mark.integration)


class ClusterFactory(Protocol):
    def __call__(
        self,
        name: str,
        *,
        cpu_nodes: int = 1,
        gpu_nodes: int = 0,
        gpus_per_node: int = 8,
        agent: str = "fake",
    ) -> LocalCluster: ...


@pytest.fixture(scope="session")
def local_cluster_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterFactory]:
    """Start more clusters (e.g. `agent="process"` for e2e); one per name, stopped at the end."""
    clusters: dict[str, LocalCluster] = {}

    def make(
        name: str,
        *,
        cpu_nodes: int = 1,
        gpu_nodes: int = 0,
        gpus_per_node: int = 8,
        agent: str = "fake",
    ) -> LocalCluster:
        if name in clusters:
            return clusters[name]
        try:
            binaries.bin_dir()
        except binaries.BinariesMissingError as error:
            pytest.fail(str(error), pytrace=False)
        cluster = LocalCluster(
            name,
            tmp_path_factory.mktemp(f"cluster-{name}"),
            cpu_nodes=cpu_nodes,
            gpu_nodes=gpu_nodes,
            gpus_per_node=gpus_per_node,
            agent=agent,
            # if the test session is killed, the cluster goes with it
            tie_to_parent=True,
        )
        cluster.start()  # stops what it started if it fails
        clusters[name] = cluster
        return cluster

    try:
        yield make
    finally:
        for cluster in clusters.values():
            cluster.stop()


@pytest.fixture(scope="session")
def local_cluster(local_cluster_factory: ClusterFactory) -> LocalCluster:
    return local_cluster_factory(
        "pytest", cpu_nodes=CPU_NODES, gpu_nodes=GPU_NODES, gpus_per_node=GPUS_PER_NODE
    )


@pytest.fixture(scope="session")
def kubeconfig(local_cluster: LocalCluster) -> Path:
    return local_cluster.kubeconfig


def _api_client(path: Path) -> client.ApiClient:
    api: client.ApiClient = config.new_client_from_config(config_file=str(path))  # type: ignore[no-untyped-call]
    return api


@pytest.fixture(scope="session")
def api_client(kubeconfig: Path) -> Iterator[client.ApiClient]:
    api = _api_client(kubeconfig)
    try:
        yield api
    finally:
        api.close()  # type: ignore[no-untyped-call]


def _namespace_name(request: pytest.FixtureRequest) -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    return f"{slug or 't'}-{secrets.token_hex(3)}"


def wait_for(
    what: str, probe: Callable[[], object], timeout: float = 60.0, interval: float = 0.2
) -> object:
    """Call `probe` until it returns something truthy and return that; fail after `timeout`.

    The timeout only bounds a hung test; it asserts nothing about speed.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}", pytrace=False)
        time.sleep(interval)


def wait_for_service_account(
    core: client.CoreV1Api, namespace: str, name: str = "default", timeout: float = _SA_TIMEOUT
) -> None:
    """Pods are only admitted once their ServiceAccount exists (the controller makes it)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            core.read_namespaced_service_account(name, namespace, _preload_content=False)
            return
        except ApiException as error:
            if error.status != 404 or time.monotonic() > deadline:
                raise
        time.sleep(0.1)


def _make_namespace(
    api_client: client.ApiClient, request: pytest.FixtureRequest, labels: dict[str, str]
) -> Iterator[str]:
    core = client.CoreV1Api(api_client)
    name = _namespace_name(request)
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels or None))
    )
    wait_for_service_account(core, name)
    try:
        yield name
    finally:
        # not waited for: the namespace controller finishes in the background
        try:
            core.delete_namespace(name, _preload_content=False)
        except ApiException as error:
            if error.status != 404:
                raise


@pytest.fixture
def namespace(api_client: client.ApiClient, request: pytest.FixtureRequest) -> Iterator[str]:
    yield from _make_namespace(api_client, request, {})


@pytest.fixture
def restricted_namespace(
    api_client: client.ApiClient, request: pytest.FixtureRequest
) -> Iterator[str]:
    yield from _make_namespace(api_client, request, {RESTRICTED_LABEL: "restricted"})


@pytest.fixture
def sa_kubeconfig(
    local_cluster: LocalCluster, api_client: client.ApiClient, tmp_path: Path
) -> Callable[[str, str], Path]:
    core = client.CoreV1Api(api_client)

    def make(namespace: str, service_account: str) -> Path:
        try:
            core.create_namespaced_service_account(
                namespace,
                client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=service_account)),
            )
        except ApiException as error:
            if error.status != 409:
                raise
        request = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
        )
        answer = core.create_namespaced_service_account_token(service_account, namespace, request)
        if answer.status is None or not answer.status.token:
            raise RuntimeError(f"TokenRequest for {namespace}/{service_account} returned no token")
        return write_token_kubeconfig(
            tmp_path / f"{namespace}-{service_account}.kubeconfig",
            name=f"{namespace}-{service_account}",
            server=local_cluster.server,
            ca_cert=local_cluster.pki.ca_cert,
            token=answer.status.token,
            namespace=namespace,
        )

    return make


@pytest.fixture
def kubectl(kubeconfig: Path) -> Kubectl:
    try:
        kubectl_bin = binaries.binary("kubectl")
    except binaries.BinariesMissingError as error:
        pytest.fail(str(error), pytrace=False)

    def run(
        *args: str, kubeconfig: Path | None = None, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(kubectl_bin), f"--kubeconfig={kubeconfig or admin}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    admin = kubeconfig
    return run
