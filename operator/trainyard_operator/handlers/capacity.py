"""What a `gpus: auto` choice is made from: GPU nodes and the namespace's GPU quota, read
into the pure views of `status.gpus`.

- Nodes come from kopf's watch (an index of GPU nodes, registered only with
  TRAINYARD_READ_NODES, which needs the read-only cluster-scoped list/watch rule of the
  chart's files/node-reader-rules.yaml). Each node is kept as a small `NodeView` (name,
  allocatable GPUs, labels, taints, cordoned, Ready); nodes without allocatable
  nvidia.com/gpu are not kept at all, so the memory follows the GPU nodes, not the cluster.
- ResourceQuotas are listed in the job's namespace when a gang is due (one paged LIST; the
  `list` rule is in files/operator-rules.yaml). A refusal is reported in the choice's
  message instead of stopping the job: the API server still enforces the quota on the pods.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from kubernetes.utils.quantity import parse_quantity

from trainyard_operator.api.constants import GPU_RESOURCE
from trainyard_operator.clients import ForbiddenError
from trainyard_operator.handlers.runtime import Runtime
from trainyard_operator.status.gpus import (
    QUOTA_KEYS,
    GpuCapacity,
    NodeView,
    QuotaView,
    ScopeRequirement,
    Taint,
)

log = logging.getLogger(__name__)


def _count(value: object) -> int | None:
    """A quantity as a whole count (GPUs are whole), None when it is not one."""
    try:
        amount: Decimal = parse_quantity(value)  # type: ignore[no-untyped-call]
    except (ValueError, InvalidOperation, TypeError):
        return None
    return max(0, int(amount))


def node_view(body: Mapping[str, Any]) -> NodeView | None:
    """The node as the rule reads it; None for a node without allocatable GPUs."""
    status = body.get("status") or {}
    gpus = _count((status.get("allocatable") or {}).get(GPU_RESOURCE, "0")) or 0
    if gpus <= 0:
        return None
    spec = body.get("spec") or {}
    meta = body.get("metadata") or {}
    conditions = status.get("conditions") or []
    return NodeView(
        name=str(meta.get("name", "")),
        gpus=gpus,
        labels={str(k): str(v) for k, v in (meta.get("labels") or {}).items()},
        taints=tuple(
            Taint(str(t.get("key", "")), str(t.get("value") or ""), str(t.get("effect", "")))
            for t in spec.get("taints") or []
        ),
        unschedulable=bool(spec.get("unschedulable")),
        ready=any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions),
    )


def quota_view(body: Mapping[str, Any]) -> QuotaView | None:
    """A ResourceQuota's GPU limit and scopes; None when it does not limit GPUs."""
    spec = body.get("spec") or {}
    hard = spec.get("hard") or {}
    limits = [(count, key) for key in QUOTA_KEYS if (count := _count(hard.get(key))) is not None]
    if not limits:
        return None
    gpus, key = min(limits)
    scopes = [ScopeRequirement(str(s)) for s in spec.get("scopes") or []]
    for expression in (spec.get("scopeSelector") or {}).get("matchExpressions") or []:
        scopes.append(
            ScopeRequirement(
                str(expression.get("scopeName", "")),
                str(expression.get("operator", "Exists")),
                tuple(str(v) for v in expression.get("values") or []),
            )
        )
    name = str((body.get("metadata") or {}).get("name", ""))
    return QuotaView(name=name, gpus=gpus, key=key, scopes=tuple(scopes))


async def read_capacity(runtime: Runtime, namespace: str) -> GpuCapacity:
    """The GPU nodes (from the watch, or None without node reads) and the namespace's GPU
    quotas, for one choice."""
    settings = runtime.settings
    nodes: tuple[NodeView, ...] | None = None
    if settings.read_nodes:
        index = runtime.nodes
        nodes = tuple(index.get("", ()) or ()) if index is not None else ()
    quotas: list[QuotaView] = []
    error = ""
    try:
        for body in await runtime.client.list_resource_quotas(namespace):
            view = quota_view(body)
            if view is not None:
                quotas.append(view)
    except ForbiddenError as err:
        error = str(err)
        log.warning("cannot list ResourceQuotas in %s: %s", namespace, err)
    return GpuCapacity(
        nodes=nodes,
        quotas=tuple(quotas),
        fallback=settings.gpu_auto_fallback,
        quota_error=error,
    )
