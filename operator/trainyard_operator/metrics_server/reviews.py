"""Asks the API server about a metrics client: a TokenReview, then a SubjectAccessReview.

The only part of the secure metrics endpoint that makes API calls. Synchronous (the official
client is); the server runs these calls on a small thread pool of its own. The answers are
read raw (`_preload_content=False`): the TokenReview the API server returns repeats the token
in its spec, and the client logs deserialized bodies at DEBUG, so the token never reaches a
log line. Errors keep only the HTTP status and reason for the same reason.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from trainyard_operator.metrics_server.decisions import User, access_review


class ReviewError(Exception):
    """The API server did not answer a review (unreachable, timed out, or refused it: 403
    when the operator lacks files/metrics-auth-rules.yaml). The message never holds the
    token; `status` is the HTTP status when there was an answer."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class KubeReviews:
    """TokenReviews and SubjectAccessReviews through one `kubernetes` ApiClient."""

    def __init__(self, api: client.ApiClient, *, timeout: float) -> None:
        self._authentication = client.AuthenticationV1Api(api)
        self._authorization = client.AuthorizationV1Api(api)
        self._timeout = timeout

    def review_token(self, token: str) -> dict[str, Any]:
        """The status of a TokenReview of `token` (audiences: the API server's own)."""
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token},
        }
        return self._status("TokenReview", self._authentication.create_token_review, body)

    def review_access(self, user: User) -> dict[str, Any]:
        """The status of a SubjectAccessReview: may `user` get /metrics?"""
        return self._status(
            "SubjectAccessReview",
            self._authorization.create_subject_access_review,
            access_review(user),
        )

    def _status(
        self, kind: str, create: Callable[..., Any], body: Mapping[str, Any]
    ) -> dict[str, Any]:
        try:
            response = create(body, _preload_content=False, _request_timeout=self._timeout)
            try:
                data = json.loads(response.read())
            finally:
                response.release_conn()
        # `from None`: the original exceptions carry request details; these messages are all
        # a log line needs
        except ApiException as err:
            raise ReviewError(f"{kind}: HTTP {err.status} {err.reason}", err.status) from None
        except (HTTPError, OSError, ValueError) as err:
            raise ReviewError(f"{kind}: {type(err).__name__}") from None
        status = data.get("status") if isinstance(data, dict) else None
        return status if isinstance(status, dict) else {}
