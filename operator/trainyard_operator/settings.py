"""The operator's settings, read once from the environment (TRAINYARD_* variables).

`main` builds one `OperatorSettings` at start-up; the handlers read it from kopf's memo, and
the Helm chart sets the same variables on the operator's Deployment. Bad values stop the
operator at start with pydantic's error naming the variable.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_TRAINER_IMAGE = "trainyard-trainer:0.1.0"
#: Namespaces whose pods may scrape the trainer metrics port through a job's NetworkPolicy.
DEFAULT_MONITORING_NAMESPACES = "kubernetes.io/metadata.name=monitoring"
#: The operator's pods: the labels of the chart's selector that do not depend on the release
#: (the chart passes its full selector).
DEFAULT_OPERATOR_PODS = "app.kubernetes.io/name=trainyard,app.kubernetes.io/component=operator"


class OperatorSettings(BaseSettings):
    """Everything the operator reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="TRAINYARD_", extra="ignore")

    namespaces: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """TRAINYARD_NAMESPACES: comma-separated namespaces to watch; empty watches all."""
    trainer_image: str = DEFAULT_TRAINER_IMAGE
    """TRAINYARD_TRAINER_IMAGE: image for jobs that leave spec.image empty."""
    operator_metrics_port: Annotated[int, Field(ge=1, le=65535)] = 8080
    """TRAINYARD_OPERATOR_METRICS_PORT: where /metrics is served."""
    operator_health_port: Annotated[int, Field(ge=1, le=65535)] = 8081
    """TRAINYARD_OPERATOR_HEALTH_PORT: where kopf's liveness endpoint /healthz is served."""
    operator_bind_address: str = "0.0.0.0"
    """TRAINYARD_OPERATOR_BIND_ADDRESS: address both endpoints listen on."""
    metrics_auth: bool = False
    """TRAINYARD_METRICS_AUTH: serve /metrics over HTTPS, only to clients whose bearer token
    the API server authenticates (TokenReview) and authorizes for `get` on the non-resource
    URL /metrics (SubjectAccessReview): 401 without a valid token, 403 without the right.
    The operator then needs the rules of the chart's files/metrics-auth-rules.yaml."""
    metrics_cert_dir: str = ""
    """TRAINYARD_METRICS_CERT_DIR: with TRAINYARD_METRICS_AUTH, a directory holding tls.crt and
    tls.key (a mounted kubernetes.io/tls Secret), re-read when they change; empty means a
    self-signed certificate made in memory at start-up."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """TRAINYARD_LOG_LEVEL."""
    log_format: Literal["text", "json"] = "text"
    """TRAINYARD_LOG_FORMAT: text lines, or one JSON object per line (kopf's JSON format,
    with `job` and `namespace` on a job's lines) for log collectors such as ELK. The
    operator passes it on to the trainer pods, whose lines follow it too."""
    progress_interval_seconds: Annotated[float, Field(gt=0, le=3600)] = 5.0
    """TRAINYARD_PROGRESS_INTERVAL_SECONDS: how often worker 0's metrics are read."""
    progress_timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 1.0
    """TRAINYARD_PROGRESS_TIMEOUT_SECONDS: timeout of one metrics read."""
    straggler_factor: Annotated[float, Field(gt=1, le=100)] = 1.5
    """TRAINYARD_STRAGGLER_FACTOR: a worker whose compute time per step exceeds this many
    times the gang's median (averaged over the window) is a straggler."""
    straggler_window_seconds: Annotated[float, Field(ge=1, le=86400)] = 60.0
    """TRAINYARD_STRAGGLER_WINDOW_SECONDS: the window step times are averaged over before a
    worker is judged; every worker's metrics are read each progress interval."""
    api_concurrency: Annotated[int, Field(ge=1, le=256)] = 16
    """TRAINYARD_API_CONCURRENCY: API calls in flight at once (client threads)."""
    api_timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 30.0
    """TRAINYARD_API_TIMEOUT_SECONDS: the longest one API request (not a watch) may take;
    a request that hangs (an API server cut off mid-answer) fails and is retried instead of
    holding a client thread, and the job it serves, forever."""
    api_qps: Annotated[float, Field(gt=0, le=100000)] = 200.0
    """TRAINYARD_API_QPS: the most API requests per second the operator sends on average (a
    client-side limit, like client-go's QPS; watches are not counted): a burst of new jobs
    queues in the operator instead of flooding a busy API server. Creations, status writes
    and events all draw from it; what waits is counted in trainyard_api_throttled_seconds."""
    api_burst: Annotated[int, Field(ge=1, le=100000)] = 400
    """TRAINYARD_API_BURST: how many requests may go at once above TRAINYARD_API_QPS after a
    quiet spell (the bucket's size)."""
    status_coalesce_seconds: Annotated[float, Field(ge=0, le=60)] = 2.0
    """TRAINYARD_STATUS_COALESCE_SECONDS: a status change that only moves the worker counts
    (and the Running condition's "n of m running" message) waits this long for the next one,
    so a gang coming up costs one status write, not one per pod; a change of phase,
    condition, restart count or progress is written at once. 0 writes every change."""

    resync_seconds: Annotated[float, Field(ge=1, le=86400)] = 300.0
    """TRAINYARD_RESYNC_SECONDS: how often the consistency pass lists TrainingJobs and worker
    pods to forget what a watch that had to start over never reported deleted (two LIST
    requests per watched namespace, paged)."""
    leader_election: bool = False
    """TRAINYARD_LEADER_ELECTION: act only while holding a coordination.k8s.io Lease, so
    several replicas can run and one takes over when the leader dies (the chart turns it on)."""
    leader_election_namespace: str = ""
    """TRAINYARD_LEADER_ELECTION_NAMESPACE: where the Lease lives; empty means the namespace
    the operator's pod runs in (POD_NAMESPACE, else its ServiceAccount's namespace file)."""
    leader_election_lease: str = "trainyard-operator"
    """TRAINYARD_LEADER_ELECTION_LEASE: the Lease's name (one per installation)."""
    leader_election_identity: str = ""
    """TRAINYARD_LEADER_ELECTION_IDENTITY: this replica's name in the Lease; empty means the
    host name plus a random suffix. The chart passes the pod name, so a container restarted in
    the same pod resumes its own Lease at once instead of waiting for it to expire."""
    lease_duration_seconds: Annotated[float, Field(ge=2, le=300)] = 15.0
    """TRAINYARD_LEASE_DURATION_SECONDS: how long standbys wait on a leader that stopped
    renewing (client-go's default)."""
    lease_renew_deadline_seconds: Annotated[float, Field(ge=1, le=300)] = 10.0
    """TRAINYARD_LEASE_RENEW_DEADLINE_SECONDS: a leader that could not renew for this long
    exits (before any standby may take over)."""
    lease_retry_seconds: Annotated[float, Field(gt=0, le=60)] = 2.0
    """TRAINYARD_LEASE_RETRY_SECONDS: between tries to take or renew the Lease."""
    network_policy: bool = False
    """TRAINYARD_NETWORK_POLICY: give every job a NetworkPolicy `<job>` beside its headless
    Service that admits to its workers only the job's own workers (on every port) and, on
    the trainer metrics port alone, pods of the monitoring namespaces and the operator's own
    pods. It takes effect only where the cluster's CNI enforces NetworkPolicy, and the
    operator needs `create` on networkpolicies (the chart's rules grant it)."""
    network_policy_monitoring_namespaces: Annotated[dict[str, Any], NoDecode] = Field(
        default_factory=lambda: parse_label_selector(DEFAULT_MONITORING_NAMESPACES)
    )
    """TRAINYARD_NETWORK_POLICY_MONITORING_NAMESPACES: a label selector in kubectl's `-l`
    syntax (`kubectl get namespaces -l ...` lists what it selects) naming the namespaces
    whose pods may scrape the trainer metrics port; empty selects every namespace."""
    network_policy_operator_pods: Annotated[dict[str, Any], NoDecode] = Field(
        default_factory=lambda: parse_label_selector(DEFAULT_OPERATOR_PODS)
    )
    """TRAINYARD_NETWORK_POLICY_OPERATOR_PODS: a label selector (kubectl's `-l` syntax) of
    the operator's own pods, which read worker 0's metrics for progress; the chart passes its
    selector labels. Empty admits every pod of the operator's namespace."""
    network_policy_operator_namespace: str = ""
    """TRAINYARD_NETWORK_POLICY_OPERATOR_NAMESPACE: the namespace of those pods; empty means
    the namespace the operator's pod runs in (POD_NAMESPACE, else its ServiceAccount's
    namespace file). Without either the operator does not start with the policy on, since
    its progress reads would be shut out."""
    read_nodes: bool = False
    """TRAINYARD_READ_NODES: watch Nodes, so that `spec.resources.gpus: auto` chooses from
    the GPU nodes a gang may land on. Needs list and watch on nodes, a read-only
    cluster-scoped rule (the chart's files/node-reader-rules.yaml, granted and switched on in
    its cluster-wide mode); off, `auto` decides from the quota and
    TRAINYARD_GPU_AUTO_FALLBACK."""
    gpu_auto_fallback: Annotated[int, Field(ge=0, le=64)] = 0
    """TRAINYARD_GPU_AUTO_FALLBACK: GPUs per worker that `gpus: auto` takes when the operator
    does not read nodes, capped by the namespace's GPU quota; 0 runs such jobs on CPU."""

    @model_validator(mode="after")
    def _lease_timing(self) -> OperatorSettings:
        if not (
            self.lease_retry_seconds
            < self.lease_renew_deadline_seconds
            < self.lease_duration_seconds
        ):
            raise ValueError(
                "TRAINYARD_LEASE_RETRY_SECONDS < TRAINYARD_LEASE_RENEW_DEADLINE_SECONDS < "
                "TRAINYARD_LEASE_DURATION_SECONDS must hold"
            )
        return self

    @model_validator(mode="after")
    def _cert_dir_needs_auth(self) -> OperatorSettings:
        # a certificate without the switch would be ignored: plain HTTP, which the user did
        # not mean when mounting one
        if self.metrics_cert_dir and not self.metrics_auth:
            raise ValueError("TRAINYARD_METRICS_CERT_DIR needs TRAINYARD_METRICS_AUTH=true")
        return self

    @field_validator("namespaces", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator(
        "network_policy_monitoring_namespaces", "network_policy_operator_pods", mode="before"
    )
    @classmethod
    def _selector(cls, value: object) -> object:
        return parse_label_selector(value) if isinstance(value, str) else value


# A label key is an optional DNS subdomain prefix and a name; a value is a name or empty.
_LABEL_NAME = r"[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_LABEL_KEY = re.compile(rf"(?:[a-z0-9](?:[-a-z0-9.]{{0,251}}[a-z0-9])?/)?{_LABEL_NAME}")
_LABEL_VALUE = re.compile(f"(?:{_LABEL_NAME})?")
_SET_BASED = re.compile(r"(?P<key>[^\s!=(),]+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)")
_EQUALITY = re.compile(r"(?P<key>[^\s!=(),]+)\s*(?P<op>==|=|!=)\s*(?P<value>[^\s!=(),]*)")
_ABSENT = re.compile(r"!\s*(?P<key>[^\s!=(),]+)")
_PRESENT = re.compile(r"(?P<key>[^\s!=(),]+)")


def parse_label_selector(text: str) -> dict[str, Any]:
    """A selector in kubectl's `-l` syntax (`a=b,c!=d,e in (f,g),h notin (i),j,!k`) as the
    LabelSelector object of the API (matchLabels, matchExpressions); "" selects everything.

    The syntax users already try out with `kubectl get ... -l`; what the API's LabelSelector
    cannot say (`<`, `>`) or a malformed key is refused at start, not by the API server on
    the first job.
    """
    labels: dict[str, str] = {}
    expressions: list[dict[str, Any]] = []
    for part in _split_requirements(text):
        if match := _SET_BASED.fullmatch(part):
            if not match["values"].strip():
                raise ValueError(f"label selector {text!r}: {part!r} lists no values")
            values = [v.strip() for v in match["values"].split(",")]
            operator = "In" if match["op"] == "in" else "NotIn"
            expressions.append(
                {"key": _key(match["key"]), "operator": operator, "values": _values(values)}
            )
        elif match := _EQUALITY.fullmatch(part):
            key, (value,) = _key(match["key"]), _values([match["value"]])
            if match["op"] == "!=":
                expressions.append({"key": key, "operator": "NotIn", "values": [value]})
            elif labels.setdefault(key, value) != value:
                raise ValueError(f"label selector {text!r} asks {key} for two values")
        elif match := _ABSENT.fullmatch(part):
            expressions.append({"key": _key(match["key"]), "operator": "DoesNotExist"})
        elif match := _PRESENT.fullmatch(part):
            expressions.append({"key": _key(match["key"]), "operator": "Exists"})
        else:
            raise ValueError(f"label selector {text!r}: cannot read {part!r}")
    selector: dict[str, Any] = {}
    if labels:
        selector["matchLabels"] = labels
    if expressions:
        selector["matchExpressions"] = expressions
    return selector


def _split_requirements(text: str) -> list[str]:
    """The comma-separated requirements of a selector (commas inside `( )` are values')."""
    parts: list[str] = []
    depth = 0
    current = ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    parts.append(current.strip())
    if parts == [""]:
        return []
    if "" in parts or depth != 0:
        raise ValueError(f"label selector {text!r} is not well formed")
    return parts


def _key(key: str) -> str:
    if not _LABEL_KEY.fullmatch(key):
        raise ValueError(f"{key!r} is not a label key")
    return key


def _values(values: list[str]) -> list[str]:
    for value in values:
        if not _LABEL_VALUE.fullmatch(value):
            raise ValueError(f"{value!r} is not a label value")
    return values
