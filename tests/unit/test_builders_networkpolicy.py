"""The per-job NetworkPolicy builder and the settings that feed it, without a cluster.

What the policy lets in is asserted rule by rule: the job's own workers on every port, and on
the trainer metrics port only the monitoring namespaces and the operator's pods in the
operator's namespace. The integration tests then show the API server accepting it and the
garbage collector deleting it with the job.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from pydantic import ValidationError

from trainyard_operator.api import TrainingJob
from trainyard_operator.api.constants import API_VERSION, LABEL_JOB_NAME, METRICS_PORT
from trainyard_operator.builders import BuildSettings, NetworkPolicySettings
from trainyard_operator.builders.meta import child_metadata
from trainyard_operator.builders.networkpolicy import network_policy
from trainyard_operator.builders.pods import worker_pod
from trainyard_operator.builders.service import headless_service
from trainyard_operator.settings import OperatorSettings, parse_label_selector

MONITORING = {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
OPERATOR_PODS = {"matchLabels": {"app.kubernetes.io/component": "operator"}}
FENCE = NetworkPolicySettings(
    operator_namespace="trainyard-system",
    operator_pods=OPERATOR_PODS,
    monitoring_namespaces=MONITORING,
)
SETTINGS = BuildSettings(trainer_image="registry.example/trainer:1", network_policy=FENCE)


def make_job(name: str = "digits", **spec: Any) -> TrainingJob:
    return TrainingJob.from_object(
        {
            "apiVersion": "trainyard.dev/v1alpha1",
            "kind": "TrainingJob",
            "metadata": {"name": name, "namespace": "team-a", "uid": "uid-1", "generation": 1},
            "spec": spec,
        }
    )


def test_the_policy_is_a_child_of_the_job_beside_its_service() -> None:
    job = make_job()
    policy = network_policy(job, SETTINGS)
    assert policy["apiVersion"] == "networking.k8s.io/v1"
    assert policy["kind"] == "NetworkPolicy"
    assert policy["metadata"] == child_metadata(job, "digits")
    assert policy["metadata"]["namespace"] == "team-a"
    (owner,) = policy["metadata"]["ownerReferences"]
    assert owner == {
        "apiVersion": API_VERSION,
        "kind": "TrainingJob",
        "name": "digits",
        "uid": "uid-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert policy["metadata"]["name"] == headless_service(job)["metadata"]["name"]


def test_the_policy_selects_every_worker_of_the_job_and_only_them() -> None:
    job = make_job(workers=3)
    spec = network_policy(job, SETTINGS)["spec"]
    assert spec["podSelector"] == {"matchLabels": {LABEL_JOB_NAME: "digits"}}
    for index in range(3):
        labels = worker_pod(job, index, 0, SETTINGS)["metadata"]["labels"]
        assert all(labels[k] == v for k, v in spec["podSelector"]["matchLabels"].items())
    assert network_policy(make_job("other"), SETTINGS)["spec"]["podSelector"] == {
        "matchLabels": {LABEL_JOB_NAME: "other"}
    }


def test_only_ingress_is_confined() -> None:
    spec = network_policy(make_job(), SETTINGS)["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    assert "egress" not in spec


def test_the_jobs_own_workers_reach_each_other_on_every_port() -> None:
    own, _metrics = network_policy(make_job(), SETTINGS)["spec"]["ingress"]
    # a podSelector alone: pods of the policy's namespace; no `ports`: all of them, so the
    # collectives' ephemeral ports and the rendezvous port are open between the workers
    assert own == {"from": [{"podSelector": {"matchLabels": {LABEL_JOB_NAME: "digits"}}}]}


def test_metrics_are_open_to_monitoring_and_the_operator_only() -> None:
    _own, metrics = network_policy(make_job(), SETTINGS)["spec"]["ingress"]
    assert metrics["ports"] == [{"port": METRICS_PORT, "protocol": "TCP"}]
    monitoring, operator = metrics["from"]
    assert monitoring == {"namespaceSelector": MONITORING}
    # both selectors in one peer: the operator's pods in the operator's namespace, not every
    # pod there nor pods of that name elsewhere
    assert operator == {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "trainyard-system"}},
        "podSelector": OPERATOR_PODS,
    }


def test_the_metrics_rule_follows_the_port_the_workers_declare() -> None:
    settings = BuildSettings(trainer_image="x", metrics_port=9555, network_policy=FENCE)
    job = make_job()
    _own, metrics = network_policy(job, settings)["spec"]["ingress"]
    declared = worker_pod(job, 0, 0, settings)["spec"]["containers"][0]["ports"]
    assert metrics["ports"] == [
        {"port": p["containerPort"], "protocol": p["protocol"]}
        for p in declared
        if p["name"] == "metrics"
    ]


def test_the_policy_does_not_share_the_settings_selectors() -> None:
    policy = network_policy(make_job(), SETTINGS)
    policy["spec"]["ingress"][1]["from"][0]["namespaceSelector"]["matchLabels"]["x"] = "y"
    assert MONITORING == {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}


def test_the_builder_refuses_when_the_switch_is_off() -> None:
    with pytest.raises(ValueError, match="off"):
        network_policy(make_job(), BuildSettings(trainer_image="x"))


def test_the_operator_namespace_is_required() -> None:
    with pytest.raises(ValueError, match="operator's namespace"):
        NetworkPolicySettings(
            operator_namespace="", operator_pods={}, monitoring_namespaces=MONITORING
        )


# --- settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "selector"),
    [
        ("", {}),
        ("kubernetes.io/metadata.name=monitoring", MONITORING),
        ("a==b, c=d", {"matchLabels": {"a": "b", "c": "d"}}),
        ("team=", {"matchLabels": {"team": ""}}),
        (
            "team in (ml, infra),tier notin (dev)",
            {
                "matchExpressions": [
                    {"key": "team", "operator": "In", "values": ["ml", "infra"]},
                    {"key": "tier", "operator": "NotIn", "values": ["dev"]},
                ]
            },
        ),
        (
            "example.com/scrape,!legacy,env!=dev,app=prom",
            {
                "matchLabels": {"app": "prom"},
                "matchExpressions": [
                    {"key": "example.com/scrape", "operator": "Exists"},
                    {"key": "legacy", "operator": "DoesNotExist"},
                    {"key": "env", "operator": "NotIn", "values": ["dev"]},
                ],
            },
        ),
    ],
)
def test_selectors_are_read_in_kubectls_syntax(text: str, selector: dict[str, Any]) -> None:
    assert parse_label_selector(text) == selector


@pytest.mark.parametrize(
    "text",
    [
        "a>1",
        "a in ()",
        "a in (b",
        "a=b,,c=d",
        "a=b,a=c",
        "-bad=x",
        "a=b c",
        "a=" + "v" * 64,
        "UPPER.example.com/x=y",
    ],
)
def test_a_selector_the_api_could_not_hold_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_label_selector(text)


def test_the_switch_is_off_by_default_and_selectors_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in (
        "TRAINYARD_NETWORK_POLICY",
        "TRAINYARD_NETWORK_POLICY_MONITORING_NAMESPACES",
        "TRAINYARD_NETWORK_POLICY_OPERATOR_PODS",
        "TRAINYARD_NETWORK_POLICY_OPERATOR_NAMESPACE",
    ):
        monkeypatch.delenv(name, raising=False)
    settings = OperatorSettings()
    assert settings.network_policy is False
    assert settings.network_policy_monitoring_namespaces == MONITORING
    assert settings.network_policy_operator_pods == {
        "matchLabels": {
            "app.kubernetes.io/name": "trainyard",
            "app.kubernetes.io/component": "operator",
        }
    }
    assert settings.network_policy_operator_namespace == ""

    monkeypatch.setenv("TRAINYARD_NETWORK_POLICY", "true")
    monkeypatch.setenv("TRAINYARD_NETWORK_POLICY_MONITORING_NAMESPACES", "team in (obs)")
    monkeypatch.setenv("TRAINYARD_NETWORK_POLICY_OPERATOR_PODS", "app.kubernetes.io/instance=t")
    settings = OperatorSettings()
    assert settings.network_policy is True
    assert settings.network_policy_monitoring_namespaces == {
        "matchExpressions": [{"key": "team", "operator": "In", "values": ["obs"]}]
    }
    assert settings.network_policy_operator_pods == {
        "matchLabels": {"app.kubernetes.io/instance": "t"}
    }

    monkeypatch.setenv("TRAINYARD_NETWORK_POLICY_MONITORING_NAMESPACES", "a<3")
    with pytest.raises(ValidationError, match="network_policy_monitoring_namespaces"):
        OperatorSettings()


def test_the_operator_does_not_start_fenced_without_knowing_its_namespace() -> None:
    env = {k: v for k, v in os.environ.items() if k != "POD_NAMESPACE"}
    env["TRAINYARD_NETWORK_POLICY"] = "true"
    done = subprocess.run(
        [sys.executable, "-m", "trainyard_operator"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "TRAINYARD_NETWORK_POLICY_OPERATOR_NAMESPACE (or POD_NAMESPACE)" in done.stderr
