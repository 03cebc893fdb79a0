"""One `JobWorker` per TrainingJob: a small asyncio loop that reconciles that job alone.

kopf's watch events (the job itself, or any of its pods, see `handlers.registration`) wake
the worker; the worker then runs one pass: read the job and its pods from memory, ask
`status.reconcile` for a plan, write the status (with a resourceVersion precondition), then
delete, create and post events through `clients`. Timers (deadlines, TTL, the scheduling
timeout, progress reads) come back as a requeue delay, so an idle job costs no API requests.

Why a loop of our own and not `kopf.daemon`/`kopf.timer`: those require a finalizer on every
TrainingJob, which would make a job undeletable while the operator is down; with this loop
kopf writes nothing to the objects at all.

The worker remembers the creations and deletions it issued until the watch reports them
("expectations", as in Kubernetes controllers), so a burst of events before the cache
catches up does not repeat API calls; names are deterministic, so a repeat would be harmless
anyway (409 AlreadyExists).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, NoReturn

from pydantic import ValidationError

from trainyard_operator.api.job import TrainingJob
from trainyard_operator.api.status import Progress, TrainingJobStatus
from trainyard_operator.builders.networkpolicy import network_policy
from trainyard_operator.builders.podgroup import pod_group
from trainyard_operator.builders.pods import worker_pod
from trainyard_operator.builders.service import headless_service
from trainyard_operator.clients import ConflictError, JobGoneError, RejectedError
from trainyard_operator.handlers.capacity import read_capacity
from trainyard_operator.handlers.progress import read_trainers
from trainyard_operator.handlers.runtime import JobKey, Parked, Runtime
from trainyard_operator.logs import job_log
from trainyard_operator.status import (
    CreateFailure,
    Event,
    Plan,
    PodView,
    checkpoints_lost_on_restart,
    implied_events,
    reconcile,
)
from trainyard_operator.status.conditions import get_condition
from trainyard_operator.status.health import CONDITION as STRAGGLER
from trainyard_operator.status.health import StepCounters, StragglerPolicy, remember, step_seconds
from trainyard_operator.status.ownership import Ownership, sort_by_owner
from trainyard_operator.status.writes import counts_only

log = logging.getLogger(__name__)

# A burst of pod events (4 pods going Running within milliseconds) becomes one pass.
DEBOUNCE_SECONDS = 0.05
# An expectation the watch never confirmed is dropped after this long (then re-checked).
EXPECTATION_TTL_SECONDS = 30.0
ACTIVE_PHASES = ("Running", "Compressing")
# Events kept for another try while the API server is away (more are dropped: a user reads a
# few recent events, and an operator that keeps failing to post says so in its log).
MAX_UNPOSTED = 20
# How long one event is tried again before it is given up (an API server that refuses for
# good); by time, not by tries: a restarting API server's watch reconnects bring many passes.
POST_RETRY_SECONDS = 600.0
# A gang none of whose metrics endpoints answers is read again after twice the wait, up to
# this many progress intervals (a trainer still loading data, or a command that serves no
# metrics): reads that keep failing would otherwise cost a connection per worker every
# interval, and a job pass each (profiled: the larger part of an idle operator's CPU).
MAX_READ_BACKOFF_INTERVALS = 6


class JobWorker:
    """Reconciles one TrainingJob; lives as long as the job (or the operator) does."""

    def __init__(
        self,
        runtime: Runtime,
        key: JobKey,
        body: Mapping[str, Any] | None,
        parked: Parked | None = None,
    ) -> None:
        """A worker for the job `body`; with `parked`, one brought back for a job that was
        parked (see `Parked`), and with no body one that reads the job first (woken by a
        pod event)."""
        self.runtime = runtime
        self.key = key
        self.body: dict[str, Any] = _kept(body) if body is not None else _seed(key, parked)
        # the body must be read from the API server before the first decision
        self._refresh = body is None
        self.wake = asyncio.Event()
        self.wake.set()
        self._created: dict[tuple[str, int], float] = {}
        self._deleted: dict[str, float] = {}
        # (job uid, gang attempt) whose Service, PodGroup and NetworkPolicy were last ensured:
        # each new gang ensures them again, so one deleted by hand comes back with the next gang
        self._children_for: tuple[str, int] | None = None
        self._last_read = 0.0
        # progress interval times the backoff of unanswered reads (MAX_READ_BACKOFF_INTERVALS)
        self._read_backoff = 1
        # the job parsed from `body`, kept while its resourceVersion stays (parsing the whole
        # object every pass was a fifth of a pass's CPU)
        self._parsed: tuple[str, TrainingJob] | None = None
        # since when a status change that only moves worker counts has waited to be written
        # (TRAINYARD_STATUS_COALESCE_SECONDS, status/writes.py)
        self._held_since: float | None = None
        self._timed_running = False
        self._invalid_generation: int | None = None
        # The API server's refusal of this job's last creations (workers, or the Service or
        # PodGroup they need; quota, Pod Security…), fed back into reconcile so the status
        # says why the workers are missing.
        self._refusal: CreateFailure | None = None
        # UIDs of stray pods (this job's name, another owner) already reported in an event
        self._strays_reported: set[str] = set()
        # the first pass re-posts what the stored status implies (see status.events)
        self._implied_posted = False
        # keyed events the API server could not take (it was away): posted again each pass
        # until it does, since the status that implies them is already written
        self._unposted: list[Event] = []
        self._failing_since: dict[str, float] = {}
        # the last status write failed without an answer (the API server went away mid-call)
        self._unsure = False
        # every worker's step counters over the straggler window, by index, with the pod uid
        # they belong to (a new pod starts a new history)
        self._steps: dict[int, tuple[str, list[StepCounters]]] = {}
        self._stragglers = StragglerPolicy(
            factor=runtime.settings.straggler_factor,
            window_seconds=runtime.settings.straggler_window_seconds,
        )
        self.log = job_log(log, *key)
        if parked is not None:
            # what the worker that parked already did: not done twice
            self._implied_posted = True
            self._timed_running = parked.timed_running
        self.task = asyncio.create_task(self._loop(), name=f"trainingjob {key[0]}/{key[1]}")

    # --- inputs from the watch ---------------------------------------------------------------

    def offer(self, body: Mapping[str, Any]) -> None:
        """A newer version of the job arrived from the watch: take it and wake up."""
        if _resource_version(body) >= _resource_version(self.body):
            self.body = _kept(body)
        self.wake.set()

    def poke(self) -> None:
        """One of the job's pods changed."""
        self.wake.set()

    @property
    def uid(self) -> str:
        return str((self.body.get("metadata") or {}).get("uid", ""))

    @property
    def resource_version(self) -> int:
        """The resourceVersion of the newest version of the job this worker has seen."""
        return _resource_version(self.body)

    async def stop(self) -> None:
        """The job is gone (or the operator stops)."""
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task

    # --- the loop ------------------------------------------------------------------------------

    async def _loop(self) -> None:
        backoff = 1.0
        while True:
            await asyncio.sleep(DEBOUNCE_SECONDS)
            self.wake.clear()
            started = time.perf_counter()
            try:
                delay = await self._pass()
                backoff = 1.0
            except asyncio.CancelledError:
                raise
            except JobGoneError:
                # Deleted while the watch was away (its DELETED event never came): nothing
                # is left to reconcile, and retrying the 404 would go on forever.
                self.log.info("no longer exists; its worker stops")
                if self.runtime.workers.get(self.key) is self:
                    self.runtime.workers.pop(self.key, None)
                    self.runtime.metrics.forget(*self.key)
                return
            except Exception as err:
                if isinstance(err, WorkersRefusedError):  # expected: no traceback
                    self.log.warning("%s; retrying in %.0fs", err, backoff)
                else:
                    self.log.exception("reconcile failed; retrying in %.0fs", backoff)
                delay = backoff
                backoff = min(backoff * 2, 60.0)
            finally:
                self.runtime.metrics.reconcile_duration.observe(time.perf_counter() - started)
            if delay is None and self._idle():
                self._park()
                return
            if delay is not None and delay <= 0:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=delay)

    async def _pass(self) -> float | None:
        """One reconcile pass; returns when to look again (None: on the next event only)."""
        rt = self.runtime
        if self._unsure or self._refresh:
            # A status write whose answer never came may have been stored: read the job back
            # and post what its status implies (the write's events among them) before
            # deciding again. (A worker woken for a parked job reads it too.)
            fresh = await rt.client.get_job(*self.key)
            if fresh is None:
                raise JobGoneError(f"{self.key[0]}/{self.key[1]} no longer exists")
            self.body = _kept(fresh)
            if self._unsure:
                self._implied_posted = False
            self._unsure = self._refresh = False
        try:
            job = self._job()
        except ValidationError as err:
            await self._reject(err)
            return None
        if job.deletion_timestamp:
            return None
        ownership = sort_by_owner(rt.pods_of(self.key), job.uid, frozenset(self._strays_reported))
        pods = ownership.own
        self._forget_confirmed(pods)
        now = datetime.now(UTC)
        if not self._implied_posted:
            await self._post_implied(job, now)
        if self._unposted:
            pending, self._unposted = self._unposted, []
            await self._post(pending)
        progress, times = await self._read_trainers(job, pods)
        policy = self._stragglers
        plan = reconcile(
            job, pods, now, progress, self._refusal, step_times=times, stragglers=policy
        )
        if plan.needs_capacity:
            # a `gpus: auto` gang is due: read the nodes and quotas only now, and decide again
            capacity = await read_capacity(rt, job.namespace)
            plan = reconcile(
                job,
                pods,
                now,
                progress,
                self._refusal,
                capacity=capacity,
                step_times=times,
                stragglers=policy,
            )
        if not plan.create_workers:
            self._refusal = None  # nothing left to create: nothing is refused any more

        if _wire(plan.status) != _wire(job.status) and not self._hold(job, plan):
            self._held_since = None
            try:
                self.body = _kept(
                    await rt.client.patch_job_status(
                        job.namespace,
                        job.name,
                        _resource_version_text(self.body),
                        _patch(plan.status),
                    )
                )
            except ConflictError:
                fresh = await rt.client.get_job(job.namespace, job.name)
                if fresh is None:
                    raise JobGoneError(f"{job.namespace}/{job.name} no longer exists") from None
                self.body = _kept(fresh)
                return 0.0
            except JobGoneError:
                raise
            except Exception:
                self._unsure = True
                raise
            self._record(job, plan, now)
            self._tell(job, plan)
        rt.metrics.set_phase(job.namespace, job.name, plan.status.phase)
        if (health := plan.status.health) is not None:
            ratio = health.slowest_ratio or 1.0
            rt.metrics.set_health(job.namespace, job.name, ratio, len(health.stragglers))

        if plan.delete_job:
            # With ttlSecondsAfterFinished 0 the job finishes and expires in one pass: its
            # events go out before it does.
            await self._post_events(plan)
            self.log.info("ttlSecondsAfterFinished passed: deleting the TrainingJob")
            await rt.client.delete_job(job.namespace, job.name, job.uid)
            return None
        try:
            await self._remove_strays(job, ownership)
            if plan.ensure_children and self._children_for != (job.uid, plan.gang):
                await self._ensure_children(job, plan.gang)
            await self._delete(job, plan)
            created = await self._create(job, plan)
        except WorkersRefusedError:
            # The pass's events (PodCreateFailed among them) still go out; the retry follows.
            await self._post_events(plan, workers_created=False)
            raise
        except Exception:
            # The status telling of this pass is written: its events are owed whatever else
            # failed (the API server went away mid-pass), and the next pass posts them.
            self._unposted.extend(e for e in plan.events if e.key)
            del self._unposted[MAX_UNPOSTED:]
            raise
        await self._post_events(plan, workers_created=created)
        return self._next_look(plan)

    async def _post_implied(self, job: TrainingJob, now: datetime) -> None:
        """Events an operator killed after a status write never posted (see status.events):
        those it did post come back 409 and stay single."""
        implied = implied_events(job.status, now, warn_checkpoints=checkpoints_lost_on_restart(job))
        await self._post(list(implied))
        self._implied_posted = True

    async def _post(self, events: list[Event]) -> None:
        """Post keyed events; those the API server could not take wait for the next pass."""
        for event in events:
            posted = await self.runtime.client.post_event(
                self.body, event.type, event.reason, event.message, key=event.key
            )
            if posted or not event.key:
                self._failing_since.pop(event.key, None)
                continue
            since = self._failing_since.setdefault(event.key, time.monotonic())
            if time.monotonic() - since > POST_RETRY_SECONDS or len(self._unposted) >= MAX_UNPOSTED:
                self.log.warning("giving up on event %s", event.reason)
                self._failing_since.pop(event.key, None)
                continue
            self._unposted.append(event)

    async def _post_events(self, plan: Plan, *, workers_created: bool = True) -> None:
        # A pass that ran before the watch reported the pods just created plans the same gang
        # again; the expectations hold back the creations, and this keeps its WorkersCreated
        # from costing a second (refused) post.
        await self._post(
            [e for e in plan.events if workers_created or e.reason != "WorkersCreated"]
        )

    # --- steps ---------------------------------------------------------------------------------

    async def _read_trainers(
        self, job: TrainingJob, pods: list[PodView]
    ) -> tuple[Progress | None, dict[int, float] | None]:
        """Fresh readings of the running workers' metrics, at most every progress interval:
        worker 0's progress, and each worker's compute seconds per step over the straggler
        window (status/health.py; None when nothing was read)."""
        rt = self.runtime
        if job.status.phase not in ACTIVE_PHASES:
            self._steps.clear()
            return None, None
        if time.monotonic() - self._last_read < self._read_interval():
            return None, None
        gang = {
            p.index: p
            for p in pods
            if p.restart == job.status.restarts and p.phase == "Running" and p.ip
        }
        if not gang:
            return None, None
        self._last_read = time.monotonic()
        readings = await read_trainers(
            rt.http, {i: p.ip for i, p in gang.items()}, rt.settings.progress_timeout_seconds
        )
        self._read_backoff = (
            1 if readings else min(2 * self._read_backoff, MAX_READ_BACKOFF_INTERVALS)
        )
        master = readings.get(0)
        progress = master.progress if master is not None else None
        if progress is not None:
            rt.metrics.set_progress(job.namespace, job.name, progress.percent, progress.loss)
        window = self._stragglers.window_seconds
        read_at = time.monotonic()
        times: dict[int, float] = {}
        for index, pod in gang.items():
            reading = readings.get(index)
            if reading is None or reading.steps is None or reading.compute_seconds is None:
                continue
            uid, history = self._steps.get(index, (pod.uid, []))
            counters = StepCounters(read_at, reading.steps, reading.compute_seconds)
            history = remember(history if uid == pod.uid else [], counters, window)
            self._steps[index] = (pod.uid, history)
            seconds = step_seconds(history, window)
            if seconds is not None:
                times[index] = seconds
        for gone in set(self._steps) - set(gang):
            del self._steps[gone]
        return progress, times

    async def _ensure_children(self, job: TrainingJob, attempt: int) -> None:
        rt = self.runtime
        try:
            if await rt.client.create_service(job.namespace, headless_service(job)):
                self.log.info("created the headless Service %s", job.name)
        except RejectedError as err:
            self._note_refusal(attempt, err, what=f"the headless Service {job.name}")
        if rt.build.network_policy is not None:
            # before any worker exists, so none runs unconfined; a refusal (RBAC without the
            # rule, a quota) keeps the workers back rather than run them open
            try:
                body = network_policy(job, rt.build)
                if await rt.client.create_network_policy(job.namespace, body):
                    self.log.info("created the NetworkPolicy %s", job.name)
            except RejectedError as err:
                self._note_refusal(attempt, err, what=f"the NetworkPolicy {job.name}")
        gang = job.spec.scheduling.gang
        if rt.pod_group_flavor and gang != "Disabled":
            body = pod_group(job, rt.pod_group_flavor)
            try:
                if await rt.client.create_pod_group(rt.pod_group_flavor, job.namespace, body):
                    self.log.info("created the PodGroup %s", job.name)
            except RejectedError as err:
                self._note_refusal(attempt, err, what=f"the PodGroup {job.name}")
        elif gang == "Enabled":
            await rt.client.post_event(
                self.body,
                "Warning",
                "GangSchedulingUnavailable",
                "scheduling.gang is Enabled but no PodGroup API (scheduler-plugins or Volcano) "
                "is installed; pods are scheduled one by one",
            )
        self._children_for = (job.uid, attempt)

    async def _remove_strays(self, job: TrainingJob, ownership: Ownership) -> None:
        rt = self.runtime
        if ownership.event is not None:
            event = ownership.event
            await rt.client.post_event(self.body, event.type, event.reason, event.message)
            self.log.warning("%s", event.message)
            self._strays_reported.update(ownership.strays)
        await asyncio.gather(
            *(rt.client.delete_pod(job.namespace, r.name, r.uid) for r in ownership.delete)
        )

    async def _delete(self, job: TrainingJob, plan: Plan) -> None:
        now = time.monotonic()
        todo = [ref for ref in plan.delete_pods if ref.uid not in self._deleted]
        for ref in todo:
            self._deleted[ref.uid] = now
        if todo:
            self.log.info("deleting pods %s", ", ".join(r.name for r in todo))
        await asyncio.gather(
            *(self.runtime.client.delete_pod(job.namespace, r.name, r.uid) for r in todo)
        )

    async def _create(self, job: TrainingJob, plan: Plan) -> bool:
        """Create the planned workers not already expected; True if it created any."""
        rt = self.runtime
        now = time.monotonic()
        names = {i: f"{job.name}-worker-{i}" for i in plan.create_workers}
        todo = [i for i in plan.create_workers if (names[i], plan.gang) not in self._created]
        if not todo:
            return False
        # Build from the job as just written, so the pods carry the attempt being started.
        current = job.model_copy(update={"status": plan.status})
        # (podTemplate shapes the builder could not merge never get here: the schema refuses
        # them at admission, and TrainingJob.from_object for objects an older CRD admitted)
        bodies = [worker_pod(current, i, plan.gang, rt.build) for i in todo]
        for i in todo:
            self._created[(names[i], plan.gang)] = now
        results = await asyncio.gather(
            *(rt.client.create_pod(job.namespace, body) for body in bodies),
            return_exceptions=True,
        )
        refused: RejectedError | None = None
        for i, result in zip(todo, results, strict=True):
            if result is False and not await self._taken_by_us(job, names[i]):
                # 409: a stray of another owner holds the name; its deletion (a pod event)
                # wakes this worker to try again
                self._created.pop((names[i], plan.gang), None)
                self.log.info("%s: name taken by a pod of another owner, waiting", names[i])
            if isinstance(result, BaseException):
                # Forget the expectation so the next pass tries again.
                self._created.pop((names[i], plan.gang), None)
                if isinstance(result, asyncio.CancelledError):
                    raise result
                if isinstance(result, RejectedError):
                    refused = refused or result
                else:
                    self.log.warning("creating %s failed: %s", names[i], result)
        created = [names[i] for i, result in zip(todo, results, strict=True) if result is True]
        if created:
            self.log.info("created pods %s (attempt %d)", ", ".join(created), plan.gang)
        if refused is not None:
            self._note_refusal(plan.gang, refused, what="")
        if any(isinstance(r, BaseException) for r in results):
            raise RuntimeError(f"could not create every worker of {job.namespace}/{job.name}")
        self._refusal = None
        return any(r is True for r in results)

    async def _taken_by_us(self, job: TrainingJob, name: str) -> bool:
        """After a 409: is the pod of that name this job's own (a creation the watch has not
        shown yet) rather than someone else's?"""
        existing = await self.runtime.client.get_pod(job.namespace, name)
        if existing is None:
            return False
        view = PodView.from_object(existing)
        return view is not None and view.owner_uid == job.uid

    def _note_refusal(self, attempt: int, err: RejectedError, *, what: str) -> NoReturn:
        """Remember the refusal for the next pass (since the first one of this attempt)."""
        old = self._refusal
        since = old.since if old is not None and old.gang == attempt else datetime.now(UTC)
        self._refusal = CreateFailure(gang=attempt, since=since, message=str(err), what=what)
        raise WorkersRefusedError(f"the API server refused {what or 'worker pods'}: {err}")

    def _forget_confirmed(self, pods: list[PodView]) -> None:
        """Drop expectations the watch has confirmed (or that are too old to trust)."""
        now = time.monotonic()
        seen = {(p.name, p.restart) for p in pods}
        live = {p.uid for p in pods}
        self._created = {
            k: t
            for k, t in self._created.items()
            if k not in seen and now - t < EXPECTATION_TTL_SECONDS
        }
        self._deleted = {
            uid: t
            for uid, t in self._deleted.items()
            if uid in live and now - t < EXPECTATION_TTL_SECONDS
        }

    def _next_look(self, plan: Plan) -> float | None:
        delays = [plan.requeue_after] if plan.requeue_after is not None else []
        if plan.status.phase in ACTIVE_PHASES:
            delays.append(self._read_interval())
        if self._held_since is not None:
            # the held status change is written when its window ends
            window = self.runtime.settings.status_coalesce_seconds
            delays.append(max(0.0, self._held_since + window - time.monotonic()))
        if self._created or self._deleted:
            # The watch normally confirms within milliseconds; look again in case it does not.
            delays.append(EXPECTATION_TTL_SECONDS)
        return min(delays) if delays else None

    def _idle(self) -> bool:
        """Nothing to wait for, owe or remember: no pods, no timer (the pass asked for none),
        no expectation, refusal, held status write, unposted event or reading history, and no
        event arrived meanwhile."""
        return not (
            self.wake.is_set()
            or self.runtime.pods_of(self.key)
            or self._created
            or self._deleted
            or self._refusal is not None
            or self._held_since is not None
            or self._unposted
            or self._failing_since
            or self._steps
            or self._strays_reported
            or self._invalid_generation is not None
            or self._unsure
            or self._refresh
        )

    def _park(self) -> None:
        """Stop this worker and keep the job as a `Parked` record (memory: thousands of
        suspended or finished jobs hold no task, body or parsed spec)."""
        rt = self.runtime
        if rt.workers.get(self.key) is self:
            del rt.workers[self.key]
            rt.parked[self.key] = Parked(self.uid, self.resource_version, self._timed_running)
        # The task still refers to this worker until the cyclic collector runs: what is large
        # goes now.
        self.body, self._parsed = {}, None

    def _job(self) -> TrainingJob:
        """The job of `body`, parsed once per resourceVersion."""
        version = _resource_version_text(self.body)
        if self._parsed is None or self._parsed[0] != version or not version:
            self._parsed = (version, TrainingJob.from_object(self.body))
        return self._parsed[1]

    def _hold(self, job: TrainingJob, plan: Plan) -> bool:
        """Whether this pass's status change waits (status/writes.py): it only moves worker
        counts, the pass does nothing else, and its window has not ended yet."""
        window = self.runtime.settings.status_coalesce_seconds
        quiet = not (plan.create_workers or plan.delete_pods or plan.events or plan.delete_job)
        if window <= 0 or not quiet or not counts_only(job.status, plan.status):
            return False
        now = time.monotonic()
        if self._held_since is None:
            self._held_since = now
        return now - self._held_since < window

    def _read_interval(self) -> float:
        return self.runtime.settings.progress_interval_seconds * self._read_backoff

    def _record(self, job: TrainingJob, plan: Plan, now: datetime) -> None:
        """Count what this pass changed (after the status write succeeded, so exactly once)."""
        m = self.runtime.metrics
        old, new = job.status, plan.status
        ns = job.namespace
        if old.observed_generation is None:
            m.created.labels(namespace=ns).inc()
        if new.phase != old.phase:
            if new.phase == "Succeeded":
                m.succeeded.labels(namespace=ns).inc()
            elif new.phase == "Failed":
                failed = get_condition(new.conditions, "Failed")
                m.failed.labels(namespace=ns, reason=failed.reason if failed else "Unknown").inc()
            first_run = (
                new.phase in ACTIVE_PHASES
                and new.restarts == 0
                and get_condition(new.conditions, "Suspended") is None
                and not self._timed_running
            )
            if first_run and job.creation_timestamp:
                created = datetime.fromisoformat(job.creation_timestamp.replace("Z", "+00:00"))
                m.time_to_running.observe(max(0.0, (now - created).total_seconds()))
                self._timed_running = True
        if new.restarts > old.restarts:
            restarting = get_condition(new.conditions, "Restarting")
            reason = restarting.reason if restarting else "Unknown"
            m.restarted.labels(namespace=ns, reason=reason).inc()
        found = _stragglers(new) - _stragglers(old)
        if found:
            m.stragglers_found.labels(namespace=ns).inc(len(found))

    def _tell(self, job: TrainingJob, plan: Plan) -> None:
        """One log line per decision this pass wrote (after the write, so each is told once):
        each event it planned, which says what happened and why, then the phase it led to."""
        old, new = job.status, plan.status
        for event in plan.events:
            line = self.log.warning if event.type == "Warning" else self.log.info
            line("%s: %s", event.reason, event.message)
        if new.phase != old.phase:
            self.log.info("phase %s -> %s", old.phase, new.phase)
        # the end of a straggler episode has no event of its own
        was = get_condition(old.conditions, STRAGGLER)
        now = get_condition(new.conditions, STRAGGLER)
        if was is not None and now is not None and (was.status, now.status) == ("True", "False"):
            self.log.info("%s %s: %s", STRAGGLER, now.reason, now.message)

    async def _reject(self, err: ValidationError) -> None:
        """An object the API server accepted but this operator cannot read (an older CRD)."""
        generation = int((self.body.get("metadata") or {}).get("generation", 0))
        if self._invalid_generation == generation:
            return
        self._invalid_generation = generation
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        await self.runtime.client.post_event(
            self.body, "Warning", "InvalidSpec", f"spec.{where}: {first['msg']}"
        )


class WorkersRefusedError(Exception):
    """The API server refused workers (or their Service/PodGroup); the next pass reports it."""


def _stragglers(status: TrainingJobStatus) -> set[int]:
    return set(status.health.stragglers) if status.health is not None else set()


def _resource_version(body: Mapping[str, Any]) -> int:
    # Resource versions are opaque in general; with etcd they are increasing integers, which
    # lets a late watch event never overwrite the newer object a status write returned.
    text = _resource_version_text(body)
    return int(text) if text.isdigit() else 0


def _seed(key: JobKey, parked: Parked | None) -> dict[str, Any]:
    """What a worker woken for a parked job knows before it reads the job: its identity
    (so that nothing takes it for another job of the same name meanwhile)."""
    meta: dict[str, Any] = {"namespace": key[0], "name": key[1]}
    if parked is not None:
        meta |= {"uid": parked.uid, "resourceVersion": str(parked.resource_version)}
    return {"metadata": meta}


def _kept(body: Mapping[str, Any]) -> dict[str, Any]:
    """The job as a worker keeps it: without metadata.managedFields, which nothing here
    reads and which is more than half of a small job's body."""
    kept = dict(body)
    meta = kept.get("metadata")
    if isinstance(meta, dict) and "managedFields" in meta:
        kept["metadata"] = {k: v for k, v in meta.items() if k != "managedFields"}
    return kept


def _resource_version_text(body: Mapping[str, Any]) -> str:
    return str((body.get("metadata") or {}).get("resourceVersion", ""))


def _wire(status: TrainingJobStatus) -> dict[str, object]:
    return status.to_wire()


def _patch(status: TrainingJobStatus) -> dict[str, Any]:
    """A JSON merge patch that makes the stored status equal to `status`.

    Fields that are None become null (a merge patch's way to delete a key, e.g. startTime on
    suspend); lists are written without nulls because a merge patch replaces them whole.
    """
    full: dict[str, Any] = status.model_dump(by_alias=True, mode="json")
    return {key: _strip_nulls_in_lists(value) for key, value in full.items()}


def _strip_nulls_in_lists(value: Any) -> Any:
    if isinstance(value, list):
        return [_drop_nulls(item) for item in value]
    if isinstance(value, dict):
        return {k: _strip_nulls_in_lists(v) for k, v in value.items()}
    return value


def _drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(item) for item in value]
    return value
