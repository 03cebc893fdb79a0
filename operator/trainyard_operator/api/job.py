"""A parsed TrainingJob object: the metadata the operator needs plus typed spec and status.

Builders and the status logic take this instead of raw dicts, so they never guess at
field names or defaults.
"""

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from trainyard_operator.api.spec import TrainingJobSpec
from trainyard_operator.api.status import TrainingJobStatus


class TrainingJob(BaseModel):
    """One TrainingJob as read from the API server."""

    model_config = ConfigDict(frozen=True)

    name: str
    namespace: str
    uid: str
    generation: int = 1
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    creation_timestamp: str | None = None
    deletion_timestamp: str | None = None
    spec: TrainingJobSpec
    status: TrainingJobStatus = Field(default_factory=TrainingJobStatus)

    @property
    def gpus(self) -> int:
        """nvidia.com/gpu per worker: spec.resources.gpus, or for "auto" the operator's choice
        recorded in status.gpus (0 until it is made, which happens before any pod exists)."""
        gpus = self.spec.resources.gpus
        if gpus == "auto":
            return self.status.gpus.per_worker if self.status.gpus is not None else 0
        return gpus

    @property
    def procs(self) -> int:
        """Processes per worker with "auto" resolved (one per GPU, else 1)."""
        return self.spec.procs_for(self.gpus)

    @property
    def world_size(self) -> int:
        """Total training processes."""
        return self.spec.workers * self.procs

    @classmethod
    def from_object(cls, body: Mapping[str, Any]) -> "TrainingJob":
        """Parse an object as the API server returns it (camelCase, defaults applied)."""
        meta = body.get("metadata") or {}
        return cls(
            name=meta["name"],
            namespace=meta.get("namespace", "default"),
            uid=meta.get("uid", ""),
            generation=meta.get("generation", 1),
            labels=dict(meta.get("labels") or {}),
            annotations=dict(meta.get("annotations") or {}),
            creation_timestamp=meta.get("creationTimestamp"),
            deletion_timestamp=meta.get("deletionTimestamp"),
            spec=TrainingJobSpec.model_validate(body.get("spec") or {}),
            status=TrainingJobStatus.model_validate(body.get("status") or {}),
        )
