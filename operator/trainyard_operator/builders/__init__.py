"""Pure builders: a parsed `TrainingJob` in, child manifests (plain dicts) out. No I/O.

The handlers call `pods.worker_pod`, `service.headless_service`, `podgroup.pod_group` and
`networkpolicy.network_policy` and send what they return to the API server unchanged;
everything the pod contract of docs/contracts.md fixes (names, env, labels, ownership,
security) is decided here, so it is unit-tested without a cluster. `BuildSettings` carries
the few operator-wide choices.
"""

from trainyard_operator.builders.settings import (
    BuildSettings,
    NetworkPolicySettings,
    PodGroupFlavor,
)

__all__ = ["BuildSettings", "NetworkPolicySettings", "PodGroupFlavor"]
