"""The operator's settings, read once from the environment (TRAINYARD_* variables).

`main` builds one `OperatorSettings` at start-up; the handlers read it from kopf's memo, and
the Helm chart sets the same variables on the operator's Deployment. Bad values stop the
operator at start with pydantic's error naming the variable.
"""

from typing import Annotated, Literal

from pydantic import Field, field_validator
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
