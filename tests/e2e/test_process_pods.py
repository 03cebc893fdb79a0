"""A plain pod on the process agent gets what a kubelet would give it (no operator involved).

The pod reads a ConfigMap key and a Secret key through its env, a ConfigMap volume, and its
ServiceAccount's projected token (`kube-api-access-*`, added by the API server's admission),
with which it asks the real API server who it is. What a user notices: the pod Succeeded and
its termination message shows each value arrived, and the token is a real one bound to it.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from kubernetes import client, config

from e2e.stack import E2EStack

pytestmark = [pytest.mark.e2e]

PROGRAM = r"""
import json, os, ssl, urllib.request
token = open(os.environ["TOKEN_FILE"]).read()
context = ssl.create_default_context(cafile=os.environ["CA_FILE"])
request = urllib.request.Request(
    os.environ["SERVER"] + "/apis/authentication.k8s.io/v1/selfsubjectreviews",
    data=json.dumps(
        {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    ).encode(),
    headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"},
    method="POST",
)
review = json.load(urllib.request.urlopen(request, context=context, timeout=10))
with open(os.environ["MESSAGE"], "w") as out:
    json.dump({
        "greeting": os.environ["GREETING"],
        "password": os.environ["PASSWORD"],
        "settings": open(os.path.join(os.environ["SETTINGS_DIR"], "mode")).read(),
        "user": review["status"]["userInfo"]["username"],
        "bound_pod": review["status"]["userInfo"]["extra"].get(
            "authentication.kubernetes.io/pod-name"
        ),
    }, out)
"""

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def test_pod_gets_config_secrets_and_its_service_account_token(e2e_stack: E2EStack) -> None:
    stack = e2e_stack
    namespace = stack.job_namespace
    api = config.new_client_from_config(config_file=str(stack.kubeconfig))  # type: ignore[no-untyped-call]
    with api:
        core = client.CoreV1Api(api)
        core.create_namespaced_config_map(
            namespace,
            {"metadata": {"name": "settings"}, "data": {"greeting": "hello", "mode": "fast"}},
        )
        core.create_namespaced_secret(
            namespace, {"metadata": {"name": "creds"}, "stringData": {"password": "s3cret"}}
        )
        pod: dict[str, Any] = {
            "metadata": {"name": "sources"},
            "spec": {
                "restartPolicy": "Never",
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": 1000,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "volumes": [{"name": "settings", "configMap": {"name": "settings"}}],
                "containers": [
                    {
                        "name": "main",
                        "image": "python:3.11-slim",
                        "command": ["python", "-c", PROGRAM],
                        "env": [
                            {"name": "SERVER", "value": stack.cluster.server},
                            {"name": "TOKEN_FILE", "value": f"{SA_DIR}/token"},
                            {"name": "CA_FILE", "value": f"{SA_DIR}/ca.crt"},
                            {"name": "SETTINGS_DIR", "value": "/etc/settings"},
                            {"name": "MESSAGE", "value": "/dev/termination-log"},
                            {
                                "name": "GREETING",
                                "valueFrom": {
                                    "configMapKeyRef": {"name": "settings", "key": "greeting"}
                                },
                            },
                            {
                                "name": "PASSWORD",
                                "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}},
                            },
                        ],
                        "volumeMounts": [{"name": "settings", "mountPath": "/etc/settings"}],
                        "securityContext": {
                            "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]},
                        },
                    }
                ],
            },
        }
        core.create_namespaced_pod(namespace, pod)
        deadline = time.monotonic() + 120
        while True:
            live = core.read_namespaced_pod("sources", namespace)
            if live.status.phase in ("Succeeded", "Failed"):
                break
            assert time.monotonic() < deadline, f"pod still {live.status.phase}"
            time.sleep(0.5)
        # the API server's admission added the ServiceAccount token volume, as on any cluster
        assert any(v.name.startswith("kube-api-access-") for v in live.spec.volumes)
        terminated = live.status.container_statuses[0].state.terminated
        assert live.status.phase == "Succeeded", terminated.message
        seen = json.loads(terminated.message)
        core.delete_namespaced_pod("sources", namespace)
    assert seen == {
        "greeting": "hello",
        "password": "s3cret",
        "settings": "fast",
        "user": f"system:serviceaccount:{namespace}:default",
        "bound_pod": ["sources"],
    }
