"""Kubelet-style pod events from the node agent, so `kubectl describe pod` tells the story.

Dev/test tooling, like the agent. A kubelet records an Event on the pod for each container
step; the agent records the same reasons from the change between the container statuses it
last wrote and the ones it writes now (`container_events`, pure):

- waiting ErrImagePull → Warning `Failed` (the pull error); ImagePullBackOff → Normal
  `BackOff`; CreateContainerConfigError / CreateContainerError → Warning `Failed`;
- running for the first time → Normal `Pulled` (saying the image is not pulled here: the
  runner ignores it), `Created`, `Started`;
- a running container stopped because its pod was deleted → Normal `Killing`
  (`killing_events`).

Events are posted from a background thread (`EventSender`) so that reporting pod status
never waits on them; a failed post is logged and dropped, as a kubelet's recorder does.
The source component is `trainyard-agent`, not `kubelet`.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from kubernetes import client

log = logging.getLogger("trainyard_local.pod_events")

COMPONENT = "trainyard-agent"
_IMAGE_PULL = {"ErrImagePull": ("Warning", "Failed"), "ImagePullBackOff": ("Normal", "BackOff")}
_CONFIG_ERRORS = ("CreateContainerConfigError", "CreateContainerError")


@dataclass(frozen=True)
class PodEvent:
    """One event about one container of a pod."""

    container: str
    type: str
    reason: str
    message: str


def _states(status: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    entries = (status or {}).get("containerStatuses") or []
    return {entry["name"]: entry.get("state") or {} for entry in entries}


def container_events(
    old: dict[str, Any] | None, new: dict[str, Any], runner: str
) -> list[PodEvent]:
    """The events a kubelet would record between two pod statuses the agent wrote."""
    before, after = _states(old), _states(new)
    images = {entry["name"]: entry.get("image", "") for entry in new.get("containerStatuses", [])}
    events: list[PodEvent] = []
    for name, state in after.items():
        previous = before.get(name, {})
        if "waiting" in state:
            reason = state["waiting"].get("reason", "")
            if reason == previous.get("waiting", {}).get("reason"):
                continue
            message = state["waiting"].get("message", reason)
            if reason in _IMAGE_PULL:
                kind, event_reason = _IMAGE_PULL[reason]
                events.append(PodEvent(name, kind, event_reason, message))
            elif reason in _CONFIG_ERRORS:
                events.append(PodEvent(name, "Warning", "Failed", f"Error: {message}"))
        elif "running" in state or "terminated" in state:
            if "running" in previous or "terminated" in previous:
                continue  # it had started already
            image = images.get(name, "")
            events += [
                PodEvent(
                    name,
                    "Normal",
                    "Pulled",
                    f'Container image "{image}" not pulled: the {runner} runner does not use '
                    "images (trainyard_local, dev/test only)",
                ),
                PodEvent(name, "Normal", "Created", f"Created container: {name}"),
                PodEvent(name, "Normal", "Started", f"Started container {name}"),
            ]
    return events


def killing_events(status: dict[str, Any] | None) -> list[PodEvent]:
    """`Killing` for each container still running when its pod is deleted."""
    return [
        PodEvent(name, "Normal", "Killing", f"Stopping container {name}")
        for name, state in _states(status).items()
        if "running" in state
    ]


def event_body(pod: dict[str, Any], node: str, event: PodEvent, now: dt.datetime) -> dict[str, Any]:
    """A core/v1 Event on the pod, as a kubelet's recorder writes it."""
    meta = pod["metadata"]
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "fieldPath": f"spec.containers{{{event.container}}}",
        },
        "type": event.type,
        "reason": event.reason,
        "message": event.message,
        "source": {"component": COMPONENT, "host": node},
        "reportingComponent": COMPONENT,
        "reportingInstance": node,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


class EventSender:
    """Posts events from a queue on its own thread (and its own API client)."""

    def __init__(self, make_core: Callable[[], client.CoreV1Api]) -> None:
        self._make_core = make_core
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="pod-events", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def send(self, pod: dict[str, Any], node: str, events: Iterable[PodEvent]) -> None:
        now = dt.datetime.now(dt.UTC)
        for event in events:
            self._queue.put(event_body(pod, node, event, now))

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)

    def _run(self) -> None:
        core = self._make_core()
        while (body := self._queue.get()) is not None:
            namespace = body["metadata"]["namespace"]
            try:
                # a plain dict is sent as it is (the typed model would add nothing here)
                core.create_namespaced_event(namespace, body, _preload_content=False)  # type: ignore[arg-type]
            except Exception as error:  # the namespace may be going away; events are best effort
                log.warning("event %s on %s not recorded: %s", body["reason"], namespace, error)
