"""Names the API, the operator and the trainer agree on: group, labels, env, ports.

docs/contracts.md explains each; keep the two in step.
"""

from typing import Final

GROUP: Final = "trainyard.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "TrainingJob"
PLURAL: Final = "trainingjobs"
SINGULAR: Final = "trainingjob"
SHORT_NAMES: Final = ("tj",)
CATEGORIES: Final = ("trainyard",)

# Labels every child carries.
LABEL_JOB_NAME: Final = f"{GROUP}/job-name"
LABEL_WORKER_INDEX: Final = f"{GROUP}/worker-index"
LABEL_RESTART: Final = f"{GROUP}/restart"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
MANAGED_BY: Final = "trainyard-operator"

# torchrun's static rendezvous port (Kubeflow v2 and JobSet use 29500 too).
MASTER_PORT: Final = 29500
METRICS_PORT: Final = 9400
TERMINATION_LOG: Final = "/dev/termination-log"
#: The worker pod's trainer container; sidecars from podTemplate sit beside it, and a kubelet
#: reports containerStatuses sorted by name, so readers find it by this name, never by place.
TRAINER_CONTAINER: Final = "trainer"
OUTPUT_VOLUME: Final = "output"
# torchrun under a thin launcher that keeps the workers' exit codes apart (torchrun itself
# exits 1 for a bad config, a killed worker and a forwarded SIGTERM alike, which would make
# the ExitCode restart policy treat a preemption as permanent); it reads the same PET_* env.
DEFAULT_COMMAND: Final = ("python", "-m", "trainyard_trainer.launch")

GPU_RESOURCE: Final = "nvidia.com/gpu"

# Environment names that the pod contract sets; spec.env may not set them, nor any name
# starting with one of RESERVED_ENV_PREFIXES.
RESERVED_ENV: Final = (
    "MASTER_ADDR",
    "MASTER_PORT",
    "NODE_RANK",
    "WORLD_SIZE",
    "RANK",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "PYTHONUNBUFFERED",
)
RESERVED_ENV_PREFIXES: Final = ("PET_", "TRAINYARD_")

# Limits the CRD enforces (DNS label of 63 minus "-worker-1023", and the pod count cap).
MAX_WORKERS: Final = 1024
MAX_JOB_NAME_LENGTH: Final = 48
