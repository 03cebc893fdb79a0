"""Gang scheduling: when the cluster serves scheduler-plugins' PodGroup API the operator puts
each job's workers into one PodGroup (minMember = every worker); without any PodGroup API a
job that insists on gang scheduling is told so by a warning event."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from integration.operator_fixtures import Jobs, wait_for
from trainyard_local.operator_process import OperatorProcess

pytestmark = pytest.mark.integration

GROUP, VERSION, PLURAL = "scheduling.x-k8s.io", "v1alpha1", "podgroups"
CRD_NAME = f"{PLURAL}.{GROUP}"
# Just enough of scheduler-plugins' PodGroup CRD for the API server to serve the resource.
POD_GROUP_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": CRD_NAME},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": PLURAL, "singular": "podgroup", "kind": "PodGroup"},
        "versions": [
            {
                "name": VERSION,
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
            }
        ],
    },
}


@pytest.fixture
def pod_group_api(api_client: client.ApiClient) -> Iterator[None]:
    """scheduler-plugins' PodGroup CRD, installed for one test and removed after it."""
    ext = client.ApiextensionsV1Api(api_client)
    ext.create_custom_resource_definition(POD_GROUP_CRD)

    def served() -> bool:
        try:
            client.CustomObjectsApi(api_client).get_api_resources(GROUP, VERSION)
        except ApiException:
            return False
        return True

    wait_for("the PodGroup API to be served", served)
    yield
    ext.delete_custom_resource_definition(CRD_NAME)
    wait_for("the PodGroup API to go", lambda: not served())


def test_workers_join_one_pod_group_when_the_api_exists(
    pod_group_api: None,
    operator_factory: Callable[[], OperatorProcess],
    jobs: Jobs,
    api_client: client.ApiClient,
) -> None:
    operator_factory()
    job = jobs.create("gang", workers=3)
    pods = jobs.wait_pods("gang", 3)
    response = client.CustomObjectsApi(api_client).get_namespaced_custom_object(
        GROUP, VERSION, jobs.namespace, PLURAL, "gang", _preload_content=False
    )
    group = json.loads(response.data)
    assert group["spec"]["minMember"] == 3
    (owner,) = group["metadata"]["ownerReferences"]
    assert owner["uid"] == job["metadata"]["uid"]
    for pod in pods:
        assert pod["metadata"]["labels"]["scheduling.x-k8s.io/pod-group"] == "gang"
    jobs.wait_phase("gang", "Running")


def test_gang_enabled_without_a_pod_group_api_warns(operator: OperatorProcess, jobs: Jobs) -> None:
    jobs.create("lonely", workers=2, scheduling={"gang": "Enabled"})
    kind, _, message = jobs.wait_event("lonely", "GangSchedulingUnavailable")
    assert kind == "Warning" and "PodGroup" in message
    # The job still runs, scheduled pod by pod.
    jobs.wait_phase("lonely", "Running")
