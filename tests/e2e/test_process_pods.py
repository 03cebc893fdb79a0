"""A plain pod on the process agent gets what a kubelet would give it (no operator involved):
config, secrets and its token in, and `kubectl logs` (read, follow, tail) out.

The pod reads a ConfigMap key and a Secret key through its env, a ConfigMap volume, and its
ServiceAccount's projected token (`kube-api-access-*`, added by the API server's admission),
with which it asks the real API server who it is. What a user notices: the pod Succeeded and
its termination message shows each value arrived, and the token is a real one bound to it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import ssl
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client, config

from e2e.stack import E2EStack
from trainyard_local import binaries
from trainyard_local.container_log import parse_stamp, stamp

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
# What the restricted Pod Security profile of the job namespace asks of every pod.
RESTRICTED_POD = {
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "seccompProfile": {"type": "RuntimeDefault"},
}
RESTRICTED_CONTAINER = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


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
                "securityContext": RESTRICTED_POD,
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
                        "securityContext": RESTRICTED_CONTAINER,
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


# Prints line i, then waits until the test opens gate i: each line's moment is the test's
# to choose, so the timestamp checks below wait on events, not on the program's pace.
COUNTER = """
import os, sys, time
gates = sys.argv[1]
for i in range(1, 6):
    print("line", i, flush=True)
    deadline = time.monotonic() + 120
    while i < 5 and not os.path.exists(os.path.join(gates, str(i))):
        if time.monotonic() > deadline:
            sys.exit(3)
        time.sleep(0.02)
"""


def test_kubectl_logs_reads_follows_and_tails_a_pod(e2e_stack: E2EStack) -> None:
    stack = e2e_stack
    namespace = stack.job_namespace

    base = [str(binaries.binary("kubectl")), f"--kubeconfig={stack.kubeconfig}", "-n", namespace]

    def kubectl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*base, *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    # readable by the pod's uid (the restricted profile runs it as 1000)
    gates = tempfile.mkdtemp(prefix="trainyard-log-gates-")
    os.chmod(gates, 0o755)
    pod = {
        "metadata": {"name": "counter"},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": RESTRICTED_POD,
            "containers": [
                {
                    "name": "main",
                    "image": "python:3.11-slim",
                    "command": ["python", "-c", COUNTER, gates],
                    "securityContext": RESTRICTED_CONTAINER,
                }
            ],
        },
    }
    api = config.new_client_from_config(config_file=str(stack.kubeconfig))  # type: ignore[no-untyped-call]
    with api:
        core = client.CoreV1Api(api)
        core.create_namespaced_pod(namespace, pod)
        deadline = time.monotonic() + 60
        while core.read_namespaced_pod("counter", namespace).status.phase == "Pending":
            assert time.monotonic() < deadline, "the pod never started"
            time.sleep(0.2)
        # -f follows the running container and returns once it has exited
        follow = subprocess.Popen(
            [*base, "logs", "-f", "counter"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        seen_at: list[float] = []  # when the test had read line i through the API
        opened_at: list[float] = []  # when it let the program print line i + 1
        for i in range(1, 6):
            deadline = time.monotonic() + 60
            while f"line {i}" not in kubectl("logs", "counter").stdout:
                assert time.monotonic() < deadline, f"line {i} never came"
                time.sleep(0.1)
            seen_at.append(time.time())
            if i == 3:
                # --since-time has whole seconds: lines 4 and 5 come in a later second than
                # line 3 (this wait is about the clock the feature reads, not about pace)
                while time.time() < math.floor(seen_at[-1]) + 1.05:
                    time.sleep(0.05)
            if i < 5:
                opened_at.append(time.time())
                Path(gates, str(i)).touch()
        followed_out, followed_err = follow.communicate(timeout=120)
        assert follow.returncode == 0, followed_err
        assert followed_out.splitlines() == [f"line {i}" for i in range(1, 6)]
        assert core.read_namespaced_pod("counter", namespace).status.phase == "Succeeded"

        # `kubectl describe pod` tells the container's story, as a kubelet's events would
        described = kubectl("describe", "pod", "counter")
        for reason in ("Scheduled", "Pulled", "Created", "Started"):
            assert reason in described.stdout, described.stdout
        assert "the process runner does not use images" in described.stdout

        tailed = kubectl("logs", "counter", "--tail=2")
        assert tailed.stdout.splitlines() == ["line 4", "line 5"]
        limited = kubectl("logs", "counter", "--limit-bytes=9")
        assert limited.stdout == "line 1\nli"
        # each line carries the time it arrived: after the gate that let it be printed opened,
        # and before the test read it back
        stamped = kubectl("logs", "counter", "--timestamps").stdout.splitlines()
        assert [line.split(" ", 1)[1] for line in stamped] == [f"line {i}" for i in range(1, 6)]
        times = [parse_stamp(line.split(" ", 1)[0]) for line in stamped]
        assert all(when <= seen for when, seen in zip(times, seen_at, strict=True))
        assert all(times[i + 1] >= opened for i, opened in enumerate(opened_at))
        assert kubectl("logs", "counter", "--since=1h", "--timestamps", "--tail=1").stdout == (
            stamped[-1] + "\n"
        )
        # sinceTime has whole seconds on the wire: from the second after line 3's
        cutoff = math.ceil(times[2])
        since = kubectl("logs", "counter", f"--since-time={stamp(cutoff * 10**9)}")
        assert since.stdout.splitlines() == ["line 4", "line 5"]
        previous = kubectl("logs", "counter", "--previous")
        assert previous.returncode != 0 and "never restarted in place" in previous.stderr

        # only the API server may ask the agent: the admin's own certificate is refused
        node_port = core.read_node(
            core.read_namespaced_pod("counter", namespace).spec.node_name
        ).status.daemon_endpoints.kubelet_endpoint.port
        pki = stack.cluster.pki
        context = ssl.create_default_context(cafile=str(pki.ca_cert))
        context.load_cert_chain(str(pki.client_cert("admin")), str(pki.client_key("admin")))
        url = f"https://127.0.0.1:{node_port}/containerLogs/{namespace}/counter/main"
        with httpx.Client(verify=context, timeout=10) as http:
            assert http.get(url).status_code == 403
        core.delete_namespaced_pod("counter", namespace)
    shutil.rmtree(gates, ignore_errors=True)
