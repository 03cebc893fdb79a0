"""The operator's settings, read once from the environment (TRAINYARD_* variables).

`main` builds one `OperatorSettings` at start-up; the handlers read it from kopf's memo, and
the Helm chart sets the same variables on the operator's Deployment. Bad values stop the
operator at start with pydantic's error naming the variable.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_TRAINER_IMAGE = "ghcr.io/trainyard/trainer:0.1.0"


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
    progress_interval_seconds: Annotated[float, Field(gt=0, le=3600)] = 5.0
    """TRAINYARD_PROGRESS_INTERVAL_SECONDS: how often worker 0's metrics are read."""
    progress_timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 1.0
    """TRAINYARD_PROGRESS_TIMEOUT_SECONDS: timeout of one metrics read."""
    api_concurrency: Annotated[int, Field(ge=1, le=256)] = 16
    """TRAINYARD_API_CONCURRENCY: API calls in flight at once (client threads)."""
    api_timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 30.0
    """TRAINYARD_API_TIMEOUT_SECONDS: the longest one API request (not a watch) may take;
    a request that hangs (an API server cut off mid-answer) fails and is retried instead of
    holding a client thread, and the job it serves, forever."""

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
