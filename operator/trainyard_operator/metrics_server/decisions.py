"""What the secure metrics endpoint answers, as pure functions of the reviews' results.

No I/O here: `server` reads the request, `reviews` asks the API server, and these functions
turn a header and two review statuses into 401, 403 or 200, so every answer can be checked
without a cluster. `VerdictCache` remembers answers per token hash for a few seconds.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: What a client must be allowed: `get` on the non-resource URL /metrics, the same attributes
#: controller-runtime's secure metrics check (so the ClusterRoles written for those apply).
METRICS_PATH = "/metrics"
METRICS_VERB = "get"

#: How long an answer is reused. Allowed ones longer, so a scrape every 15 s reviews its token
#: about every other scrape; refusals shortly, so a fresh RoleBinding takes effect soon. A
#: revoked right or token still works for at most ALLOWED_TTL.
ALLOWED_TTL_SECONDS = 30.0
REFUSED_TTL_SECONDS = 10.0
#: Distinct tokens remembered at once; the oldest go first, so random tokens cannot grow it.
CACHE_SIZE = 1024


@dataclass(frozen=True)
class User:
    """Who the API server says a token belongs to (TokenReview status.user)."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    """The HTTP status to answer with and a short reason for the body (never the token)."""

    status: int
    reason: str

    @property
    def allowed(self) -> bool:
        return self.status == 200


NO_TOKEN = Verdict(401, "Unauthorized: a bearer token is required")
INVALID_TOKEN = Verdict(401, "Unauthorized: the bearer token was not accepted")
REVIEW_FAILED = Verdict(500, "Internal Server Error: the request could not be reviewed")


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None when there is none.

    The scheme is case-insensitive (RFC 9110); a header of another scheme, or an empty or
    whitespace-bearing token, counts as no token.
    """
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or any(c.isspace() for c in token):
        return None
    return token


def token_key(token: str) -> str:
    """The cache key of a token: its SHA-256, so the cache never holds tokens themselves."""
    return hashlib.sha256(token.encode()).hexdigest()


def authenticated_user(status: Mapping[str, Any]) -> User | None:
    """The user of a TokenReview's status, or None when the token was not authenticated."""
    if status.get("authenticated") is not True:
        return None
    user = status.get("user") or {}
    username = user.get("username")
    if not isinstance(username, str) or not username:
        return None
    extra = {
        str(key): tuple(str(v) for v in values or ())
        for key, values in (user.get("extra") or {}).items()
    }
    return User(
        username=username,
        uid=str(user.get("uid") or ""),
        groups=tuple(str(g) for g in user.get("groups") or ()),
        extra=extra,
    )


def access_review(user: User) -> dict[str, Any]:
    """The SubjectAccessReview asking whether `user` may get /metrics."""
    spec: dict[str, Any] = {
        "user": user.username,
        "groups": list(user.groups),
        "nonResourceAttributes": {"path": METRICS_PATH, "verb": METRICS_VERB},
    }
    if user.uid:
        spec["uid"] = user.uid
    if user.extra:
        spec["extra"] = {key: list(values) for key, values in user.extra.items()}
    return {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": spec,
    }


def access_allowed(status: Mapping[str, Any]) -> bool:
    """A SubjectAccessReview's status allows only with allowed: true and no denial."""
    return status.get("allowed") is True and status.get("denied") is not True


def verdict(user: User | None, allowed: bool) -> Verdict:
    """The answer for a token: 401 unless authenticated, 403 unless allowed, else 200."""
    if user is None:
        return INVALID_TOKEN
    if not allowed:
        return Verdict(403, f"Forbidden: {user.username} may not {METRICS_VERB} {METRICS_PATH}")
    return Verdict(200, "OK")


class VerdictCache:
    """Recent verdicts by token key, each for its TTL, at most `size` of them (LRU).

    Not thread-safe: the server uses it from its one event loop. `now` is passed in, so
    expiry is tested without waiting.
    """

    def __init__(
        self,
        size: int = CACHE_SIZE,
        allowed_ttl: float = ALLOWED_TTL_SECONDS,
        refused_ttl: float = REFUSED_TTL_SECONDS,
    ) -> None:
        self._size = size
        self._allowed_ttl = allowed_ttl
        self._refused_ttl = refused_ttl
        self._entries: OrderedDict[str, tuple[float, Verdict]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str, now: float) -> Verdict | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, cached = entry
        if now >= expires:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return cached

    def put(self, key: str, answer: Verdict, now: float) -> None:
        ttl = self._allowed_ttl if answer.allowed else self._refused_ttl
        self._entries[key] = (now + ttl, answer)
        self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)
