"""`helm install / upgrade / uninstall` of the chart against a real local API server.

The chart installs a cluster-scoped CRD, and uninstalling with `crds.keep=false` deletes it,
which would wipe the TrainingJobs of every other test sharing the session cluster. So these
tests start their own small cluster (fake agent: the operator pod "runs" by annotation rules,
which is enough for `helm --wait`, RBAC and Pod Security admission to decide for real).

What a user notices: the release installs into a namespace enforcing the restricted Pod
Security profile and becomes ready; its ServiceAccount may do what the operator needs and
nothing more; namespace users with `view`/`edit` can read/submit TrainingJobs; an upgrade
changes the operator's settings; uninstall leaves no object carrying the release's labels
(the CRD stays only when `crds.keep` asks for it, as documented in values.yaml).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from trainyard_local import binaries
from trainyard_local.cluster import LocalCluster

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "trainyard"
CRD = "trainingjobs.trainyard.dev"


@pytest.fixture(scope="module")
def helm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    try:
        binaries.bin_dir(need=binaries.ALL)
    except binaries.BinariesMissingError as error:
        pytest.fail(str(error), pytrace=False)
    cluster = LocalCluster(
        f"helm-{secrets.token_hex(3)}",
        state_dir=tmp_path_factory.mktemp("helm-cluster"),
        cpu_nodes=1,
        gpu_nodes=0,
        agent="fake",
        tie_to_parent=True,
    )
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def run(cluster: LocalCluster, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binaries.binary(tool)), f"--kubeconfig={cluster.kubeconfig}", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def ok(cluster: LocalCluster, tool: str, *args: str) -> str:
    done = run(cluster, tool, *args)
    assert done.returncode == 0, f"{tool} {' '.join(args)}:\n{done.stdout}{done.stderr}"
    return done.stdout


def restricted_namespace(cluster: LocalCluster, name: str) -> None:
    ok(cluster, "kubectl", "create", "namespace", name)
    ok(
        cluster,
        "kubectl",
        "label",
        "namespace",
        name,
        "pod-security.kubernetes.io/enforce=restricted",
    )


def can_i(cluster: LocalCluster, who: str, *args: str) -> bool:
    done = run(cluster, "kubectl", "auth", "can-i", *args, f"--as={who}")
    return done.stdout.strip() == "yes"


def leftovers(cluster: LocalCluster, release: str) -> list[str]:
    """Every object of any listable kind that carries the release's instance label."""
    names = ok(cluster, "kubectl", "api-resources", "--verbs=list", "-o", "name").split()
    skip = {"events", "events.events.k8s.io"}
    kinds = ",".join(n for n in names if n not in skip)
    out = ok(
        cluster,
        "kubectl",
        "get",
        kinds,
        "--all-namespaces",
        f"--selector=app.kubernetes.io/instance={release}",
        "-o",
        "name",
        "--ignore-not-found",
    )
    return out.split()


def wait_until(what: str, probe: object, timeout: float = 90) -> None:
    assert callable(probe)
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}", pytrace=False)
        time.sleep(0.5)


def test_install_upgrade_uninstall_leaves_nothing_behind(helm_cluster: LocalCluster) -> None:
    release, namespace = "ty", "trainyard-system"
    restricted_namespace(helm_cluster, namespace)
    ok(
        helm_cluster,
        "helm",
        "install",
        release,
        str(CHART),
        f"--namespace={namespace}",
        "--set=crds.keep=false",
        "--wait",
        "--timeout=3m",
    )
    # the operator pod was admitted under the restricted profile and is available
    deployment = json.loads(
        ok(
            helm_cluster,
            "kubectl",
            "-n",
            namespace,
            "get",
            "deploy/ty-trainyard-operator",
            "-o",
            "json",
        )
    )
    assert deployment["status"].get("availableReplicas") == 1
    ok(helm_cluster, "kubectl", "wait", "--for=condition=Established", f"crd/{CRD}")

    # least privilege: what the operator needs, and not more
    operator = f"system:serviceaccount:{namespace}:ty-trainyard"
    assert can_i(helm_cluster, operator, "create", "pods", "-n", "any-ns")
    assert can_i(
        helm_cluster,
        operator,
        "patch",
        "trainingjobs.trainyard.dev",
        "--subresource=status",
        "-n",
        "x",
    )
    assert can_i(helm_cluster, operator, "watch", "trainingjobs.trainyard.dev", "--all-namespaces")
    assert not can_i(helm_cluster, operator, "get", "secrets", "-n", namespace)
    assert not can_i(helm_cluster, operator, "update", "trainingjobs.trainyard.dev", "-n", "x")
    assert not can_i(helm_cluster, operator, "delete", "nodes")

    # the aggregated roles reach namespace users through the built-in view and edit roles
    ok(helm_cluster, "kubectl", "create", "namespace", "team")
    ok(
        helm_cluster,
        "kubectl",
        "-n",
        "team",
        "create",
        "rolebinding",
        "v",
        "--clusterrole=view",
        "--user=viewer",
    )
    ok(
        helm_cluster,
        "kubectl",
        "-n",
        "team",
        "create",
        "rolebinding",
        "e",
        "--clusterrole=edit",
        "--user=editor",
    )
    wait_until(
        "aggregated roles",
        lambda: (
            can_i(helm_cluster, "viewer", "list", "trainingjobs.trainyard.dev", "-n", "team")
            and can_i(helm_cluster, "editor", "create", "trainingjobs.trainyard.dev", "-n", "team")
        ),
    )
    assert not can_i(helm_cluster, "viewer", "create", "trainingjobs.trainyard.dev", "-n", "team")

    # upgrade: a changed value reaches the operator's Deployment
    ok(
        helm_cluster,
        "helm",
        "upgrade",
        release,
        str(CHART),
        f"--namespace={namespace}",
        "--reuse-values",
        "--set=operator.logLevel=DEBUG",
        "--wait",
        "--timeout=3m",
    )
    env = json.loads(
        ok(
            helm_cluster,
            "kubectl",
            "-n",
            namespace,
            "get",
            "deploy/ty-trainyard-operator",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].env}",
        )
    )
    assert {"name": "TRAINYARD_LOG_LEVEL", "value": "DEBUG"} in env
    history = json.loads(
        ok(helm_cluster, "helm", "history", release, "-n", namespace, "-o", "json")
    )
    assert [entry["revision"] for entry in history] == [1, 2]

    installed = leftovers(helm_cluster, release)
    assert f"deployment.apps/{release}-trainyard-operator" in installed
    assert f"clusterrole.rbac.authorization.k8s.io/{release}-trainyard-operator" in installed
    ok(helm_cluster, "helm", "uninstall", release, f"--namespace={namespace}", "--wait")
    wait_until("no object labelled with the release", lambda: not leftovers(helm_cluster, release))
    assert run(helm_cluster, "kubectl", "get", f"crd/{CRD}").returncode != 0


def test_default_uninstall_keeps_only_the_crd(helm_cluster: LocalCluster) -> None:
    release, namespace = "kept", "trainyard-kept"
    restricted_namespace(helm_cluster, namespace)
    ok(helm_cluster, "helm", "install", release, str(CHART), f"--namespace={namespace}", "--wait")
    ok(helm_cluster, "helm", "uninstall", release, f"--namespace={namespace}", "--wait")
    wait_until("no object labelled with the release", lambda: not leftovers(helm_cluster, release))
    # crds.keep=true (the default): TrainingJobs survive an uninstall; documented in values.yaml
    crd = json.loads(ok(helm_cluster, "kubectl", "get", f"crd/{CRD}", "-o", "json"))
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    ok(helm_cluster, "kubectl", "delete", f"crd/{CRD}", "--wait")


def test_watched_namespaces_limit_the_operator_to_them(helm_cluster: LocalCluster) -> None:
    release, namespace = "scoped", "trainyard-scoped"
    restricted_namespace(helm_cluster, namespace)
    for team in ("team-a", "team-b"):
        run(helm_cluster, "kubectl", "create", "namespace", team)
    ok(
        helm_cluster,
        "helm",
        "install",
        release,
        str(CHART),
        f"--namespace={namespace}",
        "--set=crds.keep=false",
        "--set=operator.namespaces={team-a}",
        "--wait",
    )
    operator = f"system:serviceaccount:{namespace}:scoped-trainyard"
    assert can_i(helm_cluster, operator, "create", "pods", "-n", "team-a")
    assert can_i(helm_cluster, operator, "watch", "trainingjobs.trainyard.dev", "-n", "team-a")
    assert not can_i(helm_cluster, operator, "create", "pods", "-n", "team-b")
    assert not can_i(
        helm_cluster, operator, "watch", "trainingjobs.trainyard.dev", "--all-namespaces"
    )
    ok(helm_cluster, "helm", "uninstall", release, f"--namespace={namespace}", "--wait")
    wait_until("no object labelled with the release", lambda: not leftovers(helm_cluster, release))
