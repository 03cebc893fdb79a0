"""Counting API requests per client from the API server's audit log (bench/vs_kubeflow.py).

The embedded cluster is started with `POLICY` (every request at Metadata level, node Leases
left out), so each request appears once in `logs/audit.log` with who made it
(`user.username`: every controller runs under its own ServiceAccount), its verb and the
resource it touched. A watch is counted when its response starts; any other request when it
completes. The log is written synchronously (the log backend's blocking mode), so the byte
offset taken before and after a measured window holds exactly that window's requests.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

#: Every request, at Metadata level (no bodies); node heartbeats (Leases) are noise here.
POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: None
    resources: [{group: coordination.k8s.io, resources: [leases]}]
  - level: Metadata
"""


@dataclass(frozen=True)
class Request:
    """One request as the audit log saw it."""

    user: str
    verb: str
    resource: str  # "pods", "pods/status", "trainingjobs/status"; a non-resource URL's path
    namespace: str
    code: int


def read_requests(path: Path, start: int, end: int | None = None) -> list[Request]:
    """The requests logged between two byte offsets of the audit log (end: its current end)."""
    out: list[Request] = []
    with path.open("rb") as log:
        log.seek(start)
        data = log.read() if end is None else log.read(max(0, end - start))
    for line in data.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue  # a line cut at the window's edge
        stage, verb = event.get("stage"), event.get("verb", "")
        if not (
            (stage == "ResponseComplete" and verb != "watch")
            or (stage == "ResponseStarted" and verb == "watch")
        ):
            continue
        ref = event.get("objectRef") or {}
        resource = ref.get("resource", "")
        if ref.get("subresource"):
            resource += "/" + ref["subresource"]
        if not ref:  # discovery and other non-resource URLs: their path
            resource = str(event.get("requestURI", "")).split("?", 1)[0]
        out.append(
            Request(
                user=(event.get("user") or {}).get("username", ""),
                verb=verb,
                resource=resource,
                namespace=ref.get("namespace", ""),
                code=int((event.get("responseStatus") or {}).get("code", 0)),
            )
        )
    return out


def offset(path: Path) -> int:
    """Where the audit log ends now."""
    return path.stat().st_size if path.exists() else 0


@dataclass
class Counts:
    """Requests of one group of clients, by "verb resource" (watches apart)."""

    by_call: Counter[str] = field(default_factory=Counter)
    watches: int = 0

    @property
    def total(self) -> int:
        """Requests other than watches."""
        return sum(self.by_call.values())

    def per_job(self, jobs: int) -> dict[str, float]:
        return {
            call: round(n / jobs, 2)
            for call, n in sorted(self.by_call.items(), key=lambda item: -item[1])
        }


def count(requests: list[Request], users: set[str], namespace: str | None = None) -> Counts:
    """The requests of `users` (in `namespace` only, when given)."""
    counts = Counts()
    for request in requests:
        if request.user not in users:
            continue
        if namespace is not None and request.namespace != namespace:
            continue
        if request.verb == "watch":
            counts.watches += 1
        else:
            counts.by_call[f"{request.verb} {request.resource}"] += 1
    return counts


def by_user(requests: list[Request], namespace: str, exclude: set[str]) -> Counter[str]:
    """Non-watch requests in `namespace` per client, leaving out `exclude` (what the control
    plane and the node agent do for the objects a system created there)."""
    return Counter(
        short_user(r.user)
        for r in requests
        if r.namespace == namespace and r.user not in exclude and r.verb != "watch"
    )


def short_user(user: str) -> str:
    """`system:serviceaccount:kube-system:endpoint-controller` -> `endpoint-controller`."""
    return user.rsplit(":", 1)[-1] if user.startswith("system:serviceaccount:") else user
