"""Leader election through a coordination.k8s.io Lease, so the chart can run standby replicas.

`lease` decides (pure: who may hold the Lease given what a candidate has observed); `elector`
reads and writes the Lease and keeps it renewed; `standby` answers liveness probes while a
replica waits. `main` waits for the Lease before it starts
kopf and exits at once when it can no longer renew it.
"""

from trainyard_operator.leadership.elector import LeaseElector
from trainyard_operator.leadership.lease import LeaseRecord, LeaseTiming, claim
from trainyard_operator.leadership.standby import StandbyHealth

__all__ = ["LeaseElector", "LeaseRecord", "LeaseTiming", "StandbyHealth", "claim"]
