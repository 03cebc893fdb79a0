"""The TrainingJob API (trainyard.dev/v1alpha1): pydantic models of spec and status.

These models are the single source of truth: the CRD's OpenAPI schema is generated from them
(`crdgen`), the operator parses objects with them, and the API reference in the docs is
rendered from their descriptions. Nothing here does I/O.
"""

from trainyard_operator.api.constants import API_VERSION, GROUP, KIND, PLURAL, VERSION
from trainyard_operator.api.job import TrainingJob
from trainyard_operator.api.spec import (
    CheckpointSpec,
    CompressionStage,
    DistillStage,
    EnvVar,
    OutputSpec,
    PodTemplateOverrides,
    PruneStage,
    QuantizeStage,
    Resources,
    RunPolicy,
    Scheduling,
    TrainerConfig,
    TrainingJobSpec,
)
from trainyard_operator.api.status import (
    Condition,
    GpuChoice,
    Progress,
    Results,
    StageResult,
    TrainingJobStatus,
    WorkerCounts,
)

__all__ = [
    "API_VERSION",
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "CheckpointSpec",
    "CompressionStage",
    "Condition",
    "DistillStage",
    "EnvVar",
    "GpuChoice",
    "OutputSpec",
    "PodTemplateOverrides",
    "Progress",
    "PruneStage",
    "QuantizeStage",
    "Resources",
    "Results",
    "RunPolicy",
    "Scheduling",
    "StageResult",
    "TrainerConfig",
    "TrainingJob",
    "TrainingJobSpec",
    "TrainingJobStatus",
    "WorkerCounts",
]
