"""The one module that talks to the Kubernetes API server (besides kopf's own watches).

Typed async functions over the official `kubernetes` client: its calls are synchronous, so
each runs on a bounded thread pool (TRAINYARD_API_CONCURRENCY) and the event loop never
blocks. Every request first takes a token from the operator's own rate limit
(TRAINYARD_API_QPS, bucket TRAINYARD_API_BURST; kopf's watches are not limited), so a flood
of new jobs queues here instead of flooding the API server. Every request is counted by
verb in `trainyard_api_requests_total`, which is how the benchmark reports API requests per
job. Responses the operator does not read are not
deserialized (`_preload_content=False`): pods are large and the handlers only need to know
that a call worked. Idempotence lives here too — "already exists" on create and "not found"
or "uid changed" on delete are outcomes, not errors — so a restarted operator can replay a
plan safely.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from typing import Any

from aiolimiter import AsyncLimiter
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from trainyard_operator.api.constants import GROUP, KIND, LABEL_JOB_NAME, PLURAL, VERSION
from trainyard_operator.builders import PodGroupFlavor
from trainyard_operator.metrics import OperatorMetrics

log = logging.getLogger(__name__)

#: Answers after which a request is worth repeating (overload, an API server going away).
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Objects per page of the consistency pass's lists (bounded memory per response).
LIST_PAGE = 500

# API groups of the two PodGroup flavours the builders know, and their resource paths.
POD_GROUP_APIS: Mapping[PodGroupFlavor, tuple[str, str, str]] = {
    "scheduler-plugins": ("scheduling.x-k8s.io", "v1alpha1", "podgroups"),
    "volcano": ("scheduling.volcano.sh", "v1beta1", "podgroups"),
}


class ConflictError(Exception):
    """The object changed since it was read (HTTP 409 on an update with a resourceVersion)."""


class JobGoneError(Exception):
    """The TrainingJob no longer exists (HTTP 404 on its status)."""


class ForbiddenError(Exception):
    """The operator's ServiceAccount may not make this request (HTTP 403)."""


class RejectedError(Exception):
    """The API server refused to create an object (403/400/422: Pod Security, a quota,
    a webhook, an invalid podTemplate); the message is the server's own."""


def load_configuration() -> client.Configuration:
    """In-cluster credentials when running in a pod, else $KUBECONFIG (or ~/.kube/config)."""
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    return configuration


def missing_verbs(
    api: client.ApiClient, resource: str, verbs: tuple[str, ...], *, timeout: float
) -> list[str]:
    """The verbs on the cluster-scoped core `resource` that these credentials lack, asked with
    SelfSubjectAccessReviews (which every authenticated client may create and which read
    nothing of the resource). Used once at start, before kopf runs."""
    authorization = client.AuthorizationV1Api(api)
    missing = []
    for verb in verbs:
        review = client.V1SelfSubjectAccessReview(
            spec=client.V1SelfSubjectAccessReviewSpec(
                resource_attributes=client.V1ResourceAttributes(
                    verb=verb, resource=resource, group=""
                )
            )
        )
        answer = authorization.create_self_subject_access_review(review, _request_timeout=timeout)
        if not (answer.status and answer.status.allowed):
            missing.append(verb)
    return missing


def _server_message(err: ApiException) -> str:
    """The `message` of the Status the API server answered with, else the HTTP reason."""
    try:
        status = json.loads(err.body or b"{}")
    except (TypeError, ValueError):
        status = {}
    message = status.get("message") if isinstance(status, dict) else None
    return str(message or f"HTTP {err.status} {err.reason}")


class KubeClient:
    """Async access to the few API calls the operator makes."""

    def __init__(
        self,
        api: client.ApiClient,
        metrics: OperatorMetrics,
        concurrency: int,
        *,
        timeout: float = 30.0,
        qps: float = 200.0,
        burst: int = 400,
    ) -> None:
        self._api = api
        self._timeout = timeout
        # a leaky bucket of `burst` requests that drains at `qps`: client-go's token bucket
        self._limiter = AsyncLimiter(burst, burst / qps)
        self._core = client.CoreV1Api(api)
        self._networking = client.NetworkingV1Api(api)
        self._custom = client.CustomObjectsApi(api)
        self._metrics = metrics
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="kube-api")

    @classmethod
    def from_environment(
        cls,
        metrics: OperatorMetrics,
        concurrency: int,
        *,
        timeout: float = 30.0,
        qps: float = 200.0,
        burst: int = 400,
    ) -> KubeClient:
        """In-cluster credentials when running in a pod, else $KUBECONFIG (or ~/.kube/config)."""
        configuration = load_configuration()
        # One connection per thread, so concurrent calls never queue on the urllib3 pool.
        configuration.connection_pool_maxsize = concurrency
        return cls(
            client.ApiClient(configuration),
            metrics,
            concurrency,
            timeout=timeout,
            qps=qps,
            burst=burst,
        )

    def close(self) -> None:
        """Stop the thread pool and close connections."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._api.close()  # type: ignore[no-untyped-call]

    async def _call(self, verb: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> bytes:
        """Run one API call on the pool (once the rate limit lets it); returns the raw
        response body."""
        if not self._limiter.has_capacity():
            waited = time.monotonic()
            await self._limiter.acquire()
            self._metrics.api_throttled.inc(time.monotonic() - waited)
        else:
            await self._limiter.acquire()
        self._metrics.api_requests.labels(verb=verb).inc()
        loop = asyncio.get_running_loop()
        # every request is bounded: connect and each read of the answer
        kwargs.setdefault("_request_timeout", self._timeout)
        return await loop.run_in_executor(
            self._pool, partial(_raw, fn, *args, _preload_content=False, **kwargs)
        )

    # --- children ---------------------------------------------------------------------------

    async def create_pod(self, namespace: str, body: Mapping[str, Any]) -> bool:
        """Create a pod; False when one of that name already exists."""
        return await self._create(self._core.create_namespaced_pod, namespace, body)

    async def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The pod as stored now; None when there is none of that name."""
        try:
            response = await self._call("get", self._core.read_namespaced_pod, name, namespace)
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        return _json(response)

    async def create_service(self, namespace: str, body: Mapping[str, Any]) -> bool:
        """Create a Service; False when it already exists."""
        return await self._create(self._core.create_namespaced_service, namespace, body)

    async def create_network_policy(self, namespace: str, body: Mapping[str, Any]) -> bool:
        """Create a NetworkPolicy; False when it already exists."""
        return await self._create(
            self._networking.create_namespaced_network_policy, namespace, body
        )

    async def create_pod_group(
        self, flavor: PodGroupFlavor, namespace: str, body: Mapping[str, Any]
    ) -> bool:
        """Create a PodGroup of the given flavour; False when it already exists."""
        group, version, plural = POD_GROUP_APIS[flavor]
        create = partial(self._custom.create_namespaced_custom_object, group, version)
        return await self._create(lambda ns, b, **kw: create(ns, plural, b, **kw), namespace, body)

    async def _create(
        self, fn: Callable[..., Any], namespace: str, body: Mapping[str, Any]
    ) -> bool:
        try:
            await self._call("create", fn, namespace, body)
        except ApiException as err:
            if err.status == 409:
                return False
            if err.status in (400, 403, 422):
                # Retrying the same object gets the same answer until something changes
                # (the quota, the namespace's labels, the spec); the caller reports it.
                raise RejectedError(_server_message(err)) from err
            raise
        return True

    async def delete_pod(self, namespace: str, name: str, uid: str) -> None:
        """Delete a pod if it is still the one with this uid (a reused name is left alone)."""
        options = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=uid))
        try:
            await self._call(
                "delete",
                self._core.delete_namespaced_pod,
                name,
                namespace,
                body=options,
            )
        except ApiException as err:
            if err.status not in (404, 409):
                raise

    # --- the TrainingJob --------------------------------------------------------------------

    async def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The TrainingJob as stored now; None when it is gone."""
        try:
            response = await self._call(
                "get",
                self._custom.get_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
            )
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        return _json(response)

    async def patch_job_status(
        self, namespace: str, name: str, resource_version: str, status: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Merge-patch status, only if the job is still at resource_version; returns the job.

        The precondition is what keeps a decision made on a stale view (say, a gang restart
        counted twice) from ever being written: on ConflictError the caller re-reads, decides again.
        """
        patch = {"metadata": {"resourceVersion": resource_version}, "status": status}
        try:
            response = await self._call(
                "patch",
                self._custom.patch_namespaced_custom_object_status,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                patch,
                _content_type="application/merge-patch+json",
            )
        except ApiException as err:
            if err.status == 409:
                raise ConflictError(
                    f"{namespace}/{name} changed since resourceVersion {resource_version}"
                ) from err
            if err.status == 404:
                raise JobGoneError(f"{namespace}/{name} no longer exists") from err
            raise
        return _json(response)

    async def delete_job(self, namespace: str, name: str, uid: str) -> None:
        """Delete the TrainingJob (children follow through the garbage collector)."""
        options = client.V1DeleteOptions(
            preconditions=client.V1Preconditions(uid=uid), propagation_policy="Background"
        )
        try:
            await self._call(
                "delete",
                self._custom.delete_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                body=options,
            )
        except ApiException as err:
            if err.status not in (404, 409):
                raise

    async def post_event(
        self,
        job: Mapping[str, Any],
        event_type: str,
        reason: str,
        message: str,
        *,
        key: str = "",
    ) -> bool:
        """Record a core/v1 Event on the TrainingJob (what `kubectl describe tj` lists).

        With a `key` (which occurrence this is) the Event's name is made from the job's uid
        and the key, so posting the same occurrence again is a 409 and shows nothing twice.
        False when the API server could not be reached or was overloaded (worth a retry);
        True when it was posted, was there already, or was refused for good.
        """
        meta = job.get("metadata") or {}
        namespace = meta.get("namespace", "default")
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        prefix = f"{str(meta.get('name', 'trainingjob'))[:200]}."
        naming = {"generateName": prefix}
        if key:
            digest = hashlib.sha256(f"{meta.get('uid')}/{key}".encode()).hexdigest()[:16]
            naming = {"name": prefix + digest}
        body = {
            "metadata": {**naming, "namespace": namespace},
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": KIND,
                "name": meta.get("name"),
                "namespace": namespace,
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": event_type,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": "trainyard-operator"},
            "reportingComponent": "trainyard.dev/operator",
            "reportingInstance": "trainyard-operator",
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        where = f"{namespace}/{meta.get('name')}"
        try:
            await self._call(
                "create",
                self._core.create_namespaced_event,
                namespace,
                body,
            )
        except ApiException as err:
            if err.status == 409 and key:
                return True  # this occurrence was posted already (before a restart)
            # 401/403 too: a restarted API server refuses requests until its authenticators
            # and RBAC caches are ready (the caller bounds its tries)
            transient = err.status in {*TRANSIENT_STATUSES, 401, 403}
            # An event is a courtesy: losing one must not stop a reconcile.
            log.warning("could not post event %s on %s: %s", reason, where, err.reason)
            return not transient
        except (HTTPError, OSError) as err:  # connection refused or reset, timed out
            log.warning("could not post event %s on %s: %s", reason, where, err)
            return False
        return True

    # --- lists for the consistency pass -------------------------------------------------------

    async def list_jobs(self, namespaces: list[str]) -> tuple[int, dict[tuple[str, str], str]]:
        """Every TrainingJob (in `namespaces`, or all): the list's resourceVersion and the uid
        of each job by (namespace, name)."""
        found: dict[tuple[str, str], str] = {}
        version = 0
        scopes: list[str | None] = [*namespaces] or [None]
        for namespace in scopes:
            if namespace is None:
                pages = self._pages(self._custom.list_cluster_custom_object, GROUP, VERSION, PLURAL)
            else:
                pages = self._pages(
                    self._custom.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL
                )
            async for page_version, items in pages:
                version = version or page_version
                for item in items:
                    meta = item.get("metadata") or {}
                    found[(str(meta.get("namespace")), str(meta.get("name")))] = str(
                        meta.get("uid")
                    )
        return version, found

    async def list_worker_pods(self, namespaces: list[str]) -> tuple[int, frozenset[str]]:
        """UIDs of every worker pod (label trainyard.dev/job-name) and the list's version."""
        uids: set[str] = set()
        version = 0
        scopes: list[str | None] = [*namespaces] or [None]
        for namespace in scopes:
            if namespace is None:
                pages = self._pages(
                    self._core.list_pod_for_all_namespaces, label_selector=LABEL_JOB_NAME
                )
            else:
                pages = self._pages(
                    self._core.list_namespaced_pod, namespace, label_selector=LABEL_JOB_NAME
                )
            async for page_version, items in pages:
                version = version or page_version
                uids.update(str((item.get("metadata") or {}).get("uid")) for item in items)
        return version, frozenset(uids)

    # --- what a `gpus: auto` choice reads -----------------------------------------------------

    async def list_resource_quotas(self, namespace: str) -> list[dict[str, Any]]:
        """The namespace's ResourceQuotas (paged); ForbiddenError without the `list` rule."""
        items: list[dict[str, Any]] = []
        try:
            async for _, page in self._pages(self._core.list_namespaced_resource_quota, namespace):
                items.extend(page)
        except ApiException as err:
            if err.status == 403:
                raise ForbiddenError(_server_message(err)) from err
            raise
        return items

    async def _pages(
        self, fn: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> AsyncIterator[tuple[int, list[dict[str, Any]]]]:
        """A list in pages of LIST_PAGE; each with the first page's resourceVersion (the
        version of the whole list, which continued pages share)."""
        token: str | None = None
        version = 0
        while True:
            extra = {"_continue": token} if token else {}
            page = _json(await self._call("list", fn, *args, limit=LIST_PAGE, **kwargs, **extra))
            meta = page.get("metadata") or {}
            if not version:
                text = str(meta.get("resourceVersion") or "")
                version = int(text) if text.isdigit() else 0
            yield version, list(page.get("items") or [])
            token = meta.get("continue") or None
            if not token:
                return

    # --- discovery --------------------------------------------------------------------------

    async def pod_group_flavor(self) -> PodGroupFlavor | None:
        """Which PodGroup API the cluster serves (scheduler-plugins first), or None.

        Uses API discovery, which every authenticated client may read, so the operator needs
        no permission on CustomResourceDefinitions.
        """
        for flavor, (group, version, plural) in POD_GROUP_APIS.items():
            try:
                response = await self._call(
                    "get",
                    self._custom.get_api_resources,
                    group,
                    version,
                )
            except ApiException as err:
                if err.status in (403, 404):
                    continue
                raise
            resources = _json(response).get("resources") or []
            if any(r.get("name") == plural for r in resources):
                return flavor
        return None


def _raw(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> bytes:
    """Call and read the whole body in the worker thread, then free the connection.

    Reading here (not on the event loop) keeps one connection per thread; and the body must
    be read before the connection goes back to the pool, or it would be parsed as the next
    response's status line.
    """
    response = fn(*args, **kwargs)
    try:
        body: bytes = response.read()
    finally:
        response.release_conn()
    return body


def _json(body: bytes) -> dict[str, Any]:
    data = json.loads(body)
    if not isinstance(data, dict):
        raise ValueError("the API server returned a non-object")
    return data
