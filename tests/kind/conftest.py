"""The kind suite's cluster: Trainyard as users run it, built and torn down once per module.

`kind_path` goes through `trainyard_local.kind.KindPath.up()` — the same steps as
`make demo-kind`: host set-up where needed, the node image, both images from the
Dockerfiles, a kind cluster of one control plane and two workers, `kind load`, and
`helm upgrade --install` with the operator in its pod. At the end the cluster is deleted and
the teardown fails if any kind cluster or node container of ours is left behind. The
fixtures are module-scoped (the suite is one module) so the cluster, its 18 GB of disk and its
three nodes' control plane go as soon as the kind tests end, not when the whole `make test`
session does.

TRAINYARD_KIND_REUSE=1 (for working on the suite) keeps the cluster between runs: an existing
one is reused (images rebuilt and loaded again, the chart upgraded) and nothing is deleted.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest
from kubernetes import client, config
from rich.console import Console

from kind.kubectl import Kubectl
from trainyard_local.demo import RESTRICTED, ensure_namespace
from trainyard_local.kind import KindError, KindPath, state_home

CLUSTER = "trainyard-test"


@pytest.fixture(scope="module")
def kind_path() -> Iterator[KindPath]:
    path = KindPath(name=CLUSTER, home=state_home(), console=Console(stderr=True))
    reuse = bool(os.environ.get("TRAINYARD_KIND_REUSE"))
    if not reuse:
        path.delete()  # a cluster left by an interrupted run would hide what this one builds
    try:
        path.up()
    except KindError as error:
        if not reuse:
            path.delete()
        pytest.fail(str(error), pytrace=False)
    try:
        yield path
    finally:
        if not reuse:
            _delete_and_check(path)


def _delete_and_check(path: KindPath) -> None:
    path.delete()
    clusters = subprocess.run(
        [path.kind_binary, "get", "clusters"], capture_output=True, text=True, check=True
    ).stdout.split()
    containers = subprocess.run(
        ["docker", "ps", "-a", "-q", "--filter", f"label=io.x-k8s.kind.cluster={CLUSTER}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert CLUSTER not in clusters and not containers, (
        f"left behind: clusters {clusters}, containers {containers}"
    )


@pytest.fixture(scope="module")
def kind_api(kind_path: KindPath) -> Iterator[client.ApiClient]:
    api: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(kind_path.kubeconfig)
    )
    with api:
        yield api


@pytest.fixture(scope="module")
def kind_kubectl(kind_path: KindPath) -> Kubectl:
    return Kubectl(kind_path.kubeconfig)


@pytest.fixture(scope="module")
def jobs_namespace(kind_path: KindPath) -> str:
    """A namespace that enforces the restricted Pod Security profile, as the demo's does."""
    ensure_namespace(kind_path.kubeconfig, "kind-jobs", RESTRICTED)
    return "kind-jobs"
