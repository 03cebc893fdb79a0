"""`kubectl trainyard logs JOB`: every worker's trainer log as one story, in time order.

Each worker's log is read with the times its lines arrived (`timestamps=true`, the kubelet's
record) and the lines of all workers are merged by that time, each prefixed with its pod
(`[digits-ddp-worker-1]`, the pod's index being its node rank). With `follow`, each running
worker's log is streamed on its own thread; lines wait `REORDER_SECONDS` after they arrive so
that lines of several workers arriving together still come out in time order. New pods (the
next attempt after a gang restart) are picked up as they start, announced by a line, and
following ends once the job has finished and every stream has ended.
"""

from __future__ import annotations

import heapq
import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from trainyard_cli.jobs import TERMINAL, attempt_of, find_job, phase_of, worker_pods
from trainyard_cli.kube import REQUEST_TIMEOUT, CliError, Target, advice, api_message
from trainyard_operator.api.constants import TRAINER_CONTAINER

#: How long a followed line waits for lines of other workers that arrived with it.
REORDER_SECONDS = 0.5
#: How often following looks for new pods and for the job's end.
POLL_SECONDS = 1.0
#: The longest line kept whole (a runaway line without newlines is cut there).
MAX_LINE_BYTES = 64 * 1024

_STAMP = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d) ")


@dataclass(frozen=True, order=True)
class LogLine:
    """One line of one worker, with when it arrived (ns since the epoch; 0 when unknown)."""

    at: int
    order: int  # the worker's place, to keep ties stable
    pod: str = field(compare=False)
    text: str = field(compare=False)


def parse_stamped(raw: str) -> tuple[int, str]:
    """(ns since the epoch, text) of a `timestamps=true` log line; (0, raw) without a time."""
    match = _STAMP.match(raw)
    if match is None:
        return 0, raw
    whole, fraction, zone = match.groups()
    when = datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone)).astimezone(UTC)
    nanos = int((fraction or "0").ljust(9, "0")[:9])
    return int(when.timestamp()) * 1_000_000_000 + nanos, raw[match.end() :]


def format_line(line: LogLine, *, timestamps: bool) -> str:
    prefix = f"[{line.pod}] "
    if timestamps and line.at:
        seconds, nanos = divmod(line.at, 1_000_000_000)
        when = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        prefix = f"{when}.{nanos // 1000:06d}Z {prefix}"
    return prefix + line.text


def _started(pod: dict[str, Any]) -> bool:
    """The trainer container has run (a log exists to read)."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == TRAINER_CONTAINER:
            state = status.get("state") or {}
            return "running" in state or "terminated" in state
    return False


def read_merged(target: Target, job: dict[str, Any], *, tail: int | None) -> list[LogLine]:
    """Every started worker's log (the last `tail` lines of each), merged in time order."""
    core = client.CoreV1Api(target.api)
    lines: list[LogLine] = []
    for order, pod in enumerate(worker_pods(target, job)):
        name = pod["metadata"]["name"]
        if not _started(pod):
            continue
        with advice(target, f"read the log of pod {name}"):
            try:
                text = core.read_namespaced_pod_log(
                    name,
                    target.namespace,
                    container=TRAINER_CONTAINER,
                    timestamps=True,
                    tail_lines=tail,
                    _request_timeout=REQUEST_TIMEOUT,
                )
            except ApiException as err:
                if err.status in (400, 404):  # not started after all, or gone meanwhile
                    continue
                raise
        for raw in str(text).splitlines():
            at, body = parse_stamped(raw)
            lines.append(LogLine(at, order, name, body))
    return sorted(lines)


class Follower:
    """Streams the workers' logs of one job until it has finished; see the module docstring."""

    def __init__(self, target: Target, name: str, *, tail: int | None) -> None:
        self.target = target
        self.name = name
        self.tail = tail
        self.core = client.CoreV1Api(target.api)
        self.lines: queue.Queue[LogLine | None] = queue.Queue()
        self.errors: queue.Queue[str] = queue.Queue()
        self.streams: dict[str, threading.Thread] = {}  # by pod uid
        self.attempt = -1
        self.order: dict[str, int] = {}

    def _stream(self, pod: str, order: int) -> None:
        """Follow one pod's log onto `self.lines` until it ends; then put None."""
        try:
            response: Any = self.core.read_namespaced_pod_log(
                pod,
                self.target.namespace,
                container=TRAINER_CONTAINER,
                follow=True,
                timestamps=True,
                tail_lines=self.tail,
                _preload_content=False,
                # no timeout: a quiet worker is not a dead stream (and the server was just
                # reached: find_job read the job a moment ago)
                _request_timeout=None,
            )
            pending = b""
            for chunk in response.stream(amt=16 * 1024, decode_content=True):
                pending += chunk
                *complete, pending = pending.split(b"\n")
                if len(pending) > MAX_LINE_BYTES:
                    complete.append(pending)
                    pending = b""
                for raw in complete:
                    self._put(raw, order, pod)
            if pending:
                self._put(pending, order, pod)
        except ApiException as err:
            if err.status not in (400, 404):
                self.errors.put(f"{pod}: {api_message(err)}")
        except Exception as err:  # a broken stream ends that pod's log, not the others'
            self.errors.put(f"{pod}: {err}")
        finally:
            self.lines.put(None)

    def _put(self, raw: bytes, order: int, pod: str) -> None:
        at, body = parse_stamped(raw.decode(errors="replace"))
        self.lines.put(LogLine(at, order, pod, body))

    def run(self, emit: Callable[[str], None], *, timestamps: bool) -> None:
        held: list[tuple[float, LogLine]] = []
        open_streams = 0
        finished = False
        next_poll = 0.0
        while True:
            now = time.monotonic()
            if now >= next_poll:
                finished, started = self._poll(emit)
                open_streams += started
                next_poll = now + POLL_SECONDS
            try:
                item = self.lines.get(timeout=0.1)
                while True:
                    if item is None:
                        open_streams -= 1
                    else:
                        held.append((time.monotonic(), item))
                    item = self.lines.get_nowait()
            except queue.Empty:
                pass
            cutoff = time.monotonic() - REORDER_SECONDS
            due = [line for arrived, line in held if arrived <= cutoff]
            if due:
                held = [(arrived, line) for arrived, line in held if arrived > cutoff]
                for line in heapq.nsmallest(len(due), due):
                    emit(format_line(line, timestamps=timestamps))
            while not self.errors.empty():
                emit(f"[{self.name}] log stream ended: {self.errors.get()}")
            if finished and open_streams == 0 and not held and self.lines.empty():
                return

    def _poll(self, emit: Callable[[str], None]) -> tuple[bool, int]:
        """Start streams for newly started pods; (job finished, streams started)."""
        job = find_job(self.target, self.name)
        if job is None:
            raise CliError(f"TrainingJob {self.name} was deleted")
        started = 0
        for pod in worker_pods(self.target, job):
            uid = str(pod["metadata"].get("uid"))
            if uid in self.streams or not _started(pod):
                continue
            attempt = attempt_of(pod)
            if attempt > self.attempt:
                if self.attempt >= 0:
                    emit(f"[{self.name}] --- attempt {attempt} (gang restart {attempt}) ---")
                self.attempt = attempt
            name = pod["metadata"]["name"]
            order = self.order.setdefault(name, len(self.order))
            thread = threading.Thread(
                target=self._stream,
                args=(name, order),
                name=f"log-{name}",
                daemon=True,  # a stream still open when the user presses ^C must not hold us
            )
            self.streams[uid] = thread
            thread.start()
            started += 1
        return phase_of(job) in TERMINAL, started
