"""The local control plane decides like a real cluster: version, RBAC, garbage collection and
Pod Security admission, all answered by the real kube-apiserver and kube-controller-manager
that `local_cluster` (trainyard_local.pytest_plugin) starts."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from trainyard_local.binaries import kube_version
from trainyard_local.cluster import LocalCluster
from trainyard_local.pytest_plugin import wait_for

pytestmark = pytest.mark.integration


def pod(name: str, **spec: Any) -> dict[str, Any]:
    container = {"name": "main", "image": "example.com/app:1", **spec.pop("container", {})}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, **spec.pop("metadata", {})},
        "spec": {"restartPolicy": "Never", "containers": [container], **spec},
    }


def test_version_reports_the_pinned_release(local_cluster: LocalCluster) -> None:
    with local_cluster.http() as http:
        version = http.get("/version").json()
    assert version["gitVersion"] == kube_version()


def test_service_account_needs_a_role_binding_to_list_pods(
    api_client: client.ApiClient, namespace: str, sa_kubeconfig: Callable[[str, str], Path]
) -> None:
    path = sa_kubeconfig(namespace, "reader")
    reader = client.CoreV1Api(config.new_client_from_config(config_file=str(path)))

    with pytest.raises(ApiException) as denied:
        reader.list_namespaced_pod(namespace)
    assert denied.value.status == 403
    assert f"system:serviceaccount:{namespace}:reader" in str(denied.value.body)

    rbac = client.RbacAuthorizationV1Api(api_client)
    rbac.create_namespaced_role(
        namespace,
        {
            "metadata": {"name": "pod-reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
        },
    )
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "reader-reads-pods"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "pod-reader",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
        },
    )

    def allowed() -> bool:
        try:
            reader.list_namespaced_pod(namespace)
        except ApiException as error:
            if error.status == 403:  # the authorizer's cache has not seen the binding yet
                return False
            raise
        return True

    wait_for("the RoleBinding to take effect", allowed)
    # the binding grants pods only
    with pytest.raises(ApiException) as still_denied:
        reader.list_namespaced_secret(namespace)
    assert still_denied.value.status == 403


def test_deleting_the_owner_garbage_collects_the_pod(
    api_client: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api_client)
    owner = core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "owner"}, "data": {"k": "v"}}
    )
    assert owner.metadata is not None
    owned = pod(
        "owned",
        metadata={
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "name": "owner",
                    "uid": owner.metadata.uid,
                }
            ]
        },
    )
    core.create_namespaced_pod(namespace, owned)
    core.create_namespaced_pod(namespace, pod("bystander"))

    core.delete_namespaced_config_map("owner", namespace)

    def owned_gone() -> bool:
        names = {p.metadata.name for p in core.list_namespaced_pod(namespace).items if p.metadata}
        return "owned" not in names

    wait_for("the garbage collector to delete the owned pod", owned_gone)
    assert core.read_namespaced_pod("bystander", namespace).metadata is not None


def test_restricted_namespace_rejects_a_privileged_pod(
    api_client: client.ApiClient, restricted_namespace: str
) -> None:
    core = client.CoreV1Api(api_client)
    with pytest.raises(ApiException) as rejected:
        core.create_namespaced_pod(
            restricted_namespace,
            pod("root", container={"securityContext": {"privileged": True}}),
        )
    assert rejected.value.status == 403
    message = json.loads(rejected.value.body)["message"]
    assert 'violates PodSecurity "restricted:' in message
    assert 'privileged (container "main" must not set securityContext.privileged=true)' in message

    compliant = pod(
        "compliant",
        securityContext={
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        container={
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"]},
            }
        },
    )
    created = core.create_namespaced_pod(restricted_namespace, compliant)
    assert created.metadata is not None and created.metadata.name == "compliant"
