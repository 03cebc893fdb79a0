"""Reads and writes the Lease for `lease.claim`, and keeps it renewed from a thread.

Synchronous on purpose: the standby waits before kopf's event loop exists, and the renewal
thread must keep time even when the operator's loop is busy. Every write carries the
resourceVersion it read, so two candidates never both win the same round (409 → lost).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from trainyard_operator.leadership.lease import LeaseRecord, LeaseTiming, claim, released

log = logging.getLogger(__name__)


class LeaseElector:
    """One candidate for the Lease `namespace/name`."""

    def __init__(
        self,
        api: client.ApiClient,
        *,
        namespace: str,
        name: str,
        identity: str,
        timing: LeaseTiming,
        request_timeout: float,
    ) -> None:
        self._leases = client.CoordinationV1Api(api)
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.timing = timing
        self._timeout = min(request_timeout, timing.retry * 2)
        # what this candidate last saw, and since when (monotonic): the only clock it trusts
        self._seen: tuple[str, LeaseRecord] | None = None
        self._seen_since = 0.0
        self._version = ""
        self._held: LeaseRecord | None = None
        self._last_renewal = 0.0
        self._holder_logged: str | None = None
        # one round at a time: the renewal thread and `release` both read-then-write
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    # --- one round ---------------------------------------------------------------------------

    def try_once(self) -> bool:
        """Take or renew the Lease if this candidate may; True when it holds it now."""
        with self._lock:
            return self._round()

    def _round(self) -> bool:
        try:
            current = self._read()
            now = datetime.now(UTC)
            wanted = claim(
                current,
                self.identity,
                unchanged_for=time.monotonic() - self._seen_since,
                now=now,
                timing=self.timing,
            )
            if wanted is None:
                self._held = None
                self._note_holder(current.holder if current else None)
                return False
            self._write(wanted, create=current is None)
        except ApiException as err:
            if err.status == 409:  # another candidate wrote first: the next read tells who
                return False
            log.warning("lease %s/%s: %s %s", self.namespace, self.name, err.status, err.reason)
            return False
        except OSError as err:  # connection refused or timed out: the API server is away
            log.warning("lease %s/%s: %s", self.namespace, self.name, err)
            return False
        if self._held is None:
            log.info("%s holds the lease %s/%s", self.identity, self.namespace, self.name)
        self._held = wanted
        self._last_renewal = time.monotonic()
        return True

    def _read(self) -> LeaseRecord | None:
        try:
            lease = self._leases.read_namespaced_lease(
                self.name, self.namespace, _request_timeout=self._timeout
            )
        except ApiException as err:
            if err.status == 404:
                self._seen = None
                self._seen_since = time.monotonic()
                return None
            raise
        spec = lease.spec or client.V1LeaseSpec()
        record = LeaseRecord(
            holder=spec.holder_identity or None,
            duration_seconds=int(spec.lease_duration_seconds or 0),
            acquired=spec.acquire_time,
            renewed=spec.renew_time,
            transitions=int(spec.lease_transitions or 0),
        )
        self._version = str(lease.metadata.resource_version if lease.metadata else "")
        seen = (self._version, record)
        if seen != self._seen:
            self._seen = seen
            self._seen_since = time.monotonic()
        return record

    def _write(self, record: LeaseRecord, *, create: bool) -> None:
        # a dict, not a V1Lease: the client would write MicroTime without its microseconds
        # whenever they are 0, which the API server refuses
        body: Any = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "holderIdentity": record.holder,
                "leaseDurationSeconds": record.duration_seconds,
                "acquireTime": _micro(record.acquired),
                "renewTime": _micro(record.renewed),
                "leaseTransitions": record.transitions,
            },
        }
        if create:
            self._leases.create_namespaced_lease(
                self.namespace, body, _request_timeout=self._timeout
            )
            return
        body["metadata"]["resourceVersion"] = self._version
        self._leases.replace_namespaced_lease(
            self.name, self.namespace, body, _request_timeout=self._timeout
        )

    def _note_holder(self, holder: str | None) -> None:
        if holder != self._holder_logged:
            log.info(
                "standing by: the lease %s/%s is held by %s", self.namespace, self.name, holder
            )
            self._holder_logged = holder

    # --- the life of a candidate -------------------------------------------------------------

    def acquire(self, stop: threading.Event) -> bool:
        """Wait until this candidate holds the Lease (True) or `stop` is set (False)."""
        while not stop.is_set():
            if self.try_once():
                return True
            stop.wait(self.timing.retry)
        return False

    def keep(self, on_lost: Callable[[], None]) -> threading.Thread:
        """Renew from a daemon thread; call `on_lost` once renewal has failed for the renew
        deadline, or another candidate has taken the Lease."""

        def renew() -> None:
            while not self._stopping.wait(self.timing.retry):
                if self.try_once():
                    continue
                if self._held is None or (
                    time.monotonic() - self._last_renewal > self.timing.renew_deadline
                ):
                    on_lost()
                    return

        thread = threading.Thread(target=renew, name="lease-renewal", daemon=True)
        thread.start()
        return thread

    def release(self) -> None:
        """Give the Lease up on a clean stop, so a standby takes over without waiting."""
        self._stopping.set()
        with self._lock:
            if self._held is None:
                return
            try:
                current = self._read()  # the renewal thread may have written since
                if current is None or current.holder != self.identity:
                    return
                self._write(released(current, datetime.now(UTC)), create=False)
            except ApiException as err:
                log.warning(
                    "could not release the lease %s/%s: %s %s",
                    self.namespace,
                    self.name,
                    err.status,
                    err.reason,
                )
                return
            except OSError as err:
                log.warning("could not release the lease %s/%s: %s", self.namespace, self.name, err)
                return
            self._held = None
        log.info("released the lease %s/%s", self.namespace, self.name)


def _micro(moment: datetime | None) -> str | None:
    """A MicroTime as the API server writes it."""
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
