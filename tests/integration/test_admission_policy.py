"""The confused-deputy guard: pod-level powers in a TrainingJob only for those who may create
pods themselves (the chart's ValidatingAdmissionPolicy, templates/admission-policy.yaml).

The chart's policy and its aggregated roles are rendered with helm and applied to the
session's API server; users are impersonated (`kubectl --as`), so the API server's own
authorizer answers for them, as it would for a real user. What a user notices: with only the
chart's edit role for TrainingJobs, a job that names a ServiceAccount, reads a Secret or
mounts a host path is refused with a message naming the field, a plain job is admitted; a
user who may create pods is admitted for all of them.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from trainyard_local import binaries
from trainyard_local.pytest_plugin import Kubectl, wait_for

pytestmark = pytest.mark.usefixtures("crd_installed")

CHART = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "trainyard"
EDIT_ROLE = "trainyard-edit"  # the chart's aggregated role for TrainingJobs, release "trainyard"


@pytest.fixture(scope="module")
def chart_policy(kubeconfig: Path) -> Iterator[str]:
    rendered = subprocess.run(
        [
            str(binaries.binary("helm")),
            "template",
            "trainyard",
            str(CHART),
            f"--kube-version={binaries.kube_version()}",
            "--show-only=templates/admission-policy.yaml",
            "--show-only=templates/aggregated-roles.yaml",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    kubectl = [str(binaries.binary("kubectl")), f"--kubeconfig={kubeconfig}"]
    subprocess.run(
        [*kubectl, "apply", "-f", "-"],
        input=rendered,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    try:
        yield rendered
    finally:
        subprocess.run(
            [*kubectl, "delete", "--ignore-not-found", "-f", "-"],
            input=rendered,
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
        )


def job(name: str, **spec: Any) -> str:
    body = {
        "apiVersion": "trainyard.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {"workers": 1, "resources": {"cpu": "100m", "memory": "64Mi"}, **spec},
    }
    return json.dumps(body)


POWERS = {
    "service-account": (
        job("sa", podTemplate={"spec": {"serviceAccountName": "deployer"}}),
        "spec.podTemplate.spec.serviceAccountName",
    ),
    "secret-env": (
        job(
            "secret",
            env=[{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
        ),
        "spec.env[].valueFrom.secretKeyRef",
    ),
    "host-path": (
        job(
            "hostpath",
            podTemplate={"spec": {"volumes": [{"name": "root", "hostPath": {"path": "/"}}]}},
        ),
        "spec.podTemplate.spec.volumes[].hostPath",
    ),
}


def bind(kubectl: Kubectl, namespace: str, user: str, *, may_create_pods: bool) -> None:
    done = kubectl(
        "create",
        "rolebinding",
        f"{user}-jobs",
        f"--clusterrole={EDIT_ROLE}",
        f"--user={user}",
        "-n",
        namespace,
    )
    assert done.returncode == 0, done.stderr
    if may_create_pods:
        for args in (
            ("create", "role", "pod-creator", "--verb=create", "--resource=pods", "-n", namespace),
            (
                "create",
                "rolebinding",
                f"{user}-pods",
                "--role=pod-creator",
                f"--user={user}",
                "-n",
                namespace,
            ),
        ):
            done = kubectl(*args)
            assert done.returncode == 0, done.stderr


def submit(
    kubectl: Kubectl, namespace: str, user: str, manifest: str
) -> subprocess.CompletedProcess[str]:
    return kubectl(
        "create", "--dry-run=server", f"--as={user}", "-n", namespace, "-f", "-", input=manifest
    )


def test_pod_powers_need_the_right_to_create_pods(
    chart_policy: str, kubectl: Kubectl, namespace: str
) -> None:
    bind(kubectl, namespace, "alice", may_create_pods=False)
    bind(kubectl, namespace, "bob", may_create_pods=True)
    first, field = POWERS["service-account"]
    # the policy takes effect once the API server has loaded it
    wait_for(
        "the admission policy to refuse alice",
        lambda: field in submit(kubectl, namespace, "alice", first).stderr,
        timeout=120,
    )
    for case, (manifest, field) in POWERS.items():
        refused = submit(kubectl, namespace, "alice", manifest)
        assert refused.returncode != 0, f"{case}: admitted for alice"
        assert field in refused.stderr and "needs permission to create pods" in refused.stderr, (
            case,
            refused.stderr,
        )
        admitted = submit(kubectl, namespace, "bob", manifest)
        assert admitted.returncode == 0, (case, admitted.stderr)
    plain = submit(kubectl, namespace, "alice", job("plain"))
    assert plain.returncode == 0, plain.stderr
    # and alice really may not create pods herself: the policy closes a real gap
    can = kubectl("auth", "can-i", "create", "pods", "--as=alice", "-n", namespace)
    assert can.stdout.strip() == "no"
