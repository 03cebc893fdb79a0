"""The run policies: from (job, observed pods, now) to the next status and a plan of actions.

This is the one place where Trainyard decides what a TrainingJob's state is and what must
happen next. It is pure — no I/O, no clock of its own — so every policy is unit-tested with
plain values. The handlers (`trainyard_operator.handlers`) feed it the job as the API server
last reported it, the worker pods from their in-memory index and a fresh progress reading;
they then write `Plan.status` through the status subresource and carry out the actions in a
fixed order (status first, then deletions, then creations, then events), so that a crash at
any point leaves state from which the next reconcile reaches the same decision.

Gang semantics: the pods of one attempt carry the label trainyard.dev/restart=<n> where
n = status.restarts. A gang restart bumps status.restarts, deletes every pod of the old
attempt, and creates the next gang only once none of the old pods remain (DDP ranks of two
attempts must never meet). Pod names are deterministic, so creating is idempotent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from trainyard_operator.api.job import TrainingJob
from trainyard_operator.api.status import (
    Condition,
    GpuChoice,
    Progress,
    TrainingJobStatus,
    WorkerCounts,
)
from trainyard_operator.status.conditions import get_condition, set_condition, status_of
from trainyard_operator.status.events import (
    CHECKPOINTS_MESSAGE,
    GPUS_CHANGED,
    GPUS_CHOSEN,
    RESTART_IGNORED,
    RESTART_REQUESTED,
    RESTART_SEPARATOR,
    RESUMED_MESSAGE,
    TERMINAL_PHASES,
    Event,
    EventType,
    keyed,
    restart_event_type,
)
from trainyard_operator.status.gpus import GpuCapacity, choose, unmet
from trainyard_operator.status.health import CONDITION as STRAGGLER
from trainyard_operator.status.health import STOPPED, StragglerPolicy, assess
from trainyard_operator.status.pods import PodView
from trainyard_operator.status.readings import results_from_message
from trainyard_operator.status.times import format_time, parse_time

COMPRESSION_STAGES = frozenset({"prune", "distill", "quantize"})


@dataclass(frozen=True)
class PodRef:
    """A pod to delete; the uid makes the delete a no-op if the name was reused since."""

    name: str
    uid: str


@dataclass(frozen=True)
class CreateFailure:
    """The API server has refused to create this attempt's workers since `since`.

    Pod Security, a ResourceQuota, an admission webhook or an invalid podTemplate: the
    handlers keep trying (a quota may free up) and report the refusal here, so the job
    says why it has no pods instead of sitting in Pending.
    """

    gang: int
    since: datetime
    message: str
    what: str = ""
    """What was refused when it was not the workers themselves (the headless Service, the
    PodGroup): without it no worker is created."""


@dataclass(frozen=True)
class Plan:
    """What reconcile decided: the next status and the actions that get there."""

    status: TrainingJobStatus
    create_workers: tuple[int, ...] = ()
    """Worker indexes to create, for the gang numbered status.restarts."""
    delete_pods: tuple[PodRef, ...] = ()
    events: tuple[Event, ...] = ()
    ensure_children: bool = False
    """The headless Service (and PodGroup, if gang scheduling applies) should exist."""
    delete_job: bool = False
    """ttlSecondsAfterFinished has passed: delete the TrainingJob (children go with it)."""
    requeue_after: float | None = None
    """Reconcile again after this many seconds even if nothing changes (timers)."""
    needs_capacity: bool = False
    """A gang of a `gpus: auto` job is due and no GpuCapacity was given: read the cluster and
    reconcile again with it (this plan is incomplete: act on nothing of it)."""

    @property
    def gang(self) -> int:
        """The attempt that create_workers belongs to."""
        return self.status.restarts


@dataclass
class _Draft:
    """The mutable working state of one reconcile pass."""

    job: TrainingJob
    now: datetime
    status: TrainingJobStatus
    deletes: list[PodRef] = field(default_factory=list)
    creates: list[int] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    timers: list[float] = field(default_factory=list)
    ensure_children: bool = False
    delete_job: bool = False
    capacity: GpuCapacity | None = None
    needs_capacity: bool = False

    def condition(
        self, kind: str, status: Literal["True", "False"], reason: str, message: str = ""
    ) -> None:
        # False states of a condition that never applied are left out, so a fresh job shows
        # only what happened to it.
        self.status.conditions = set_condition(
            self.status.conditions,
            kind,
            status,
            reason,
            message,
            now=self.now,
            generation=self.job.generation,
            add=status == "True" or kind == "Running",
        )

    def event(self, kind: EventType, reason: str, message: str) -> None:
        self.events.append(Event(kind, reason, message))

    def timer(self, at: datetime) -> None:
        self.timers.append(max(0.0, (at - self.now).total_seconds()))

    def delete(self, pods: Sequence[PodView]) -> None:
        self.deletes.extend(PodRef(p.name, p.uid) for p in pods if not p.deleting)

    def plan(self) -> Plan:
        return Plan(
            status=self.status,
            create_workers=tuple(self.creates),
            delete_pods=tuple(self.deletes),
            # keyed by the status this pass writes, so that each is posted once (events.py)
            events=keyed(self.events, self.status),
            ensure_children=self.ensure_children,
            delete_job=self.delete_job,
            requeue_after=min(self.timers) if self.timers else None,
            needs_capacity=self.needs_capacity,
        )


def reconcile(
    job: TrainingJob,
    pods: Sequence[PodView],
    now: datetime,
    progress: Progress | None = None,
    create_failure: CreateFailure | None = None,
    *,
    capacity: GpuCapacity | None = None,
    step_times: Mapping[int, float] | None = None,
    stragglers: StragglerPolicy | None = None,
) -> Plan:
    """Decide the job's next status and actions from what is observed now.

    `pods` are the job's worker pods from every attempt (the caller filters by job name);
    `progress` is a fresh reading of worker 0's metrics, or None when there is none;
    `create_failure` is the API server's refusal of the last pod creations, if any;
    `capacity` is what a `gpus: auto` job's next gang is chosen from (status.gpus), read by
    the caller only when a plan asks for it (`Plan.needs_capacity`);
    `step_times` are the running gang's compute seconds per step by worker index, averaged
    over the window of the `stragglers` policy (status/health.py), when freshly read.
    """
    draft = _Draft(job=job, now=now, status=job.status.model_copy(deep=True), capacity=capacity)
    draft.status.observed_generation = job.generation
    if progress is not None:
        _merge_progress(draft, progress)
    restart_requested = _new_restart_request(draft)
    if job.status.phase in TERMINAL_PHASES:
        if restart_requested:
            _ignore_restart_request(draft)
        _finished(draft, pods)
    elif job.spec.suspend:
        _suspend(draft, pods)
    elif restart_requested and job.status.phase != "Suspended":
        # (a job resumed in the same change starts a new gang anyway)
        _gang_restart(
            draft,
            pods,
            RESTART_REQUESTED,
            f"spec.restartRequest changed to {job.spec.restart_request!r}",
            disruption=True,
        )
    else:
        _run(draft, pods, create_failure)
    _judge_health(draft, step_times, stragglers)
    # Every condition was re-evaluated against this generation, including the unchanged ones.
    for cond in draft.status.conditions:
        cond.observed_generation = job.generation
    return draft.plan()


def _merge_progress(draft: _Draft, reading: Progress) -> None:
    """Take a fresh reading; updatedAt moves only when the trainer actually advanced.

    That makes updatedAt "the last time progress was seen to change", which is what the
    progressDeadlineSeconds watchdog needs.
    """
    old = draft.status.progress
    same = old is not None and old.model_dump(exclude={"updated_at"}) == reading.model_dump(
        exclude={"updated_at"}
    )
    updated = old.updated_at if same and old is not None else format_time(draft.now)
    draft.status.progress = reading.model_copy(update={"updated_at": updated})


# --- restart on request ---------------------------------------------------------------------


def _new_restart_request(draft: _Draft) -> bool:
    """spec.restartRequest differs from the value the status recorded last; records it.

    A job that never recorded one (a new job, or one made before the field existed) records
    its value without restarting: only a change made after the operator saw the job asks.
    """
    wanted, seen = draft.job.spec.restart_request, draft.job.status.restart_request
    draft.status.restart_request = wanted
    return seen is not None and wanted != seen


def _ignore_restart_request(draft: _Draft) -> None:
    phase = draft.status.phase
    draft.event(
        "Warning",
        RESTART_IGNORED,
        f"spec.restartRequest changed to {draft.job.spec.restart_request!r}, but the job has "
        f"{phase} and a finished job is final: create it again to train again",
    )


# --- terminal -------------------------------------------------------------------------------


def _finished(draft: _Draft, pods: Sequence[PodView]) -> None:
    """Succeeded or Failed is final: stop what still runs, count down the TTL, never recreate."""
    _clean_pods(draft, pods)
    status = draft.status
    status.workers = _counts(draft.job, [p for p in pods if p.restart == status.restarts])
    status.workers.desired = draft.job.spec.workers
    ttl = draft.job.spec.run_policy.ttl_seconds_after_finished
    if ttl is not None and status.completion_time:
        expires = parse_time(status.completion_time) + timedelta(seconds=ttl)
        if draft.now >= expires:
            draft.delete_job = True
        else:
            draft.timer(expires)


def _clean_pods(draft: _Draft, pods: Sequence[PodView]) -> None:
    """cleanPodPolicy: All deletes every pod, Running those still active, None none."""
    policy = draft.job.spec.run_policy.clean_pod_policy
    if policy == "All":
        draft.delete(pods)
    elif policy == "Running":
        draft.delete([p for p in pods if not p.finished])


def _finish(draft: _Draft, pods: Sequence[PodView], phase: str, reason: str, message: str) -> None:
    """Move to Succeeded or Failed, with conditions, an event and the pod clean-up."""
    status = draft.status
    status.phase = "Succeeded" if phase == "Succeeded" else "Failed"
    status.completion_time = format_time(draft.now)
    if status.start_time is None:
        status.start_time = status.completion_time
    draft.condition(phase, "True", reason, message)
    draft.condition("Running", "False", reason, message)
    draft.condition("Restarting", "False", reason, message)
    draft.event("Normal" if phase == "Succeeded" else "Warning", reason, message)
    _finished(draft, pods)


# --- suspended ------------------------------------------------------------------------------


def _suspend(draft: _Draft, pods: Sequence[PodView]) -> None:
    """spec.suspend: no pods, phase Suspended, start time cleared (the deadline restarts)."""
    status = draft.status
    draft.delete(pods)
    if status.phase != "Suspended":
        message = "spec.suspend is true: worker pods deleted"
        draft.event("Normal", "Suspended", message)
        draft.condition("Suspended", "True", "Suspended", message)
        draft.condition("Running", "False", "Suspended", message)
        draft.condition("Restarting", "False", "Suspended", message)
    status.phase = "Suspended"
    status.start_time = None
    # desired 0 passed in, not set afterwards: the summary ("ready/desired") is derived when
    # the counts are built, and a stale one made every pass of a suspended job write again
    status.workers = _counts(draft.job, [p for p in pods if p.restart == status.restarts], 0)


# --- running --------------------------------------------------------------------------------


def _run(
    draft: _Draft, pods: Sequence[PodView], create_failure: CreateFailure | None = None
) -> None:
    job, status, now = draft.job, draft.status, draft.now
    policy = job.spec.run_policy
    workers = job.spec.workers
    draft.ensure_children = True
    if status.phase == "Suspended":
        draft.event("Normal", "Resumed", RESUMED_MESSAGE)
        draft.condition("Suspended", "False", "Resumed", "the job was resumed")
        status.phase = "Pending"
    if status.start_time is None:
        status.start_time = format_time(now)

    gang = [p for p in pods if p.restart == status.restarts and p.index < workers]
    current = {p.index: p for p in gang if not p.deleting}
    status.workers = _counts(job, gang)

    # activeDeadlineSeconds counts from startTime (reset by suspend, like a batch/v1 Job).
    if policy.active_deadline_seconds is not None:
        limit = policy.active_deadline_seconds
        deadline = parse_time(status.start_time) + timedelta(seconds=limit)
        if now >= deadline:
            message = f"the job ran longer than activeDeadlineSeconds={limit}"
            _finish(draft, pods, "Failed", "DeadlineExceeded", message)
            return
        draft.timer(deadline)

    # Pods of an older attempt (or beyond spec.workers) go first; the next gang waits for them.
    stale = [p for p in pods if p.restart != status.restarts or p.index >= workers]
    if stale:
        draft.delete(stale)
        status.phase = "Restarting" if status.restarts > 0 else "Pending"
        _report_stuck(draft, stale)
        return

    failed = sorted((p for p in current.values() if p.phase == "Failed"), key=lambda p: p.index)
    if failed:
        _on_failure(draft, pods, failed[0])
        return

    if len(current) == workers and all(p.phase == "Succeeded" for p in current.values()):
        _succeed(draft, pods, current[0])
        return

    running_phases = ("Running", "Succeeded")
    if status.phase in ("Running", "Compressing") and (
        len(current) < workers or any(p.deleting for p in gang)
    ):
        _gang_restart(draft, pods, "WorkerLost", _lost(gang, current, workers), disruption=True)
        return

    if _scheduling_timeout(draft, pods, current):
        return

    deleting = {p.index for p in gang if p.deleting}
    draft.creates = [i for i in range(workers) if i not in current and i not in deleting]
    if draft.creates and not _gpus_for_the_gang(draft):
        draft.creates = []
        return
    refused = create_failure if create_failure and create_failure.gang == status.restarts else None
    if draft.creates and refused:
        if _refused(draft, pods, refused):
            return
    elif draft.creates and len(draft.creates) == workers and _refused_since(job) is None:
        first = get_condition(job.status.conditions, "Created") is None
        message = f"creating {workers} worker pods (attempt {status.restarts})"
        draft.condition("Created", "True", "WorkersCreated", message)
        draft.event("Normal", "WorkersCreated", message)
        if first:
            _warn_if_checkpoints_are_lost_on_restart(draft)
    elif not draft.creates and status_of(status.conditions, "Created") == "False":
        # The refused workers were created after all (say the quota was raised).
        message = f"all {workers} worker pods created (attempt {status.restarts})"
        draft.condition("Created", "True", "WorkersCreated", message)
        draft.event("Normal", "WorkersCreated", message)

    if len(current) == workers and all(p.phase in running_phases for p in current.values()):
        stage = status.progress.stage if status.progress else ""
        status.phase = "Compressing" if stage in COMPRESSION_STAGES else "Running"
        draft.condition("Running", "True", "AllWorkersRunning", f"{workers} of {workers} running")
        draft.condition("Restarting", "False", "AllWorkersRunning", "the gang is running")
        _watchdog(draft, pods)
    else:
        status.phase = "Restarting" if status.restarts > 0 else "Pending"
        running = sum(p.phase == "Running" for p in current.values())
        reason = "GangRestart" if status.restarts > 0 else "WorkersPending"
        message = f"{running} of {workers} running"
        if draft.creates and refused:
            reason = "PodCreateFailed"
            message = f"{message}; {_refusal_message(draft, refused)}"
        draft.condition("Running", "False", reason, message)


def _gpus_for_the_gang(draft: _Draft) -> bool:
    """Before workers are created: the GPUs of a `gpus: auto` job (status.gpus), chosen when
    its first gang is created and kept for every later gang while the cluster can still meet
    them (status/gpus.py). False when the caller must first read the cluster's capacity."""
    job, status = draft.job, draft.status
    if job.spec.resources.gpus != "auto":
        status.gpus = None  # an integer again (changed while suspended): nothing to choose
        return True
    kept = status.gpus
    whole_gang = len(draft.creates) == job.spec.workers
    if kept is not None and not whole_gang:
        return True  # the missing workers of a gang get what its others got
    if draft.capacity is None:
        draft.needs_capacity = True
        return False
    why = unmet(job, draft.capacity, kept.per_worker) if kept is not None else None
    if kept is not None and why is None:
        return True
    choice = choose(job, draft.capacity)
    message = choice.message
    if kept is not None:
        message = f"{kept.per_worker} per worker can no longer be met ({why}); {message}"
    status.gpus = GpuChoice(
        per_worker=choice.per_worker,
        reason=choice.reason,
        message=message,
        decided_at=format_time(draft.now),
        previous=kept.per_worker if kept is not None else None,
    )
    if kept is None:
        draft.event("Normal", GPUS_CHOSEN, message)
    else:
        draft.event("Warning", GPUS_CHANGED, message)
    return True


#: How long past its grace period a deleted pod may linger before the job says it is stuck.
STUCK_AFTER = timedelta(seconds=30)


def _report_stuck(draft: _Draft, stale: Sequence[PodView]) -> None:
    """The next gang waits for the old pods to go (same names, one rank each): when one stays
    Terminating past its grace period, say which and why it may, rather than sit silently in
    Restarting. A node that stopped answering keeps its pods until it comes back, is deleted,
    or is tainted out-of-service; a finalizer nobody removes does the same."""
    dues = [(p.deletion_due, p) for p in stale if p.deletion_due is not None]
    stuck = sorted((d for d in dues if draft.now >= d[0] + STUCK_AFTER), key=lambda d: d[1].name)
    if not stuck:
        if dues:
            draft.timer(min(due for due, _ in dues) + STUCK_AFTER)
        return
    due, pod = stuck[0]
    where = f" on node {pod.node}" if pod.node else ""
    others = f" (and {len(stuck) - 1} more)" if len(stuck) > 1 else ""
    message = (
        f"waiting for the previous pods to go: {pod.name}{where}{others} is still terminating, "
        f"its grace period ended at {format_time(due)}; a node that stopped "
        "answering keeps its pods until it returns, is deleted or is tainted "
        "node.kubernetes.io/out-of-service (or a finalizer holds the pod)"
    )
    running = get_condition(draft.job.status.conditions, "Running")
    if running is None or running.reason != "WorkersTerminating":
        draft.event("Warning", "WorkersTerminating", message)
    draft.condition("Running", "False", "WorkersTerminating", message)


def _warn_if_checkpoints_are_lost_on_restart(draft: _Draft) -> None:
    """Once, as a job first creates its workers: the built-in trainer's checkpoints on an
    emptyDir go with the pods, so a gang restart would train from epoch 0 again."""
    if checkpoints_lost_on_restart(draft.job):
        draft.event("Normal", "CheckpointsNotPersistent", CHECKPOINTS_MESSAGE)


def checkpoints_lost_on_restart(job: TrainingJob) -> bool:
    """The built-in trainer checkpoints to an emptyDir, and the job may restart its gang."""
    spec = job.spec
    policy = spec.run_policy
    retries = policy.restart_policy != "Never" and policy.backoff_limit > 0
    return not (spec.command or spec.output.volume_claim_name or not retries)


def _refused(draft: _Draft, pods: Sequence[PodView], failure: CreateFailure) -> bool:
    """Workers the API server refuses to create: say so (Created=False), keep trying, and
    fail after schedulingTimeoutSeconds like any other worker that cannot start. True when
    the job failed."""
    timeout = draft.job.spec.run_policy.scheduling_timeout_seconds
    message = _refusal_message(draft, failure)
    # The status remembers the first refusal: a restarted operator, whose memory of it starts
    # again at its own first try, keeps counting from there.
    since = min(failure.since, _refused_since(draft.job) or failure.since)
    if draft.now >= since + timedelta(seconds=timeout):
        draft.creates = []
        text = f"{message} (for schedulingTimeoutSeconds={timeout})"
        _finish(draft, pods, "Failed", "PodCreateFailed", text)
        return True
    if status_of(draft.job.status.conditions, "Created") != "False":
        draft.event("Warning", "PodCreateFailed", message)
    # Created=True was written as the creations were planned; the refusal flips it (and a
    # later success flips it back, see _run).
    draft.condition("Created", "False", "PodCreateFailed", message)
    draft.timer(since + timedelta(seconds=timeout))
    return False


def _refused_since(job: TrainingJob) -> datetime | None:
    """Since when the API server has refused this job's creations, as its status says.

    While it does, Created stays False (a retry does not flip it to True before the pods
    exist), so the condition's lastTransitionTime is the first refusal.
    """
    created = get_condition(job.status.conditions, "Created")
    if created is None or created.status != "False" or created.reason != "PodCreateFailed":
        return None
    return parse_time(created.last_transition_time)


def _refusal_message(draft: _Draft, failure: CreateFailure) -> str:
    missing = ", ".join(str(i) for i in draft.creates)
    subject = f"{failure.what} (needed before the workers)" if failure.what else f"worker {missing}"
    return f"the API server refused to create {subject}: {failure.message}"


def _on_failure(draft: _Draft, pods: Sequence[PodView], pod: PodView) -> None:
    """One worker failed: fail the job or restart the whole gang, per restartPolicy."""
    policy = draft.job.spec.run_policy
    code = pod.exit_code
    what = f"worker {pod.index} failed with exit code {code}"
    if code is None:
        what = f"worker {pod.index} failed without an exit code (evicted or node lost)"
    if pod.termination_message:
        what += f": {_last_words(pod.termination_message)}"
    if pod.disruption:
        # Taken away (node shutdown, eviction, preemption), not failing on its own: retried
        # under every restartPolicy, without spending backoffLimit.
        text = f"{what} ({pod.disruption})"
        _gang_restart(draft, pods, "WorkerDisrupted", text, disruption=True)
    elif policy.restart_policy == "Never":
        _finish(draft, pods, "Failed", "WorkerFailed", what + " (restartPolicy Never)")
    elif policy.restart_policy == "ExitCode" and code is not None and 1 <= code <= 127:
        _finish(draft, pods, "Failed", "PermanentError", what + " (exit codes 1-127 are permanent)")
    else:
        # OnFailure, or ExitCode with a retryable code (>= 128: killed by a signal, OOM,
        # preemption) or none at all (eviction, node loss).
        _gang_restart(draft, pods, "WorkerFailed", what)


#: How much of a failed worker's termination message goes into the condition and event.
LAST_WORDS_CHARS = 300


def _last_words(message: str) -> str:
    """The end of a termination message: with FallbackToLogsOnError it is the log's tail, and
    the error a user needs (the exception line of a traceback) is at its end, not its start."""
    text = " | ".join(line.strip() for line in message.strip().splitlines() if line.strip())
    return text if len(text) <= LAST_WORDS_CHARS else "…" + text[-LAST_WORDS_CHARS:]


def _lost(gang: Sequence[PodView], current: dict[int, PodView], workers: int) -> str:
    """What took a worker from a running gang, as far as its pod still says."""
    gone = [p for p in gang if p.deleting]
    if gone:
        pod = min(gone, key=lambda p: p.index)
        cause = f" ({pod.disruption})" if pod.disruption else ""
        return f"worker {pod.index} was deleted while the gang was running{cause}"
    missing = sorted(set(range(workers)) - set(current))
    return f"worker {missing[0]} disappeared while the gang was running"


def _gang_restart(
    draft: _Draft, pods: Sequence[PodView], cause: str, message: str, *, disruption: bool = False
) -> None:
    """Delete the whole gang and start the next attempt, unless backoffLimit is spent.

    A disruption (a worker taken away rather than failing) restarts without spending it.
    """
    status = draft.status
    limit = draft.job.spec.run_policy.backoff_limit
    failures = status.restarts - status.disruptions
    if not disruption and failures >= limit:
        _finish(
            draft,
            pods,
            "Failed",
            "BackoffLimitExceeded",
            f"{message}; backoffLimit {limit} reached after {failures} restarts on failure",
        )
        return
    status.restarts += 1
    status.phase = "Restarting"
    if disruption:
        status.disruptions += 1
        what = "asked for" if cause == RESTART_REQUESTED else "a disruption"
        spent = f"{what}, not counted against backoffLimit {limit}"
    else:
        spent = f"{failures + 1} of backoffLimit {limit}"
    text = f"{message}{RESTART_SEPARATOR} (restart {status.restarts}: {spent})"
    draft.condition("Restarting", "True", cause, text)
    draft.condition("Running", "False", "GangRestart", text)
    draft.event(restart_event_type(cause), "GangRestart", text)
    if cause == "ProgressDeadlineExceeded":
        draft.event("Warning", cause, message)
    draft.delete(pods)
    status.workers = WorkerCounts(desired=draft.job.spec.workers)


def _succeed(draft: _Draft, pods: Sequence[PodView], master: PodView) -> None:
    """Every worker exited 0; results come from worker 0's termination message."""
    status = draft.status
    status.results = results_from_message(master.termination_message) or status.results
    progress = status.progress or Progress()
    # The last scrape can be seconds old (a short run may finish between two reads), so the
    # finished state comes from what is known now, not from that reading.
    final: dict[str, object] = {"stage": "done", "percent": 100, "eta_seconds": 0}
    final["epoch"] = progress.total_epochs
    if status.results is not None and status.results.accuracy is not None:
        final["accuracy"] = status.results.accuracy
    status.progress = progress.model_copy(update=final)
    if status.progress.updated_at is None:
        status.progress.updated_at = format_time(draft.now)
    workers = draft.job.spec.workers
    _finish(draft, pods, "Succeeded", "Succeeded", f"all {workers} workers exited 0")


def _scheduling_timeout(
    draft: _Draft, pods: Sequence[PodView], current: dict[int, PodView]
) -> bool:
    """Fail the job when a worker stays unschedulable or without its image too long."""
    timeout = timedelta(seconds=draft.job.spec.run_policy.scheduling_timeout_seconds)
    for pod in sorted(current.values(), key=lambda p: p.index):
        reason = pod.blocked_reason
        if reason is None or pod.created is None:
            continue
        if draft.now >= pod.created + timeout:
            detail = pod.unschedulable if reason == "Unschedulable" else pod.waiting_reason
            message = (
                f"worker {pod.index} stayed Pending ({detail}) for "
                f"schedulingTimeoutSeconds={int(timeout.total_seconds())}"
            )
            _finish(draft, pods, "Failed", reason, message)
            return True
        draft.timer(pod.created + timeout)
    return False


def _watchdog(draft: _Draft, pods: Sequence[PodView]) -> None:
    """progressDeadlineSeconds: no training progress that long → gang restart."""
    limit = draft.job.spec.run_policy.progress_deadline_seconds
    if limit is None:
        return
    since = _running_since(draft.status.conditions)
    progress = draft.status.progress
    if progress is not None and progress.updated_at:
        since = (
            max(since, parse_time(progress.updated_at))
            if since
            else parse_time(progress.updated_at)
        )
    if since is None:
        return
    deadline = since + timedelta(seconds=limit)
    if draft.now >= deadline:
        _gang_restart(
            draft,
            pods,
            "ProgressDeadlineExceeded",
            f"no training progress for progressDeadlineSeconds={limit}",
        )
        return
    draft.timer(deadline)


def _running_since(conditions: list[Condition]) -> datetime | None:
    cond = get_condition(conditions, "Running")
    if cond is None or cond.status != "True":
        return None
    return parse_time(cond.last_transition_time)


def _counts(job: TrainingJob, gang: Sequence[PodView], desired: int | None = None) -> WorkerCounts:
    live = [p for p in gang if not p.deleting]
    return WorkerCounts(
        desired=job.spec.workers if desired is None else desired,
        active=sum(not p.finished for p in live),
        ready=sum(p.phase == "Running" and p.ready for p in live),
        succeeded=sum(p.phase == "Succeeded" for p in live),
        failed=sum(p.phase == "Failed" for p in live),
    )


# --- stragglers -----------------------------------------------------------------------------


def _judge_health(
    draft: _Draft, times: Mapping[int, float] | None, policy: StragglerPolicy | None
) -> None:
    """status.health and the Straggler condition, for the gang that is running (health.py).

    A gang that stopped running (restarted, suspended, finished) has no stragglers any more:
    its last numbers stay for the record, the condition turns False.
    """
    status = draft.status
    running = status.phase in ("Running", "Compressing")
    if not running or status.restarts != draft.job.status.restarts:
        if status.health is not None and (status.health.slow_workers or status.health.stragglers):
            status.health = status.health.model_copy(update={"slow_workers": [], "stragglers": []})
        draft.condition(STRAGGLER, "False", STOPPED, f"the gang is {status.phase}")
        return
    if times is None or policy is None:
        return
    outcome = assess(status.health, times, draft.now, policy)
    if outcome is None:
        return
    status.health = outcome.health
    if outcome.condition is not None:
        draft.condition(STRAGGLER, *outcome.condition)
    draft.events.extend(outcome.events)
