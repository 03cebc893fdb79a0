"""The Helm chart as `helm lint` and `helm template` see it (no cluster needed).

What a user notices: the chart lints; defaults install exactly the operator's pieces with a
restricted-profile pod; the ClusterRole holds the one rules file and nothing else; monitoring
objects appear only when switched on AND the cluster serves monitoring.coreos.com/v1; bad
values are refused naming the key; values.yaml and values.schema.json describe the same keys;
the chart's copies of the alerts and dashboard equal deploy/monitoring's.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from trainyard_local import binaries
from trainyard_operator.settings import DEFAULT_TRAINER_IMAGE

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "trainyard"
MONITORING = ROOT / "deploy" / "monitoring"
KUBE_VERSION = binaries.kube_version()
MONITORING_ON = (
    "monitoring.serviceMonitor.enabled=true",
    "monitoring.podMonitor.enabled=true",
    "monitoring.prometheusRule.enabled=true",
    "monitoring.grafanaDashboard.enabled=true",
)


def helm_bin() -> str:
    try:
        return str(binaries.binary("helm"))
    except binaries.BinariesMissingError as error:
        pytest.fail(str(error), pytrace=False)


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [helm_bin(), *args], capture_output=True, text=True, timeout=120, check=False
    )


def render(*sets: str, api_versions: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    args = ["template", "rel", str(CHART), "--namespace=ops", f"--kube-version={KUBE_VERSION}"]
    args += [f"--api-versions={v}" for v in api_versions]
    for item in sets:
        args += ["--set", item]
    done = helm(*args)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def kinds(docs: list[dict[str, Any]]) -> list[str]:
    return sorted(doc["kind"] for doc in docs)


def test_chart_lints_with_defaults_and_with_every_switch_on() -> None:
    for sets in ((), (*MONITORING_ON, "networkPolicy.enabled=true", "operator.namespaces={a,b}")):
        args = ["lint", str(CHART), "--strict"]
        for item in sets:
            args += ["--set", item]
        done = helm(*args)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "0 chart(s) failed" in done.stdout


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ("operator.metricsPort=0", "metricsPort"),
        ("image.pullPolicy=Sometimes", "pullPolicy"),
        ("operator.replicas=2,operator.leaderElection.enabled=false", "enabled"),
        ("operator.leaderElection.leaseDurationSeconds=1", "leaseDurationSeconds"),
        ("operator.namespaces={Bad_Name}", "namespaces"),
        ("operatr.logLevel=DEBUG", "operatr"),
    ],
)
def test_bad_values_are_refused_naming_the_key(setting: str, named: str) -> None:
    done = helm("template", "rel", str(CHART), f"--kube-version={KUBE_VERSION}", "--set", setting)
    assert done.returncode != 0
    assert named in done.stderr


def test_defaults_render_the_operator_and_nothing_else() -> None:
    docs = render()
    assert kinds(docs) == [
        "ClusterRole",
        "ClusterRole",
        "ClusterRole",
        "ClusterRole",
        "ClusterRoleBinding",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "Deployment",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ]
    (deployment,) = by_kind(docs, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    # leader election is on: a new pod stands by until the old one releases the Lease
    assert spec["strategy"] == {"type": "RollingUpdate"}
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == "rel-trainyard"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["resources"]["limits"]["memory"] == "256Mi"
    env = {item["name"]: item.get("value") for item in container["env"]}
    # the chart and an operator started without it (the embedded demo) name one image
    assert env["TRAINYARD_TRAINER_IMAGE"] == DEFAULT_TRAINER_IMAGE
    assert env["TRAINYARD_NAMESPACES"] == ""
    assert container["image"] == "trainyard-operator:0.1.0"
    # every object carries the release's labels (the uninstall test relies on them)
    for doc in docs:
        if doc["kind"] != "CustomResourceDefinition":
            assert doc["metadata"]["labels"]["app.kubernetes.io/instance"] == "rel", doc["kind"]


def test_operator_rules_come_from_the_one_rules_file() -> None:
    rules = yaml.safe_load((CHART / "files" / "operator-rules.yaml").read_text())
    docs = render()
    (operator_role,) = [
        d for d in by_kind(docs, "ClusterRole") if d["metadata"]["name"] == "rel-trainyard-operator"
    ]
    assert operator_role["rules"] == rules
    binding = _named(docs, "ClusterRoleBinding")["rel-trainyard-operator"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "rel-trainyard", "namespace": "ops"}
    ]


def test_aggregated_roles_extend_view_edit_and_admin() -> None:
    roles = {d["metadata"]["name"]: d for d in by_kind(render(), "ClusterRole")}
    view, edit = roles["rel-trainyard-view"], roles["rel-trainyard-edit"]
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert "rbac.authorization.k8s.io/aggregate-to-view" not in edit["metadata"]["labels"]
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert set(view["rules"][0]["verbs"]) == {"get", "list", "watch"}
    assert "create" in edit["rules"][0]["verbs"]


def test_watched_namespaces_get_rolebindings_instead_of_a_clusterrolebinding() -> None:
    docs = render("operator.namespaces={team-a,team-b}")
    assert not by_kind(docs, "ClusterRoleBinding")
    bindings = by_kind(docs, "RoleBinding")
    # plus the leader-election binding in the release's own namespace
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["ops", "team-a", "team-b"]
    (deployment,) = by_kind(docs, "Deployment")
    env = {
        e["name"]: e.get("value")
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["TRAINYARD_NAMESPACES"] == "team-a,team-b"


def test_monitoring_objects_need_the_switch_and_the_api() -> None:
    without_api = render(*MONITORING_ON)
    assert not {"ServiceMonitor", "PodMonitor", "PrometheusRule"} & set(kinds(without_api))
    assert not by_kind(render(api_versions=("monitoring.coreos.com/v1",)), "ServiceMonitor")

    docs = render(*MONITORING_ON, api_versions=("monitoring.coreos.com/v1",))
    (service_monitor,) = by_kind(docs, "ServiceMonitor")
    assert service_monitor["spec"]["endpoints"][0]["port"] == "metrics"
    (pod_monitor,) = by_kind(docs, "PodMonitor")
    assert pod_monitor["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/managed-by": "trainyard-operator"
    }
    assert pod_monitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    (rule,) = by_kind(docs, "PrometheusRule")
    alerts = yaml.safe_load((MONITORING / "alerts.yaml").read_text())
    assert rule["spec"] == alerts
    dashboards = [
        d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("dashboard")
    ]
    (dashboard,) = dashboards
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads(dashboard["data"]["trainyard.json"])
    assert shipped == json.loads((MONITORING / "grafana-dashboard.json").read_text())


def test_network_policy_is_optional_and_confines_the_operator() -> None:
    assert not by_kind(render(), "NetworkPolicy")
    (policy,) = by_kind(render("networkPolicy.enabled=true"), "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "operator"
    egress_ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
    assert {53, 443, 6443, 9400} <= egress_ports


def test_crd_switches() -> None:
    (kept,) = by_kind(render(), "CustomResourceDefinition")
    assert kept["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    (dropped,) = by_kind(render("crds.keep=false"), "CustomResourceDefinition")
    assert "helm.sh/resource-policy" not in (dropped["metadata"].get("annotations") or {})
    assert not by_kind(render("crds.enabled=false"), "CustomResourceDefinition")


#: values that are free-form maps (labels, resources, securityContext, ...): the schema types
#: them as objects and does not list their keys
FREE_FORM = {
    "podLabels",
    "podAnnotations",
    "nodeSelector",
    "affinity",
    "podSecurityContext",
    "securityContext",
    "resources",
}


def _value_paths(values: dict[str, Any], prefix: str = "") -> set[str]:
    paths = set()
    for key, value in values.items():
        path = f"{prefix}{key}"
        paths.add(path)
        if isinstance(value, dict) and value and path not in FREE_FORM:
            paths |= _value_paths(value, f"{path}.")
    return paths


def _schema_paths(schema: dict[str, Any], prefix: str = "") -> set[str]:
    paths = set()
    for key, sub in (schema.get("properties") or {}).items():
        path = f"{prefix}{key}"
        paths.add(path)
        if sub.get("properties"):
            paths |= _schema_paths(sub, f"{path}.")
    return paths


def test_values_and_schema_describe_the_same_keys_and_defaults_validate() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert _value_paths(values) == _schema_paths(schema)
    jsonschema.validate(values, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**values, "unknown": 1}, schema)


def _leaf_paths(schema: dict[str, Any], prefix: str = "") -> set[str]:
    leaves = set()
    for key, sub in (schema.get("properties") or {}).items():
        if sub.get("properties"):
            leaves |= _leaf_paths(sub, f"{prefix}{key}.")
        else:
            leaves.add(f"{prefix}{key}")
    return leaves


def test_every_value_is_documented_in_values_yaml() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    leaves = _leaf_paths(schema)
    lines = (CHART / "values.yaml").read_text().splitlines()
    stack: list[tuple[int, str]] = []
    documented = set()
    for number, line in enumerate(lines):
        match = re.match(r"^( *)([A-Za-z][A-Za-z0-9]*):", line)
        if not match:
            continue
        indent = len(match.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match.group(2)))
        path = ".".join(key for _indent, key in stack)
        if path in leaves:
            assert lines[number - 1].strip().startswith("#"), f"values.yaml:{number + 1} {path}"
            documented.add(path)
    assert documented == leaves


def test_chart_copies_of_alerts_and_dashboard_match_deploy_monitoring() -> None:
    assert (CHART / "files" / "alerts.yaml").read_text() == (MONITORING / "alerts.yaml").read_text()
    assert (CHART / "files" / "dashboard.json").read_text() == (
        MONITORING / "grafana-dashboard.json"
    ).read_text()


def test_alert_rules_pass_promtool() -> None:
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    if not Path(promtool).exists():
        pytest.fail("promtool is missing: run `make prometheus`", pytrace=False)
    done = subprocess.run(
        [promtool, "check", "rules", str(MONITORING / "alerts.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_leader_election_grants_leases_in_the_release_namespace_only() -> None:
    docs = render("operator.replicas=2")
    (role,) = by_kind(docs, "Role")
    assert role["metadata"]["namespace"] == "ops"
    assert role["rules"] == yaml.safe_load(
        (CHART / "files" / "leader-election-rules.yaml").read_text()
    )
    (deployment,) = by_kind(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["TRAINYARD_LEADER_ELECTION"]["value"] == "true"
    assert env["TRAINYARD_LEADER_ELECTION_IDENTITY"]["valueFrom"]["fieldRef"] == {
        "fieldPath": "metadata.name"
    }


def test_without_leader_election_one_replica_is_recreated_and_no_lease_rules_exist() -> None:
    docs = render("operator.leaderElection.enabled=false")
    assert not by_kind(docs, "Role")
    (deployment,) = by_kind(docs, "Deployment")
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}


SECURE = "metrics.secure=true"
MONITORING_API = ("monitoring.coreos.com/v1",)


def _env(docs: list[dict[str, Any]]) -> dict[str, str | None]:
    (deployment,) = by_kind(docs, "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value") for e in container["env"]}


def _named(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in by_kind(docs, kind)}


def test_chart_lints_with_secure_metrics() -> None:
    sets = (SECURE, "metrics.certSecret=metrics-tls", "monitoring.serviceMonitor.enabled=true")
    args = ["lint", str(CHART), "--strict"]
    for item in sets:
        args += ["--set", item]
    done = helm(*args)
    assert done.returncode == 0, done.stdout + done.stderr


def test_metrics_are_plain_by_default_and_grant_no_reviews() -> None:
    docs = render()
    assert _env(docs)["TRAINYARD_METRICS_AUTH"] == "false"
    assert "TRAINYARD_METRICS_CERT_DIR" not in _env(docs)
    names = set(_named(docs, "ClusterRole")) | set(_named(docs, "ClusterRoleBinding"))
    assert not {n for n in names if "metrics" in n}


def test_secure_metrics_grant_the_reviews_from_their_one_rules_file() -> None:
    docs = render(SECURE)
    assert _env(docs)["TRAINYARD_METRICS_AUTH"] == "true"
    rules = yaml.safe_load((CHART / "files" / "metrics-auth-rules.yaml").read_text())
    assert {(r["apiGroups"][0], r["resources"][0], tuple(r["verbs"])) for r in rules} == {
        ("authentication.k8s.io", "tokenreviews", ("create",)),
        ("authorization.k8s.io", "subjectaccessreviews", ("create",)),
    }
    roles = _named(docs, "ClusterRole")
    assert roles["rel-trainyard-metrics-auth"]["rules"] == rules
    # the operator's main ClusterRole stays exactly operator-rules.yaml
    assert roles["rel-trainyard-operator"]["rules"] == yaml.safe_load(
        (CHART / "files" / "operator-rules.yaml").read_text()
    )
    binding = _named(docs, "ClusterRoleBinding")["rel-trainyard-metrics-auth"]
    assert binding["roleRef"]["name"] == "rel-trainyard-metrics-auth"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "rel-trainyard", "namespace": "ops"}
    ]
    # for the user to bind to the scraper: nothing binds it
    assert roles["rel-trainyard-metrics-reader"]["rules"] == [
        {"nonResourceURLs": ["/metrics"], "verbs": ["get"]}
    ]
    bound = {b["roleRef"]["name"] for b in by_kind(docs, "ClusterRoleBinding")}
    assert "rel-trainyard-metrics-reader" not in bound
    # without rbac.create the chart makes no RBAC objects for it either
    unmanaged = render(SECURE, "rbac.create=false")
    assert not {n for n in _named(unmanaged, "ClusterRole") if "metrics" in n}
    assert not _named(unmanaged, "ClusterRoleBinding")


def test_gpu_auto_reads_nodes_with_their_one_rule_in_cluster_wide_mode_only() -> None:
    """`gpus: auto` chooses from the nodes where the chart may grant a cluster-scoped read
    of them; namespaced mode grants nothing cluster-scoped and turns the reads off."""
    rules = yaml.safe_load((CHART / "files" / "node-reader-rules.yaml").read_text())
    assert rules == [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["list", "watch"]}]
    docs = render("operator.gpuAuto.fallbackGpusPerWorker=2")
    assert _named(docs, "ClusterRole")["rel-trainyard-node-reader"]["rules"] == rules
    binding = _named(docs, "ClusterRoleBinding")["rel-trainyard-node-reader"]
    assert binding["roleRef"]["name"] == "rel-trainyard-node-reader"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "rel-trainyard", "namespace": "ops"}
    ]
    assert _env(docs)["TRAINYARD_READ_NODES"] == "true"
    assert _env(docs)["TRAINYARD_GPU_AUTO_FALLBACK"] == "2"
    # the operator's own rules list quotas (namespaced) and never nodes
    operator_rules = _named(docs, "ClusterRole")["rel-trainyard-operator"]["rules"]
    assert {"apiGroups": [""], "resources": ["resourcequotas"], "verbs": ["list"]} in (
        operator_rules
    )
    assert not [r for r in operator_rules if "nodes" in r["resources"]]
    for sets in (("operator.namespaces={team-a}",), ("operator.gpuAuto.readNodes=false",)):
        off = render(*sets)
        assert "rel-trainyard-node-reader" not in _named(off, "ClusterRole"), sets
        assert "rel-trainyard-node-reader" not in _named(off, "ClusterRoleBinding"), sets
        assert _env(off)["TRAINYARD_READ_NODES"] == "false", sets
    unmanaged = render("rbac.create=false")
    assert "rel-trainyard-node-reader" not in _named(unmanaged, "ClusterRole")
    done = helm(
        "template",
        "rel",
        str(CHART),
        f"--kube-version={KUBE_VERSION}",
        "--set",
        "operator.gpuAuto.fallbackGpusPerWorker=65",
    )
    assert done.returncode != 0
    assert "fallbackGpusPerWorker" in done.stderr


def test_secure_service_monitor_scrapes_https_with_its_service_account_token() -> None:
    plain = render("monitoring.serviceMonitor.enabled=true", api_versions=MONITORING_API)
    (monitor,) = by_kind(plain, "ServiceMonitor")
    (endpoint,) = monitor["spec"]["endpoints"]
    assert not {"scheme", "bearerTokenFile", "tlsConfig"} & set(endpoint)

    docs = render(SECURE, "monitoring.serviceMonitor.enabled=true", api_versions=MONITORING_API)
    (monitor,) = by_kind(docs, "ServiceMonitor")
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["scheme"] == "https"
    assert endpoint["bearerTokenFile"] == "/var/run/secrets/kubernetes.io/serviceaccount/token"
    # the certificate is self-signed at the operator's start: nothing to verify it against
    assert endpoint["tlsConfig"] == {"insecureSkipVerify": True}


def test_a_cert_secret_is_mounted_and_verified_by_the_service_monitor() -> None:
    docs = render(
        SECURE,
        "metrics.certSecret=metrics-tls",
        "monitoring.serviceMonitor.enabled=true",
        api_versions=MONITORING_API,
    )
    (deployment,) = by_kind(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    cert_dir = _env(docs)["TRAINYARD_METRICS_CERT_DIR"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["metrics-tls"]["secret"]["secretName"] == "metrics-tls"
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["metrics-tls"] == {
        "name": "metrics-tls",
        "mountPath": cert_dir,
        "readOnly": True,
    }
    assert "subPath" not in mounts["metrics-tls"]  # a subPath mount would never see a renewal
    (monitor,) = by_kind(docs, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["tlsConfig"] == {
        "serverName": "rel-trainyard-metrics.ops.svc",
        "ca": {"secret": {"name": "metrics-tls", "key": "ca.crt"}},
    }


def test_a_cert_secret_without_secure_metrics_is_refused() -> None:
    done = helm(
        "template",
        "rel",
        str(CHART),
        f"--kube-version={KUBE_VERSION}",
        "--set",
        "metrics.certSecret=metrics-tls",
    )
    assert done.returncode != 0
    assert "secure" in done.stderr


JOB_POLICY = "operator.jobNetworkPolicy.enabled=true"


def test_job_network_policies_are_off_by_default_and_the_rules_allow_them() -> None:
    docs = render()
    env = _env(docs)
    assert env["TRAINYARD_NETWORK_POLICY"] == "false"
    assert "TRAINYARD_NETWORK_POLICY_MONITORING_NAMESPACES" not in env
    assert "TRAINYARD_NETWORK_POLICY_OPERATOR_PODS" not in env
    # the operator makes them, not the chart
    assert not by_kind(render(JOB_POLICY), "NetworkPolicy")
    # granted with the switch off too, so turning it on is a change of settings only
    rules = _named(docs, "ClusterRole")["rel-trainyard-operator"]["rules"]
    assert {
        "apiGroups": ["networking.k8s.io"],
        "resources": ["networkpolicies"],
        "verbs": ["create"],
    } in rules


def test_job_network_policies_let_in_this_releases_operator_pods() -> None:
    docs = render(JOB_POLICY)
    env = _env(docs)
    assert env["TRAINYARD_NETWORK_POLICY"] == "true"
    assert env["TRAINYARD_NETWORK_POLICY_MONITORING_NAMESPACES"] == (
        "kubernetes.io/metadata.name=monitoring"
    )
    (deployment,) = by_kind(docs, "Deployment")
    selector = deployment["spec"]["selector"]["matchLabels"]
    operator_pods = env["TRAINYARD_NETWORK_POLICY_OPERATOR_PODS"] or ""
    # exactly the Deployment's selector: every pod of this release's operator, and no label
    # (pod-template-hash, podLabels) that a later rollout could change
    assert dict(pair.split("=", 1) for pair in operator_pods.split(",")) == selector
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    (namespace,) = [e for e in container["env"] if e["name"] == "POD_NAMESPACE"]
    assert namespace["valueFrom"]["fieldRef"] == {"fieldPath": "metadata.namespace"}

    custom = render(
        JOB_POLICY, "operator.jobNetworkPolicy.monitoringNamespaceSelector=team in (obs)"
    )
    assert _env(custom)["TRAINYARD_NETWORK_POLICY_MONITORING_NAMESPACES"] == "team in (obs)"


def test_chart_lints_with_job_network_policies() -> None:
    done = helm("lint", str(CHART), "--strict", "--set", JOB_POLICY)
    assert done.returncode == 0, done.stdout + done.stderr


def test_log_format_and_straggler_settings_reach_the_operator() -> None:
    names = (
        "TRAINYARD_LOG_FORMAT",
        "TRAINYARD_STRAGGLER_FACTOR",
        "TRAINYARD_STRAGGLER_WINDOW_SECONDS",
    )
    env = _env(render())
    assert tuple(env[n] for n in names) == ("text", "1.5", "60")
    env = _env(
        render(
            "operator.logFormat=json",
            "operator.stragglers.factor=2",
            "operator.stragglers.windowSeconds=30",
        )
    )
    assert tuple(env[n] for n in names) == ("json", "2", "30")
    for setting, named in (
        ("operator.logFormat=xml", "logFormat"),
        ("operator.stragglers.factor=1", "factor"),
        ("operator.stragglers.windowSeconds=0", "windowSeconds"),
    ):
        done = helm(
            "template", "rel", str(CHART), f"--kube-version={KUBE_VERSION}", "--set", setting
        )
        assert done.returncode != 0 and named in done.stderr, setting
