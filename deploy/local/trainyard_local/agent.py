"""The node agent: a dev/test stand-in for kubelets on a local cluster's fake nodes.

NOT a kubelet and never for production: it runs no containers (the fake runner) or runs a
container's command as a plain local process (the process runner), with no isolation.

One agent process per cluster (`python -m trainyard_local.agent`, started by `cluster.py`):

- registers its nodes (`nodes.py`) and keeps them alive: a Lease in kube-node-lease renewed
  every 10 s (what the node-lifecycle controller watches) and the Ready condition re-sent
  every 60 s;
- watches every bound pod with one list+watch (no per-pod polling of the API server) and
  keeps those on its nodes;
- gives each pod a loopback IP from the runner's range and hands it to the runner
  (`runners.py`): `start` once, `poll` (in memory) every tick, `stop` on deletion;
- patches pod status only when what the runner reports changed: phase, IPs, conditions and
  containerStatuses (waiting / running / terminated with exit code, reason and message);
- removes pods marked for deletion at once (grace 0), after stopping them;
- records kubelet-style events on its pods (`pod_events.py`: Pulled, Created, Started,
  Failed, BackOff, Killing), so `kubectl describe pod` reads as on a real cluster;
- serves `kubectl logs` for its pods (`log_server.py`) on the port its nodes advertise.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import json
import logging
import queue
import signal
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from trainyard_local import binaries, nodes
from trainyard_local.devices import plan_devices
from trainyard_local.log_server import LogServer, LogTarget
from trainyard_local.pki import Pki
from trainyard_local.pod_events import EventSender, container_events, killing_events
from trainyard_local.runners import (
    RUNNERS,
    ContainerState,
    Observation,
    PodHandle,
    Runner,
    RunnerOptions,
    load_runner,
)

log = logging.getLogger("trainyard_local.agent")

LEASE_NAMESPACE = "kube-node-lease"
LEASE_SECONDS = 40
LEASE_RENEW_SECONDS = 10.0
NODE_STATUS_SECONDS = 60.0
#: How often runners are polled; a pod's state changes are reported within about this long.
TICK_SECONDS = 0.2
MERGE_PATCH = "application/merge-patch+json"
BOUND_PODS = "spec.nodeName!="


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _time(value: dt.datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _micro_time(value: dt.datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _json(response: Any) -> Any:
    return json.loads(response.data)


class IpPool:
    """Loopback pod IPs `<prefix>.x.y` (x 0..255, y 1..254).

    Handed out round-robin rather than lowest-free: a released IP is reused only after the
    whole range, so a new pod never inherits an address that the process of a pod still
    shutting down (process runner, grace period) may hold.
    """

    SIZE = 256 * 254

    def __init__(self, prefix: str, start: int = 0) -> None:
        self.network = ipaddress.ip_network(f"{prefix}.0.0/16")
        self.taken: set[str] = set()
        self.cursor = start % self.SIZE

    def _address(self, index: int) -> str:
        x, y = divmod(index, 254)
        return str(self.network.network_address + x * 256 + y + 1)

    def claim(self, ip: str) -> bool:
        """Keep an IP a pod already reports (agent restart); False if it is not ours or taken."""
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        if address not in self.network or ip in self.taken:
            return False
        self.taken.add(ip)
        return True

    def allocate(self) -> str:
        for step in range(self.SIZE):
            ip = self._address((self.cursor + step) % self.SIZE)
            if ip not in self.taken:
                self.cursor = (self.cursor + step + 1) % self.SIZE
                self.taken.add(ip)
                return ip
        raise RuntimeError(f"no free pod IP left in {self.network}")

    def release(self, ip: str) -> None:
        self.taken.discard(ip)


@dataclass
class PodRecord:
    """One pod on our nodes: the runner's handle plus what was last reported."""

    handle: PodHandle
    reported: dict[str, Any] | None = None
    transitions: dict[str, tuple[str, str]] = field(default_factory=dict)
    finished: bool = False
    #: why the runner could not start the pod; reported as CreateContainerError
    start_error: str = ""
    #: (container, event) -> when the agent first saw it, for runners that give no time
    stamps: dict[tuple[str, str], dt.datetime] = field(default_factory=dict)
    #: a deleted pod's processes are gone by then (monotonic): stopped, or killed when their
    #: grace period ends; until then its log may still grow and a followed log stays open
    stopping_until: float | None = None


def _state_json(record: PodRecord, name: str, state: ContainerState) -> dict[str, Any]:
    if state.state == "waiting":
        body: dict[str, Any] = {"reason": state.reason or "ContainerCreating"}
        if state.message:
            body["message"] = state.message
        return {"waiting": body}

    def first_seen(event: str, given: dt.datetime | None) -> str:
        # a runner that gives no time gets the first time the agent saw the state, kept so
        # that an unchanged state yields an unchanged status (and no patch)
        if given is None:
            given = record.stamps.setdefault((name, event), _now())
        return _time(given)

    started = first_seen("started", state.started_at)
    if state.state == "running":
        return {"running": {"startedAt": started}}
    body = {
        "exitCode": state.exit_code,
        "reason": state.reason or ("Completed" if state.exit_code == 0 else "Error"),
        "startedAt": started,
        "finishedAt": first_seen("finished", state.finished_at),
    }
    if state.message:
        body["message"] = state.message
    return {"terminated": body}


def phase_of(states: list[ContainerState]) -> str:
    """Pod phase from container states, as a kubelet derives it with restartPolicy Never."""
    if not states or any(s.state == "waiting" for s in states):
        return "Pending"
    if any(s.state == "running" for s in states):
        return "Running"
    return "Succeeded" if all(s.exit_code == 0 for s in states) else "Failed"


def build_status(record: PodRecord, observation: Observation, runner: str) -> dict[str, Any]:
    """The pod status the agent writes; an unchanged observation gives an equal dict (times
    come from the runner or from `record`, which remembers when each change was seen)."""
    handle = record.handle
    containers = handle.containers
    states = [
        observation.containers.get(c["name"], ContainerState("waiting", "ContainerCreating"))
        for c in containers
    ]
    phase = phase_of(states)
    all_running = bool(states) and all(s.state == "running" for s in states)
    condition_states = {
        "PodReadyToStartContainers": ("True", ""),
        "Initialized": ("True", ""),
        "ContainersReady": ("True", "") if all_running else ("False", "ContainersNotReady"),
        "Ready": ("True", "") if all_running else ("False", "ContainersNotReady"),
        "PodScheduled": ("True", ""),
    }
    if phase in ("Succeeded", "Failed"):
        condition_states["ContainersReady"] = ("False", "PodCompleted")
        condition_states["Ready"] = ("False", "PodCompleted")
    conditions = []
    for kind, (status, reason) in condition_states.items():
        previous = record.transitions.get(kind)
        if previous is None or previous[0] != status:
            stamp = _time(_now()) if previous else _time(handle.accepted_at)
            record.transitions[kind] = (status, stamp)
        condition: dict[str, Any] = {
            "type": kind,
            "status": status,
            "lastProbeTime": None,
            "lastTransitionTime": record.transitions[kind][1],
        }
        if reason:
            condition["reason"] = reason
        conditions.append(condition)
    statuses = []
    for container, state in zip(containers, states, strict=True):
        entry: dict[str, Any] = {
            "name": container["name"],
            "image": container.get("image", ""),
            "imageID": "",
            "ready": state.state == "running",
            "started": state.state == "running",
            "restartCount": 0,
            "state": _state_json(record, container["name"], state),
            "lastState": {},
        }
        if state.state != "waiting":
            entry["containerID"] = f"trainyard-{runner}://{handle.uid}/{container['name']}"
        statuses.append(entry)
    # as a kubelet reports them: sorted by container name, whatever the spec's order
    statuses.sort(key=lambda entry: entry["name"])
    return {
        "phase": phase,
        "hostIP": handle.host_ip,
        "hostIPs": [{"ip": handle.host_ip}],
        "podIP": handle.pod_ip,
        "podIPs": [{"ip": handle.pod_ip}],
        "startTime": _time(handle.accepted_at),
        "conditions": conditions,
        "containerStatuses": statuses,
    }


class Agent:
    """Registers nodes, follows pods bound to them and reports what the runner observes."""

    def __init__(
        self,
        kubeconfig: Path,
        runner_name: str,
        cluster: str,
        specs: list[nodes.NodeSpec],
        state_dir: Path,
        *,
        log_port: int = 0,
        pki_dir: Path | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.runner_name = runner_name
        self.cluster = cluster
        self.specs = {spec.name: spec for spec in specs}
        self.state_dir = state_dir
        self.runner: Runner = load_runner(
            runner_name,
            RunnerOptions(
                state_dir=state_dir,
                kubeconfig=kubeconfig,
                cluster=cluster,
                gpu_devices=plan_devices([(spec.name, spec.gpus) for spec in specs]),
            ),
        )
        # each cluster starts in its own /24 block (by name), so that the process pods of two
        # clusters side by side do not share an IP: each worker binds port 9400 on its pod IP
        self.ips = IpPool(
            RUNNERS[runner_name].ip_prefix, start=zlib.crc32(cluster.encode()) % 256 * 254
        )
        self.pods: dict[str, PodRecord] = {}
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.stopping = threading.Event()
        self.kube_version = binaries.kube_version()
        self.event_sender = EventSender(self._core)
        # kubectl logs: the API server calls this port on the node (0: no log server)
        self.log_server = (
            LogServer(log_port, Pki(pki_dir), self.log_target) if log_port and pki_dir else None
        )

    def _core(self) -> client.CoreV1Api:
        # one ApiClient per caller thread: urllib3 pools are shared but request state is not
        api = config.new_client_from_config(config_file=str(self.kubeconfig))  # type: ignore[no-untyped-call]
        return client.CoreV1Api(api)

    # -- nodes --------------------------------------------------------------------------

    def register_nodes(self, core: client.CoreV1Api) -> None:
        for spec in self.specs.values():
            self.register_node(core, spec)
        # nodes of an earlier start of this cluster with more nodes: they would stay NotReady
        listing = _json(
            core.list_node(
                label_selector=f"{nodes.CLUSTER_LABEL}={self.cluster}", _preload_content=False
            )
        )
        for node in listing["items"]:
            name = node["metadata"]["name"]
            if name not in self.specs:
                log.info("node %s is no longer part of the cluster; deleting it", name)
                core.delete_node(name, _preload_content=False)

    def register_node(self, core: client.CoreV1Api, spec: nodes.NodeSpec) -> None:
        manifest = nodes.node_manifest(spec, cluster=self.cluster, runner=self.runner_name)
        try:
            body = client.V1Node.model_validate(manifest)
            core.create_node(body=body, _preload_content=False)
        except ApiException as error:
            if error.status != 409:
                raise
            # it exists (agent or cluster restart): take it over with our labels and taints
            core.patch_node(
                spec.name,
                body={
                    "metadata": {"labels": manifest["metadata"]["labels"]},
                    "spec": {"taints": manifest["spec"]["taints"]},
                },
                _content_type=MERGE_PATCH,
                _preload_content=False,
            )
        self._send_node_status(core, spec)
        self._renew_lease(core, spec.name)
        # the not-ready taint that admission put on the new node: a kubelet's Ready status
        # would make the node-lifecycle controller lift it; do it now to save seconds
        core.patch_node(
            spec.name,
            body={"spec": {"taints": manifest["spec"]["taints"]}},
            _content_type=MERGE_PATCH,
            _preload_content=False,
        )
        log.info("node %s registered (%s)", spec.name, spec.capacity)

    def _send_node_status(self, core: client.CoreV1Api, spec: nodes.NodeSpec) -> None:
        status = nodes.node_status(
            spec,
            runner=self.runner_name,
            now=_time(_now()),
            kube_version=self.kube_version,
            log_port=self.log_server.server_port if self.log_server else 0,
        )
        core.patch_node_status(
            spec.name, body={"status": status}, _content_type=MERGE_PATCH, _preload_content=False
        )

    def _renew_lease(self, core: client.CoreV1Api, node: str) -> None:
        coordination = client.CoordinationV1Api(core.api_client)
        renew = {
            "spec": {
                "holderIdentity": node,
                "leaseDurationSeconds": LEASE_SECONDS,
                "renewTime": _micro_time(_now()),
            }
        }
        try:
            coordination.patch_namespaced_lease(
                node,
                LEASE_NAMESPACE,
                body=renew,
                _content_type=MERGE_PATCH,
                _preload_content=False,
            )
        except ApiException as error:
            if error.status != 404:
                raise
            owner = _json(core.read_node(node, _preload_content=False))["metadata"]["uid"]
            lease = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {
                    "name": node,
                    "namespace": LEASE_NAMESPACE,
                    # like a kubelet's: the lease goes when the node is deleted
                    "ownerReferences": [
                        {"apiVersion": "v1", "kind": "Node", "name": node, "uid": owner}
                    ],
                },
                **renew,
            }
            coordination.create_namespaced_lease(
                LEASE_NAMESPACE, body=client.V1Lease.model_validate(lease), _preload_content=False
            )

    def heartbeat_loop(self) -> None:
        core = self._core()
        last_status = time.monotonic()
        while not self.stopping.wait(LEASE_RENEW_SECONDS):
            send_status = time.monotonic() - last_status >= NODE_STATUS_SECONDS
            for spec in self.specs.values():
                try:
                    self._renew_lease(core, spec.name)
                    if send_status:
                        self._send_node_status(core, spec)
                except ApiException as error:
                    if error.status == 404:  # someone deleted the node: register it again,
                        log.warning("node %s was deleted; registering it again", spec.name)
                        self.register_node(core, spec)  # as a kubelet does
                    else:
                        log.warning("heartbeat for %s failed: %s", spec.name, error.reason)
                except Exception:  # keep beating: one failed renewal is not fatal
                    log.exception("heartbeat for %s failed", spec.name)
            if send_status:
                last_status = time.monotonic()

    # -- pods: list + watch ------------------------------------------------------------------

    def watch_loop(self) -> None:
        core = self._core()
        while not self.stopping.is_set():
            try:
                listing = _json(
                    core.list_pod_for_all_namespaces(
                        field_selector=BOUND_PODS, _preload_content=False
                    )
                )
                self.events.put(("SYNC", listing["items"]))
                version = listing["metadata"]["resourceVersion"]
                for event in self._watch(core, version):
                    self.events.put((event["type"], event["object"]))
            except Exception as error:
                if self.stopping.is_set():
                    return
                # short: while the API server restarts this repeats every second
                log.warning("pod watch failed (%s); listing again", error)
                time.sleep(1.0)

    def _watch(self, core: client.CoreV1Api, version: str) -> Iterator[dict[str, Any]]:
        """Watch from `version` until the server says it is too old (then return: relist)."""
        while not self.stopping.is_set():
            # _preload_content=False: the raw HTTP response, streamed line by line as JSON
            response: Any = core.list_pod_for_all_namespaces(
                field_selector=BOUND_PODS,
                watch=True,
                resource_version=version,
                allow_watch_bookmarks=True,
                timeout_seconds=300,
                _preload_content=False,
                _request_timeout=(10, 330),
            )
            try:
                for line in iter_resp_lines(response):  # type: ignore[no-untyped-call]
                    event = json.loads(line)
                    if event["type"] == "ERROR":
                        if event["object"].get("code") == 410:
                            return
                        raise RuntimeError(f"watch error: {event['object']}")
                    version = event["object"]["metadata"]["resourceVersion"]
                    if event["type"] != "BOOKMARK":
                        yield event
            finally:
                response.release_conn()

    # -- pods: the runner side -------------------------------------------------------------

    def handle_event(self, core: client.CoreV1Api, kind: str, payload: Any) -> None:
        if kind == "SYNC":
            present = set()
            for pod in payload:
                present.add(pod["metadata"]["uid"])
                self.observe(core, pod)
            for uid in list(self.pods):
                if uid not in present:
                    self.forget(uid)
            return
        if kind == "DELETED":
            self.forget(payload["metadata"]["uid"])
        else:
            self.observe(core, payload)

    def observe(self, core: client.CoreV1Api, pod: dict[str, Any]) -> None:
        node = pod.get("spec", {}).get("nodeName", "")
        if node not in self.specs:
            return
        meta = pod["metadata"]
        uid = meta["uid"]
        if meta.get("deletionTimestamp"):
            # stop first (the runner must not wait out the grace period), then remove the
            # object at once, as a kubelet does once its containers are gone; a pod never
            # seen before is not started just to be stopped
            if uid in self.pods:
                going = self.pods[uid]
                going.handle.pod = pod
                if not going.finished:
                    events = killing_events(going.reported)
                    self.event_sender.send(pod, going.handle.node_name, events)
                self.forget(uid)
            try:
                core.delete_namespaced_pod(
                    meta["name"],
                    meta["namespace"],
                    grace_period_seconds=0,
                    body=client.V1DeleteOptions(
                        grace_period_seconds=0, preconditions=client.V1Preconditions(uid=uid)
                    ),
                    _preload_content=False,
                )
            except ApiException as error:
                if error.status not in (404, 409):
                    raise
            return
        record = self.pods.get(uid)
        if record is None:
            self.accept(pod, node)
        else:
            record.handle.pod = pod

    def accept(self, pod: dict[str, Any], node: str) -> PodRecord:
        status = pod.get("status", {})
        ip = status.get("podIP", "")
        if not (ip and self.ips.claim(ip)):
            ip = self.ips.allocate()
        started = status.get("startTime")
        accepted = (
            dt.datetime.strptime(started, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
            if started
            else _now()
        )
        meta = pod["metadata"]
        handle = PodHandle(
            pod=pod,
            node_name=node,
            pod_ip=ip,
            host_ip=nodes.NODE_IP,
            work_dir=self.state_dir / "pods" / f"{meta['namespace']}_{meta['name']}_{meta['uid']}",
            accepted_at=accepted,
        )
        record = PodRecord(handle)
        self.pods[meta["uid"]] = record
        # a pod that already ended (found after an agent restart) is never run again
        if status.get("phase") in ("Succeeded", "Failed"):
            record.finished = True
        else:
            try:
                self.runner.start(handle)
            except Exception as error:  # a bad pod must not stop the agent
                log.exception("runner could not start %s/%s", meta["namespace"], meta["name"])
                record.start_error = f"{type(error).__name__}: {error}"
            log.info(
                "pod %s/%s accepted on %s with IP %s", meta["namespace"], meta["name"], node, ip
            )
        return record

    def forget(self, uid: str) -> None:
        record = self.pods.pop(uid, None)
        if record is not None:
            self.runner.stop(record.handle)
            self.ips.release(record.handle.pod_ip)
            pod = record.handle.pod
            grace = pod["metadata"].get("deletionGracePeriodSeconds")
            if grace is None:
                grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
            # a kubelet ends `kubectl logs -f` of a deleted pod when its containers exit
            record.stopping_until = time.monotonic() + float(grace) + 1.0

    def _observe_runner(self, record: PodRecord) -> Observation:
        if not record.start_error:
            try:
                return self.runner.poll(record.handle)
            except Exception as error:
                log.exception(
                    "runner could not poll %s/%s", record.handle.namespace, record.handle.name
                )
                record.start_error = f"{type(error).__name__}: {error}"
        failed = ContainerState("waiting", "CreateContainerError", record.start_error)
        return Observation({c["name"]: failed for c in record.handle.containers})

    def report(self, core: client.CoreV1Api) -> None:
        for record in list(self.pods.values()):
            if record.finished:
                continue
            status = build_status(record, self._observe_runner(record), self.runner_name)
            if status == record.reported:
                continue
            handle = record.handle
            try:
                core.patch_namespaced_pod_status(
                    handle.name,
                    handle.namespace,
                    body={"status": status},
                    _content_type=MERGE_PATCH,
                    _preload_content=False,
                )
            except ApiException as error:
                if error.status != 404:  # 404: deleted meanwhile; the watch will say so
                    log.warning(
                        "status of %s/%s not written: %s %s",
                        handle.namespace,
                        handle.name,
                        error.status,
                        error.reason,
                    )
                continue
            events = container_events(record.reported, status, self.runner_name)
            self.event_sender.send(handle.pod, handle.node_name, events)
            record.reported = status
            if status["phase"] in ("Succeeded", "Failed"):
                record.finished = True
            log.info("pod %s/%s: %s", handle.namespace, handle.name, status["phase"])

    def log_target(self, namespace: str, pod: str, container: str) -> LogTarget | None:
        """Where a container of a pod on our nodes writes its output (for the log server)."""
        for record in list(self.pods.values()):  # a copy: the main thread adds and removes
            handle = record.handle
            if handle.namespace != namespace or handle.name != pod:
                continue
            names = [c.get("name") for c in handle.pod.get("spec", {}).get("containers", [])]
            if container not in names:
                return None
            return LogTarget(handle.work_dir / f"{container}.log", partial(_running, record))
        return None

    # -- main loop -------------------------------------------------------------------------

    def run(self) -> None:
        core = self._core()
        if self.log_server:
            self.log_server.start()
        self.event_sender.start()
        self._wait_for_api(core)
        self.register_nodes(core)
        threading.Thread(target=self.heartbeat_loop, name="heartbeat", daemon=True).start()
        threading.Thread(target=self.watch_loop, name="pod-watch", daemon=True).start()
        while not self.stopping.is_set():
            try:
                kind, payload = self.events.get(timeout=TICK_SECONDS)
                self.handle_event(core, kind, payload)
                while True:  # drain what arrived meanwhile before polling runners
                    kind, payload = self.events.get_nowait()
                    self.handle_event(core, kind, payload)
            except queue.Empty:
                pass
            except Exception:
                log.exception("handling a pod event failed")
            try:
                self.report(core)
            except Exception:
                log.exception("reporting pod status failed")
        for uid in list(self.pods):
            self.forget(uid)
        if self.log_server:
            self.log_server.stop()
        self.event_sender.stop()

    def _wait_for_api(self, core: client.CoreV1Api) -> None:
        deadline = time.monotonic() + 120
        while True:
            try:
                core.list_namespace(limit=1, _preload_content=False, _request_timeout=5)
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


def _running(record: PodRecord) -> bool:
    if record.finished:
        return False
    return record.stopping_until is None or time.monotonic() < record.stopping_until


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m trainyard_local.agent",
        description="Fake-node agent for the trainyard local cluster (dev/test stand-in for "
        "kubelets, never production).",
    )
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--runner", choices=sorted(RUNNERS), default="fake")
    parser.add_argument("--cluster", required=True)
    parser.add_argument("--cpu-nodes", type=int, default=1)
    parser.add_argument("--gpu-nodes", type=int, default=1)
    parser.add_argument("--gpus-per-node", type=int, default=8)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--log-port", type=int, default=0, help="serve `kubectl logs` here")
    parser.add_argument("--pki-dir", type=Path, help="the cluster's certificates (log server)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        specs = nodes.plan_nodes(args.cluster, args.cpu_nodes, args.gpu_nodes, args.gpus_per_node)
    except ValueError as error:
        parser.error(str(error))
    agent = Agent(
        args.kubeconfig,
        args.runner,
        args.cluster,
        specs,
        args.state_dir,
        log_port=args.log_port,
        pki_dir=args.pki_dir,
    )
    signal.signal(signal.SIGTERM, lambda _sig, _frame: agent.stopping.set())
    signal.signal(signal.SIGINT, lambda _sig, _frame: agent.stopping.set())
    agent.run()


if __name__ == "__main__":
    main()
