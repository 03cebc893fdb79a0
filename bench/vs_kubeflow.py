"""Trainyard against Kubeflow's controllers, side by side on one embedded control plane.

    .venv/bin/python bench/vs_kubeflow.py --jobs 200 --workers 4 --json /tmp/vs.json
    .venv/bin/python bench/vs_kubeflow.py --mode memory --existing 5000
    .venv/bin/python bench/vs_kubeflow.py --mode churn --rate 10 --duration 120

One LocalCluster (fake GPU nodes, fake-node agent; the API server audits every request,
`audit_counts.POLICY`). The Kubeflow controllers are built by bench/kubeflow/build.sh
(cached outside the repository). Systems (`controllers.py`):

    trainyard             this repository's operator, default settings
    kubeflow_v1           Kubeflow training-operator v1 (PyTorchJob) at its best setting
                          (--kf-threads, --kf-qps, --kf-burst; default 4 / 1000 / 2000)
    kubeflow_v1_defaults  the same at its defaults (1 thread, 20 QPS, burst 30)
    kubeflow_v2           Kubeflow Trainer v2 (TrainJob -> JobSet -> Job -> Pod), with JobSet

Modes:
- compare (default): each system in turn, in a namespace of its own, then once more in the
  reverse order (--rounds); for each run: JOBS jobs of WORKERS workers (1 nvidia.com/gpu,
  cpu 100m, memory 64Mi) applied by --apply-threads clients, then
  - wall time from the first apply until all pods exist and until all are Running (seen
    through the bench's own pod watch); per job apply -> all its pods created, median, p99;
  - API requests per job by verb and resource as the API server saw them (audit log, under
    the system's own identities; watches apart), and the control plane's requests per job
    in the run's namespace (scheduler, node agent, Endpoints/EndpointSlice controllers,
    garbage collector, ...);
  - the controller's CPU seconds during the run and its peak RSS (VmHWM);
  - events its recorder said it dropped.
  Figures of a system are the mean of its rounds; every round is in the JSON.
- memory: for each system, --existing suspended jobs are created and processed; then its RSS,
  and --probes new jobs one at a time: apply -> all pods created.
- churn: --rate jobs/s created for --duration s, each deleted --lifetime s after it was
  created; p50/p99 apply -> pods created, jobs deleted before their pods all existed, and
  whether the backlog drains (pods left, seconds after the last deletion until none is).

The machine's load average is recorded with each run: measure on a quiet machine, or read
the ratios of one invocation, which share the load.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines
from urllib3.exceptions import HTTPError

import audit_counts
from controllers import (
    KubeflowV1,
    KubeflowV2,
    Running,
    System,
    Trainyard,
    build_controllers,
    service_account_kubeconfig,
    wait_for,
)
from trainyard_local.cluster import LocalCluster
from trainyard_local.pytest_plugin import wait_for_service_account

ALL_SYSTEMS = ("trainyard", "kubeflow_v1", "kubeflow_v1_defaults", "kubeflow_v2")
DRIVER = "bench-driver"
DRIVER_NAMESPACE = "bench-system"
PODS_PER_NODE = 100  # fake nodes allow 110 pods


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[round(q * (len(ordered) - 1))]


# --- watching ---------------------------------------------------------------------------------


class Watch:
    """A list+watch of one collection in one namespace, in a thread; `handle(type, obj, t)`
    is called for every event (t: time.monotonic() when it arrived)."""

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        handle: Callable[[str, dict[str, Any], float], None],
        *,
        custom: tuple[str, str, str] | None = None,
    ) -> None:
        self.api, self.namespace, self.handle, self.custom = api, namespace, handle, custom
        self.stopped = threading.Event()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.ready.wait(60)

    def _request(self, **kwargs: Any) -> Any:
        if self.custom is None:
            return client.CoreV1Api(self.api).list_namespaced_pod(
                self.namespace, _preload_content=False, **kwargs
            )
        group, version, plural = self.custom
        return client.CustomObjectsApi(self.api).list_namespaced_custom_object(
            group, version, self.namespace, plural, _preload_content=False, **kwargs
        )

    def _run(self) -> None:
        version = ""
        while not self.stopped.is_set():
            try:
                if not version:
                    listed = json.loads(self._request().data)
                    now = time.monotonic()
                    for obj in listed.get("items") or []:
                        self.handle("ADDED", obj, now)
                    version = listed["metadata"]["resourceVersion"]
                    self.ready.set()
                response = self._request(
                    watch=True,
                    resource_version=version,
                    allow_watch_bookmarks=True,
                    timeout_seconds=120,
                )
                for line in iter_resp_lines(response):  # type: ignore[no-untyped-call]
                    if self.stopped.is_set():
                        return
                    event = json.loads(line)
                    if event["type"] == "ERROR":
                        version = ""  # 410 Gone: list again
                        break
                    obj = event["object"]
                    version = obj["metadata"]["resourceVersion"]
                    if event["type"] != "BOOKMARK":
                        self.handle(event["type"], obj, time.monotonic())
            except (HTTPError, OSError, ApiException):
                time.sleep(0.5)

    def stop(self) -> None:
        self.stopped.set()


class PodTimes:
    """When each job's pods were first seen and first seen Running, and which pods live."""

    def __init__(self, job_label: str) -> None:
        self.job_label = job_label
        self.lock = threading.Lock()
        self.created: dict[str, dict[str, float]] = {}
        self.running: dict[str, dict[str, float]] = {}
        self.live: set[str] = set()
        self.total_created = 0
        self.total_running = 0

    def __call__(self, kind: str, obj: dict[str, Any], now: float) -> None:
        meta = obj["metadata"]
        job = (meta.get("labels") or {}).get(self.job_label)
        if job is None:
            return
        name = meta["name"]
        with self.lock:
            if kind == "DELETED":
                self.live.discard(meta["uid"])
                return
            self.live.add(meta["uid"])
            seen = self.created.setdefault(job, {})
            if name not in seen:
                seen[name] = now
                self.total_created += 1
            if (obj.get("status") or {}).get("phase") == "Running":
                running = self.running.setdefault(job, {})
                if name not in running:
                    running[name] = now
                    self.total_running += 1


# --- one cluster ------------------------------------------------------------------------------


class Bench:
    """The cluster, the driver's client and the systems installed on it."""

    def __init__(self, args: argparse.Namespace, state: Path) -> None:
        self.args = args
        self.state = state
        pods = max(args.jobs, args.probes + 1) * args.workers
        if args.mode == "churn":
            pods = int(args.rate * (args.lifetime + 30)) * args.workers
        gpu_nodes = max(10, -(-pods // PODS_PER_NODE))
        self.cluster = LocalCluster(
            "vs-kubeflow",
            state / "cluster",
            cpu_nodes=0,
            gpu_nodes=gpu_nodes,
            gpus_per_node=max(8, -(-pods // gpu_nodes) + 8),
            tie_to_parent=True,
            audit_policy=audit_counts.POLICY,
            audit_log_max_mib=1 << 16,
            ready_timeout=300,
        )
        self.systems: dict[str, System] = {}
        self.admin: client.ApiClient | None = None
        self.driver: client.ApiClient | None = None

    def up(self) -> None:
        self.cluster.start()
        print(
            f"cluster up in {self.cluster.startup_seconds:.1f} s: "
            f"{self.cluster.gpu_nodes} fake GPU nodes x "
            f"{self.cluster.gpus_per_node} nvidia.com/gpu",
            flush=True,
        )
        self.admin = config.new_client_from_config(config_file=str(self.cluster.kubeconfig))  # type: ignore[no-untyped-call]
        kubeconfig = service_account_kubeconfig(
            self.admin,
            self.cluster,
            self.state / "driver.kubeconfig",
            namespace=DRIVER_NAMESPACE,
            name=DRIVER,
            rules=[{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}],
        )
        configuration = client.Configuration()
        config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)  # type: ignore[no-untyped-call]
        configuration.connection_pool_maxsize = self.args.apply_threads + 4
        self.driver = client.ApiClient(configuration)

    def down(self) -> None:
        for api in (self.driver, self.admin):
            if api is not None:
                api.close()  # type: ignore[no-untyped-call]
        self.cluster.stop()

    def install(self, names: list[str]) -> None:
        assert self.admin is not None
        needed = set()
        if {"kubeflow_v1", "kubeflow_v1_defaults"} & set(names):
            needed.add("training-operator")
        if "kubeflow_v2" in names:
            needed |= {"trainer", "jobset"}
        binaries = build_controllers(needed) if needed else {}
        args = self.args
        for name in names:
            if name == "trainyard":
                system: System = Trainyard(_env_pairs(args.trainyard_env))
            elif name == "kubeflow_v1":
                system = KubeflowV1(
                    binaries["training-operator"],
                    threads=args.kf_threads,
                    qps=args.kf_qps,
                    burst=args.kf_burst,
                )
            elif name == "kubeflow_v1_defaults":
                system = KubeflowV1(binaries["training-operator"])
            elif name == "kubeflow_v2":
                system = KubeflowV2(binaries["trainer"], binaries["jobset"])
            else:
                raise SystemExit(f"--systems: unknown system {name!r} (one of {ALL_SYSTEMS})")
            system.install(self.admin, self.cluster, self.state)
            self.systems[name] = system

    # --- helpers ----------------------------------------------------------------------------

    def namespace(self, name: str) -> None:
        assert self.admin is not None
        core = client.CoreV1Api(self.admin)
        core.create_namespace({"metadata": {"name": name}})
        wait_for_service_account(core, name)

    def delete_namespace(self, name: str, timeout: float = 900) -> float:
        """Delete a run's namespace and wait until it is gone; returns the seconds it took."""
        assert self.admin is not None
        core = client.CoreV1Api(self.admin)
        began = time.monotonic()
        try:
            core.delete_namespace(name, _preload_content=False)
        except ApiException as err:
            if err.status != 404:
                raise

        def gone() -> bool:
            try:
                core.read_namespace(name, _preload_content=False)
            except ApiException as err:
                if err.status == 404:
                    return True
                raise
            return False

        wait_for(f"namespace {name} deleted", gone, timeout)
        return time.monotonic() - began

    def create(self, system: System, namespace: str, body: dict[str, Any]) -> None:
        assert self.driver is not None
        client.CustomObjectsApi(self.driver).create_namespaced_custom_object(
            system.group, system.version, namespace, system.plural, body, _preload_content=False
        )

    def delete(self, system: System, namespace: str, name: str) -> None:
        assert self.driver is not None
        try:
            client.CustomObjectsApi(self.driver).delete_namespaced_custom_object(
                system.group,
                system.version,
                namespace,
                system.plural,
                name,
                body=client.V1DeleteOptions(propagation_policy="Background"),
                _preload_content=False,
            )
        except ApiException as err:
            if err.status != 404:
                raise

    def apply_all(
        self, system: System, namespace: str, names: list[str], *, suspend: bool = False
    ) -> dict[str, float]:
        """Create the jobs from --apply-threads clients; name -> when its create returned."""
        applied: dict[str, float] = {}

        def one(name: str) -> None:
            for attempt in range(5):
                try:
                    self.create(
                        system, namespace, system.job(name, self.args.workers, suspend=suspend)
                    )
                    break
                except ApiException as err:
                    if err.status not in (429, 500, 503, 504) or attempt == 4:
                        raise
                    time.sleep(0.5)
            applied[name] = time.monotonic()

        with concurrent.futures.ThreadPoolExecutor(self.args.apply_threads) as pool:
            list(pool.map(one, names))
        return applied

    def start(self, system: System, namespace: str, run_state: Path) -> Running:
        """Start a system and wait until it watches what it reconciles (its initial lists
        done), so that a measured window holds its steady-state work only."""
        assert self.admin is not None
        offset = audit_counts.offset(self.cluster.audit_log)
        running = system.start(self.admin, self.cluster, namespace, run_state)
        mine = system.identities(namespace)

        def watching() -> bool:
            watched = {
                r.resource
                for r in self.requests(offset, audit_counts.offset(self.cluster.audit_log))
                if r.verb == "watch" and r.user in mine
            }
            return system.watched <= watched

        try:
            wait_for(f"{system.key} watching {sorted(system.watched)}", watching, 180)
        except BaseException:
            running.stop()
            raise
        time.sleep(1.0)
        return running

    def profile(self, running: Running, namespace: str) -> subprocess.Popen[bytes] | None:
        """With --py-spy DIR: sample the Python controller through the measured window
        (collapsed stacks, `<namespace>.txt`, which flamegraph tools read)."""
        if self.args.py_spy is None or "trainyard-operator" not in running.pids:
            return None
        self.args.py_spy.mkdir(parents=True, exist_ok=True)
        spy = Path(sys.executable).with_name("py-spy")
        return subprocess.Popen(
            [
                str(spy),
                "record",
                "--pid",
                str(running.pids["trainyard-operator"]),
                "--format",
                "raw",
                "--rate",
                "100",
                "--output",
                str(self.args.py_spy / f"{namespace}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def requests(self, start: int, end: int) -> list[audit_counts.Request]:
        return audit_counts.read_requests(self.cluster.audit_log, start, end)

    def measure(  # noqa: PLR0917
        self,
        system: System,
        namespace: str,
        running: Running,
        requests: list[audit_counts.Request],
        jobs: int,
        cpu_before: dict[str, float],
    ) -> dict[str, Any]:
        """Requests, CPU and memory of a window."""
        mine = system.identities(namespace)
        counts = audit_counts.count(requests, mine)
        driver = f"system:serviceaccount:{DRIVER_NAMESPACE}:{DRIVER}"
        plane = audit_counts.by_user(requests, namespace, mine | {driver})
        cpu = {k: v - cpu_before.get(k, 0.0) for k, v in running.cpu().items()}
        memory = running.memory()
        events = sum(n for call, n in counts.by_call.items() if call == "create events")
        return {
            "requests_per_job": round(counts.total / jobs, 2),
            "requests_by_call": counts.per_job(jobs),
            "watches": counts.watches,
            "events_per_job": round(events / jobs, 2),
            "control_plane_requests_per_job": round(sum(plane.values()) / jobs, 2),
            "control_plane_by_client": {k: round(n / jobs, 2) for k, n in plane.most_common()},
            "cpu_s": round(sum(cpu.values()), 2),
            "cpu_by_process": {k: round(v, 2) for k, v in cpu.items()},
            "rss_mib": round(sum(m[0] for m in memory.values()), 1),
            "peak_rss_mib": round(sum(m[1] for m in memory.values()), 1),
            "peak_rss_by_process": {k: round(m[1], 1) for k, m in memory.items()},
            "dropped_events": system.dropped_events(running),
        }

    # --- compare -----------------------------------------------------------------------------

    def compare_run(self, system: System, namespace: str) -> dict[str, Any]:
        assert self.admin is not None and self.driver is not None
        args = self.args
        self.namespace(namespace)
        run_state = self.state / namespace
        run_state.mkdir()
        load_before = os.getloadavg()[0]
        running = self.start(system, namespace, run_state)
        times = PodTimes(system.job_label)
        watch = Watch(self.driver, namespace, times)
        try:
            names = [f"j-{i:04d}" for i in range(args.jobs)]
            pods = args.jobs * args.workers
            cpu_before = running.cpu()
            profiler = self.profile(running, namespace)
            start = audit_counts.offset(self.cluster.audit_log)
            began = time.monotonic()
            applied = self.apply_all(system, namespace, names)
            apply_seconds = time.monotonic() - began
            deadline = began + args.timeout
            created_wall = running_wall = None
            while time.monotonic() < deadline:
                with times.lock:
                    total_created, total_running = times.total_created, times.total_running
                if created_wall is None and total_created >= pods:
                    created_wall = max(max(t.values()) for t in times.created.values()) - began
                if total_running >= pods:
                    running_wall = max(max(t.values()) for t in times.running.values()) - began
                    break
                time.sleep(0.2)
            time.sleep(args.settle)  # what a controller does after its pods run counts too
            end = audit_counts.offset(self.cluster.audit_log)
            requests = self.requests(start, end)
            result = self.measure(system, namespace, running, requests, args.jobs, cpu_before)
            if profiler is not None:
                profiler.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
                profiler.wait(60)
        finally:
            watch.stop()
            running.stop()
        created = [
            max(times.created[n].values()) - t
            for n, t in applied.items()
            if len(times.created.get(n, {})) >= args.workers
        ]
        run = {
            "system": system.key,
            "settings": system.settings(),
            "namespace": namespace,
            "jobs": args.jobs,
            "workers": args.workers,
            "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "apply_s": round(apply_seconds, 2),
            "pods_created_wall_s": _round(created_wall),
            "running_wall_s": _round(running_wall),
            "pods_created": times.total_created,
            "pods_running": times.total_running,
            "jobs_per_s": _round(args.jobs / created_wall if created_wall else None),
            "median_created_s": _round(statistics.median(created) if created else None),
            "p99_created_s": _round(percentile(created, 0.99) if created else None),
            "jobs_complete": len(created),
            **result,
        }
        run["cleanup_s"] = round(self.delete_namespace(namespace), 1)
        return run

    # --- memory ------------------------------------------------------------------------------

    def memory_run(self, system: System, namespace: str) -> dict[str, Any]:
        assert self.admin is not None and self.driver is not None
        args = self.args
        self.namespace(namespace)
        run_state = self.state / namespace
        run_state.mkdir()
        running = self.start(system, namespace, run_state)
        processed: set[str] = set()
        lock = threading.Lock()

        def on_job(kind: str, obj: dict[str, Any], _now: float) -> None:
            if kind != "DELETED" and system.suspended(obj):
                with lock:
                    processed.add(obj["metadata"]["name"])

        jobs_watch = Watch(
            self.driver, namespace, on_job, custom=(system.group, system.version, system.plural)
        )
        times = PodTimes(system.job_label)
        pods_watch = Watch(self.driver, namespace, times)
        try:
            load_before = os.getloadavg()[0]
            cpu_before = running.cpu()
            start = audit_counts.offset(self.cluster.audit_log)
            began = time.monotonic()
            names = [f"s-{i:05d}" for i in range(args.existing)]
            self.apply_all(system, namespace, names, suspend=True)
            apply_seconds = time.monotonic() - began
            wait_for(
                f"{system.key}: {args.existing} suspended jobs processed",
                lambda: len(processed) >= args.existing,
                args.timeout,
            )
            processed_s = time.monotonic() - began
            time.sleep(args.settle)
            end = audit_counts.offset(self.cluster.audit_log)
            result = self.measure(
                system, namespace, running, self.requests(start, end), args.existing, cpu_before
            )
            probes = []
            for i in range(args.probes):
                name = f"new-{i}"
                t0 = time.monotonic()
                self.create(system, namespace, system.job(name, args.workers))
                applied = time.monotonic()
                wait_for(
                    f"{system.key}: pods of {name}",
                    lambda n=name: len(times.created.get(n, {})) >= args.workers,  # type: ignore[misc]
                    args.timeout,
                )
                probes.append(round(max(times.created[name].values()) - applied, 2))
                del t0
            memory_after = running.memory()
        finally:
            jobs_watch.stop()
            pods_watch.stop()
            running.stop()
        run = {
            "system": system.key,
            "settings": system.settings(),
            "existing": args.existing,
            "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "apply_s": round(apply_seconds, 1),
            "processed_s": round(processed_s, 1),
            "rss_mib": result["rss_mib"],
            "peak_rss_mib": round(sum(m[1] for m in memory_after.values()), 1),
            "rss_after_probes_mib": round(sum(m[0] for m in memory_after.values()), 1),
            "new_job_pods_created_s": probes,
            "requests_per_existing_job": result["requests_per_job"],
            "requests_by_call": result["requests_by_call"],
            "cpu_s": result["cpu_s"],
        }
        run["cleanup_s"] = round(self.delete_namespace(namespace), 1)
        return run

    # --- churn -------------------------------------------------------------------------------

    def churn_run(self, system: System, namespace: str) -> dict[str, Any]:
        assert self.admin is not None and self.driver is not None
        args = self.args
        self.namespace(namespace)
        run_state = self.state / namespace
        run_state.mkdir()
        running = self.start(system, namespace, run_state)
        times = PodTimes(system.job_label)
        watch = Watch(self.driver, namespace, times)
        applied: dict[str, float] = {}
        deleted: dict[str, float] = {}
        backlog: list[tuple[float, int]] = []
        errors: Counter[str] = Counter()
        try:
            load_before = os.getloadavg()[0]
            cpu_before = running.cpu()
            start = audit_counts.offset(self.cluster.audit_log)
            began = time.monotonic()
            total = int(args.rate * args.duration)
            pool = concurrent.futures.ThreadPoolExecutor(args.apply_threads)

            def create(name: str) -> None:
                try:
                    self.create(system, namespace, system.job(name, args.workers))
                    applied[name] = time.monotonic()
                except (ApiException, HTTPError, OSError) as err:
                    errors[f"create {type(err).__name__}"] += 1

            def delete(name: str) -> None:
                try:
                    self.delete(system, namespace, name)
                    deleted[name] = time.monotonic()
                except (ApiException, HTTPError, OSError) as err:
                    errors[f"delete {type(err).__name__}"] += 1

            schedule = sorted(
                [(i / args.rate, "create", f"c-{i:05d}") for i in range(total)]
                + [(i / args.rate + args.lifetime, "delete", f"c-{i:05d}") for i in range(total)]
            )
            last_sample = 0.0
            for at, action, name in schedule:
                while (now := time.monotonic() - began) < at:
                    time.sleep(min(0.01, at - now))
                pool.submit(create if action == "create" else delete, name)
                if now - last_sample >= 1.0:
                    last_sample = now
                    with times.lock:
                        waiting = sum(
                            1
                            for n in applied
                            if n not in deleted and len(times.created.get(n, {})) < args.workers
                        )
                    backlog.append((round(now, 1), waiting))
            pool.shutdown(wait=True)
            last_delete = time.monotonic()
            drained = None
            deadline = last_delete + args.timeout
            while time.monotonic() < deadline:
                with times.lock:
                    live = len(times.live)
                if live == 0:
                    drained = time.monotonic() - last_delete
                    break
                time.sleep(0.5)
            time.sleep(args.settle)
            end = audit_counts.offset(self.cluster.audit_log)
            result = self.measure(
                system,
                namespace,
                running,
                self.requests(start, end),
                max(1, len(applied)),
                cpu_before,
            )
            with times.lock:
                pods_left = len(times.live)
        finally:
            watch.stop()
            running.stop()
        in_time = [
            max(times.created[n].values()) - t
            for n, t in applied.items()
            if len(times.created.get(n, {})) >= args.workers
            and max(times.created[n].values()) <= deleted.get(n, float("inf"))
        ]
        run = {
            "system": system.key,
            "settings": system.settings(),
            "rate": args.rate,
            "duration_s": args.duration,
            "lifetime_s": args.lifetime,
            "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "jobs_created": len(applied),
            "jobs_deleted": len(deleted),
            "jobs_with_all_pods_before_deletion": len(in_time),
            "median_created_s": _round(statistics.median(in_time) if in_time else None),
            "p99_created_s": _round(percentile(in_time, 0.99) if in_time else None),
            "max_backlog_jobs": max((b for _, b in backlog), default=0),
            "backlog_last_10s": [b for t, b in backlog if t >= args.duration + args.lifetime - 10],
            "drained_s_after_last_delete": _round(drained),
            "pods_left": pods_left,
            "driver_errors": dict(errors),
            "requests_per_job": result["requests_per_job"],
            "requests_by_call": result["requests_by_call"],
            "cpu_s": result["cpu_s"],
            "peak_rss_mib": result["peak_rss_mib"],
        }
        run["cleanup_s"] = round(self.delete_namespace(namespace), 1)
        return run


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def _env_pairs(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.startswith("TRAINYARD_"):
            raise SystemExit(f"--trainyard-env {pair!r}: expected TRAINYARD_NAME=value")
        out[key] = value
    return out


# --- summary and table ------------------------------------------------------------------------


NUMERIC = (
    "pods_created_wall_s",
    "running_wall_s",
    "jobs_per_s",
    "median_created_s",
    "p99_created_s",
    "requests_per_job",
    "events_per_job",
    "control_plane_requests_per_job",
    "cpu_s",
    "peak_rss_mib",
    "dropped_events",
    "apply_s",
)


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """One object per system: the mean of its rounds' figures, the by-call breakdowns of
    its first round, and every round."""
    out: dict[str, dict[str, Any]] = {}
    for key in dict.fromkeys(r["system"] for r in runs):
        mine = [r for r in runs if r["system"] == key]
        summary: dict[str, Any] = {"settings": mine[0]["settings"], "rounds": len(mine)}
        for field in NUMERIC:
            values = [r[field] for r in mine if r.get(field) is not None]
            summary[field] = round(statistics.mean(values), 2) if values else None
        calls: Counter[str] = Counter()
        plane: Counter[str] = Counter()
        for r in mine:
            calls.update(r.get("requests_by_call", {}))
            plane.update(r.get("control_plane_by_client", {}))
        summary["requests_by_call"] = {k: round(v / len(mine), 2) for k, v in calls.most_common()}
        summary["control_plane_by_client"] = {
            k: round(v / len(mine), 2) for k, v in plane.most_common()
        }
        summary["runs"] = mine
        out[key] = summary
    return out


ROWS = (
    ("all pods exist (s)", "pods_created_wall_s", "{:.1f}"),
    ("all pods Running (s)", "running_wall_s", "{:.1f}"),
    ("throughput (jobs/s to all pods)", "jobs_per_s", "{:.1f}"),
    ("apply -> pods created, median (s)", "median_created_s", "{:.2f}"),
    ("apply -> pods created, p99 (s)", "p99_created_s", "{:.2f}"),
    ("API requests per job (no watches)", "requests_per_job", "{:.1f}"),
    ("  of which events", "events_per_job", "{:.1f}"),
    ("control plane requests per job", "control_plane_requests_per_job", "{:.1f}"),
    ("controller CPU (s)", "cpu_s", "{:.1f}"),
    ("controller peak RSS (MiB)", "peak_rss_mib", "{:.0f}"),
    ("events dropped by its recorder", "dropped_events", "{:.0f}"),
)


def table(summary: dict[str, dict[str, Any]], title: str) -> str:
    """A Markdown table, one column per system; the others' figures carry their ratio to
    Trainyard's in parentheses (x: other / Trainyard)."""
    keys = [k for k in ALL_SYSTEMS if k in summary]
    labels = {
        "trainyard": "Trainyard",
        "kubeflow_v1": "KF v1 best",
        "kubeflow_v1_defaults": "KF v1 defaults",
        "kubeflow_v2": "KF v2 (Trainer + JobSet)",
    }
    lines = [title, "", "| | " + " | ".join(labels[k] for k in keys) + " |"]
    lines.append("|---|" + "---|" * len(keys))
    base = summary.get("trainyard", {})
    for label, field, fmt in ROWS:
        cells = []
        for key in keys:
            value = summary[key].get(field)
            if value is None:
                cells.append("n/a")
                continue
            cell = fmt.format(value)
            mine = base.get(field)
            if key != "trainyard" and mine:
                cell += f" ({value / mine:.2f}x)"
            cells.append(cell)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    for key in keys:
        calls = ", ".join(f"{c} {n:g}" for c, n in summary[key]["requests_by_call"].items())
        lines.append(f"- {labels[key]} ({summary[key]['settings']}): {calls}")
    for key in keys:
        plane = ", ".join(f"{c} {n:g}" for c, n in summary[key]["control_plane_by_client"].items())
        lines.append(f"- control plane for {labels[key]}: {plane}")
    return "\n".join(lines)


# --- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("compare", "memory", "churn"), default="compare")
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument(
        "--systems",
        default=None,
        help=f"comma-separated, of {','.join(ALL_SYSTEMS)} (default: all for compare, "
        "trainyard,kubeflow_v1 for memory and churn)",
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="compare: rounds, order reversed each time"
    )
    parser.add_argument("--kf-threads", type=int, default=4)
    parser.add_argument("--kf-qps", type=int, default=1000)
    parser.add_argument("--kf-burst", type=int, default=2000)
    parser.add_argument(
        "--trainyard-env",
        action="append",
        default=[],
        metavar="TRAINYARD_NAME=value",
        help="a setting for the Trainyard operator (repeatable)",
    )
    parser.add_argument("--apply-threads", type=int, default=8, help="clients creating jobs")
    parser.add_argument(
        "--settle", type=float, default=10.0, help="seconds after the last pod runs"
    )
    parser.add_argument("--timeout", type=float, default=1800.0, help="per wait, seconds")
    parser.add_argument("--existing", type=int, default=5000, help="memory: suspended jobs")
    parser.add_argument("--probes", type=int, default=3, help="memory: new jobs timed afterwards")
    parser.add_argument("--rate", type=float, default=10.0, help="churn: jobs created per second")
    parser.add_argument("--duration", type=float, default=120.0, help="churn: seconds of creation")
    parser.add_argument(
        "--lifetime", type=float, default=10.0, help="churn: seconds before deletion"
    )
    parser.add_argument("--state", type=Path, help="keep the cluster's state and logs here")
    parser.add_argument(
        "--py-spy", type=Path, help="compare: profile Trainyard's operator, stacks into this folder"
    )
    args = parser.parse_args(argv)
    default = ALL_SYSTEMS if args.mode == "compare" else ("trainyard", "kubeflow_v1")
    args.system_names = args.systems.split(",") if args.systems else list(default)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="vs-kubeflow-") as tmp:
        state = args.state or Path(tmp)
        state.mkdir(parents=True, exist_ok=True)
        bench = Bench(args, state)
        try:
            bench.up()
            bench.install(args.system_names)
            report = run_mode(bench, args)
        finally:
            bench.down()
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"figures written to {args.json}")


def run_mode(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    names = args.system_names
    meta = {
        "mode": args.mode,
        "cpus": os.cpu_count(),
        "gpu_nodes": bench.cluster.gpu_nodes,
        "apply_threads": args.apply_threads,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    runs: list[dict[str, Any]] = []
    if args.mode == "compare":
        meta.update(jobs=args.jobs, workers=args.workers, rounds=args.rounds)
        for round_ in range(args.rounds):
            order = names if round_ % 2 == 0 else list(reversed(names))
            for name in order:
                namespace = f"{name.replace('_', '-')}-{round_ + 1}"
                print(f"[round {round_ + 1}] {name} ...", flush=True)
                run = bench.compare_run(bench.systems[name], namespace)
                run["round"] = round_ + 1
                runs.append(run)
                print("  " + _brief(run), flush=True)
                if args.json:  # so far, in case the invocation is cut short
                    args.json.write_text(json.dumps({"meta": meta, **summarize(runs)}, indent=2))
        summary = summarize(runs)
        print()
        print(
            table(
                summary,
                f"{args.jobs} jobs x {args.workers} workers, {bench.cluster.gpu_nodes} fake GPU "
                f"nodes, {args.rounds} round(s) (mean); load average "
                f"{_load_range(runs)} on {os.cpu_count()} cores",
            )
        )
        return {"meta": meta, **summary}
    mode_run: Callable[[System, str], dict[str, Any]]
    mode_run = bench.memory_run if args.mode == "memory" else bench.churn_run
    out: dict[str, Any] = {"meta": meta}
    for name in names:
        print(f"[{args.mode}] {name} ...", flush=True)
        run = mode_run(bench.systems[name], f"{args.mode}-{name.replace('_', '-')}")
        out[name] = run
        print(json.dumps(run, indent=2), flush=True)
        if args.json:
            args.json.write_text(json.dumps(out, indent=2))
    print(mode_table(out, args.mode))
    return out


def mode_table(out: dict[str, Any], mode: str) -> str:
    keys = [k for k in ALL_SYSTEMS if k in out]
    if mode == "memory":
        rows = (
            ("RSS with the jobs existing (MiB)", "rss_mib"),
            ("peak RSS (MiB)", "peak_rss_mib"),
            ("all processed after (s)", "processed_s"),
            ("new job: apply -> pods created (s)", "new_job_pods_created_s"),
            ("API requests per existing job", "requests_per_existing_job"),
            ("CPU while they were created (s)", "cpu_s"),
        )
    else:
        rows = (
            ("jobs created / deleted", "jobs_created"),
            ("all pods before deletion (jobs)", "jobs_with_all_pods_before_deletion"),
            ("apply -> pods created, median (s)", "median_created_s"),
            ("apply -> pods created, p99 (s)", "p99_created_s"),
            ("largest backlog (jobs without all pods)", "max_backlog_jobs"),
            ("backlog, last 10 s of the run", "backlog_last_10s"),
            ("pods gone after the last deletion (s)", "drained_s_after_last_delete"),
            ("API requests per job", "requests_per_job"),
            ("controller CPU (s)", "cpu_s"),
            ("controller peak RSS (MiB)", "peak_rss_mib"),
        )
    lines = ["| | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for label, field in rows:
        lines.append(f"| {label} | " + " | ".join(str(out[k].get(field)) for k in keys) + " |")
    return "\n".join(lines)


def _brief(run: dict[str, Any]) -> str:
    return (
        f"pods exist {run['pods_created_wall_s']} s, Running {run['running_wall_s']} s, "
        f"p99 created {run['p99_created_s']} s, {run['requests_per_job']} requests/job, "
        f"CPU {run['cpu_s']} s, peak RSS {run['peak_rss_mib']} MiB, "
        f"load {run['load_average']}, cleanup {run.get('cleanup_s')} s"
    )


def _load_range(runs: list[dict[str, Any]]) -> str:
    loads = [x for r in runs for x in r["load_average"]]
    return f"{min(loads):.1f}-{max(loads):.1f}"


if __name__ == "__main__":
    sys.exit(main())
