"""Fault campaigns: the operator and the control plane killed while jobs live, and what broke.

Starts its own LocalCluster (fake agent: pods "run" by annotation), the operator as a
subprocess under exactly the chart's rules (never admin), and runs:

kills (`--kills N`, default 100): N rounds; each round acts on the jobs (creates two, makes
  one Running job's worker fail with exit 137, finishes a job that restarted once, deletes a
  finished one), then SIGKILLs the operator after a random delay concentrated in the first
  second (where the windows are: between a status write and its pods or its event) and
  starts it again. After the restart every job must reach its next state within 60 s.
control plane (`--control-plane`, on by default, 20 jobs): while the jobs run, worker
  failures are injected and kube-apiserver is SIGKILLed and restarted; then every job is
  finished and etcd is SIGKILLed and restarted. Every job must end Succeeded with the
  restarts it was given.

Counted, each target 0:
  duplicate pods   a pod name of one job and attempt created more than once (a replaced pod)
  orphans          worker pods or headless Services left once every job is deleted
  stuck            a job not at its next state 60 s after the operator is back
  wrong phase      a job's final phase or restart count not the one its history implies
  lost events      an event the job's history implies that was never posted
  duplicate events an event posted more than once (WorkersCreated per attempt, GangRestart,
                   Succeeded, CheckpointsNotPersistent)

Run: `.venv/bin/python bench/fault_campaign.py [--kills 100] [--seed 1] [--no-control-plane]`.
Prints the counts and exits 1 when any is not 0.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from rich.console import Console
from rich.table import Table
from urllib3.exceptions import HTTPError

from operator_api import operator_as_service_account
from trainyard_local.cluster import LocalCluster
from trainyard_local.fake_runner import EXIT_CODE
from trainyard_local.operator_process import OperatorProcess
from trainyard_local.pytest_plugin import wait_for_service_account

ROOT = Path(__file__).resolve().parents[1]
NAMESPACE = "faults"
SA = "trainyard-operator"
GROUP, VERSION, PLURAL = "trainyard.dev", "v1alpha1", "trainingjobs"
JOB_LABEL = "trainyard.dev/job-name"
RESTART_LABEL = "trainyard.dev/restart"
WORKERS = 2
SETTLE_SECONDS = 60.0
console = Console()
T = TypeVar("T")


# --- what a job's history implies ----------------------------------------------------------


@dataclass
class Expected:
    """What one job should show, given what the campaign did to it."""

    restarts: int = 0
    phase: str = "Running"
    deleted: bool = False

    def events(self) -> Counter[str]:
        """Event reasons (WorkersCreated per attempt) the history implies, each exactly once."""
        wanted: Counter[str] = Counter({"WorkersCreated/0": 1, "CheckpointsNotPersistent": 1})
        for attempt in range(1, self.restarts + 1):
            wanted[f"WorkersCreated/{attempt}"] += 1
            wanted["GangRestart"] += 1
        if self.phase == "Succeeded":
            wanted["Succeeded"] += 1
        return wanted


#: The counts the campaign reports, each with a target of 0.
COUNTED = ("duplicate_pods", "orphans", "stuck", "wrong_phase", "lost_events", "duplicate_events")


@dataclass
class Counts:
    duplicate_pods: int = 0
    orphans: int = 0
    stuck: int = 0
    wrong_phase: int = 0
    lost_events: int = 0
    duplicate_events: int = 0
    notes: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        if len(self.notes) < 30:
            self.notes.append(text)


def event_key(reason: str, message: str) -> str:
    """WorkersCreated counted per attempt (its message names the attempt)."""
    if reason == "WorkersCreated":
        attempt = message.rsplit("attempt ", 1)[-1].rstrip(")")
        return f"WorkersCreated/{attempt}"
    return reason


def compare_events(name: str, wanted: Counter[str], seen: Counter[str], counts: Counts) -> None:
    for key, n in wanted.items():
        if seen[key] < n:
            counts.lost_events += n - seen[key]
            counts.note(f"{name}: lost {key} ({seen[key]} of {n})")
        elif seen[key] > n:
            counts.duplicate_events += seen[key] - n
            counts.note(f"{name}: {key} posted {seen[key]} times")


# --- the cluster and its clients -------------------------------------------------------------


def retry(what: str, fn: Callable[[], T], *, timeout: float = 120.0) -> T:
    """Call through API server restarts (connection refused, 429 while storage initializes)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except (ApiException, HTTPError, OSError) as err:
            status = getattr(err, "status", None)
            if status not in (None, 429, 500, 503, 504) or time.monotonic() > deadline:
                raise RuntimeError(f"{what}: {err}") from err
            time.sleep(0.5)


class Cluster:
    """Admin access to the campaign's namespace."""

    def __init__(self, api: client.ApiClient) -> None:
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    def create_job(self, name: str) -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "TrainingJob",
            "metadata": {"name": name},
            "spec": {
                "workers": WORKERS,
                "resources": {"cpu": "50m", "memory": "32Mi"},
                "runPolicy": {"restartPolicy": "OnFailure", "backoffLimit": 5},
            },
        }
        retry(
            f"create {name}",
            lambda: self.custom.create_namespaced_custom_object(
                GROUP, VERSION, NAMESPACE, PLURAL, body
            ),
        )

    def job(self, name: str) -> dict[str, Any] | None:
        def get() -> dict[str, Any] | None:
            try:
                found: dict[str, Any] = self.custom.get_namespaced_custom_object(
                    GROUP, VERSION, NAMESPACE, PLURAL, name
                )
                return found
            except ApiException as err:
                if err.status == 404:
                    return None
                raise

        return retry(f"get {name}", get)

    def delete_job(self, name: str) -> None:
        retry(
            f"delete {name}",
            lambda: self.custom.delete_namespaced_custom_object(
                GROUP, VERSION, NAMESPACE, PLURAL, name, propagation_policy="Background"
            ),
        )

    def pods(self, job: str | None = None) -> list[dict[str, Any]]:
        selector = f"{JOB_LABEL}={job}" if job else JOB_LABEL
        response = retry(
            "list pods",
            lambda: self.core.list_namespaced_pod(
                NAMESPACE, label_selector=selector, _preload_content=False
            ),
        )
        items: list[dict[str, Any]] = json.loads(response.data)["items"]
        return items

    def exit_worker(self, pod: str, code: int) -> None:
        retry(
            f"annotate {pod}",
            lambda: self.core.patch_namespaced_pod(
                pod, NAMESPACE, {"metadata": {"annotations": {EXIT_CODE: str(code)}}}
            ),
        )

    def events(self) -> dict[str, Counter[str]]:
        """Event keys per job (by involvedObject name)."""
        response = retry(
            "list events",
            lambda: self.core.list_namespaced_event(NAMESPACE, _preload_content=False),
        )
        out: dict[str, Counter[str]] = defaultdict(Counter)
        for event in json.loads(response.data)["items"]:
            involved = event.get("involvedObject") or {}
            if involved.get("kind") == "TrainingJob":
                out[involved["name"]][event_key(event["reason"], event.get("message", ""))] += 1
        return out

    def services(self) -> list[str]:
        found = retry("list services", lambda: self.core.list_namespaced_service(NAMESPACE))
        return [s.metadata.name for s in found.items]


class PodLedger:
    """Every worker pod UID ever seen, per (job uid, pod name, attempt), from a poll thread:
    a name of one attempt with two UIDs is a pod the operator replaced (a duplicate)."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.seen: dict[tuple[str, str, str], set[str]] = defaultdict(set)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            try:
                pods = self.cluster.pods()
            except RuntimeError:
                continue
            for pod in pods:
                meta = pod["metadata"]
                owner = next((o["uid"] for o in meta.get("ownerReferences") or []), "")
                attempt = (meta.get("labels") or {}).get(RESTART_LABEL, "0")
                self.seen[(owner, meta["name"], attempt)].add(meta["uid"])

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return sum(len(uids) - 1 for uids in self.seen.values() if len(uids) > 1)


# --- waiting on a job's next state -------------------------------------------------------------


def settled(cluster: Cluster, name: str, want: Expected) -> bool:
    job = cluster.job(name)
    if want.deleted:
        return job is None and not cluster.pods(name)
    if job is None:
        return False
    status = job.get("status") or {}
    if status.get("phase") != want.phase or int(status.get("restarts", 0)) != want.restarts:
        return False
    if want.phase == "Running":
        current = [
            p
            for p in cluster.pods(name)
            if (p["metadata"].get("labels") or {}).get(RESTART_LABEL) == str(want.restarts)
            and (p.get("status") or {}).get("phase") == "Running"
        ]
        return len(current) == WORKERS
    return True


def wait_settled(
    cluster: Cluster, jobs: dict[str, Expected], names: list[str], counts: Counts
) -> None:
    """Every named job at its expected state within SETTLE_SECONDS (else counted stuck)."""
    deadline = time.monotonic() + SETTLE_SECONDS
    pending = list(names)
    while pending and time.monotonic() < deadline:
        pending = [n for n in pending if not settled(cluster, n, jobs[n])]
        if pending:
            time.sleep(0.2)
    for name in pending:
        counts.stuck += 1
        job = cluster.job(name) or {}
        counts.note(
            f"{name}: stuck, wanted {jobs[name]}, status {job.get('status', {}).get('phase')}"
        )
        # give it a longer while, so one stuck job does not cascade into the next rounds
        end = time.monotonic() + 3 * SETTLE_SECONDS
        while time.monotonic() < end and not settled(cluster, name, jobs[name]):
            time.sleep(0.5)


def fail_worker(cluster: Cluster, name: str, jobs: dict[str, Expected]) -> None:
    cluster.exit_worker(f"{name}-worker-1", 137)
    jobs[name].restarts += 1


def finish(cluster: Cluster, name: str, jobs: dict[str, Expected]) -> None:
    for index in range(WORKERS):
        cluster.exit_worker(f"{name}-worker-{index}", 0)
    jobs[name].phase = "Succeeded"


# --- the campaigns -----------------------------------------------------------------------------


def kill_campaign(
    cluster: Cluster,
    start_operator: Callable[[], OperatorProcess],
    *,
    rounds: int,
    rng: random.Random,
    jobs: dict[str, Expected],
    counts: Counts,
) -> None:
    operator = start_operator()
    for round_ in range(rounds):
        touched: list[str] = []
        for k in range(2):
            name = f"k{round_:03d}-{k}"
            cluster.create_job(name)
            jobs[name] = Expected()
            touched.append(name)
        running = [n for n, e in jobs.items() if e.phase == "Running" and not e.deleted]
        fresh = [n for n in running if jobs[n].restarts == 0 and n not in touched]
        if fresh:
            fail_worker(cluster, fresh[0], jobs)
            touched.append(fresh[0])
        restarted = [n for n in running if jobs[n].restarts > 0 and n not in touched]
        if restarted:
            finish(cluster, restarted[0], jobs)
            touched.append(restarted[0])
        done = [n for n, e in jobs.items() if e.phase == "Succeeded" and not e.deleted]
        if len(done) > 3:
            jobs[done[0]].deleted = True
            cluster.delete_job(done[0])
            touched.append(done[0])
        # most kills in the first second after the actions, a few later
        delay = rng.uniform(0, 1.0) if rng.random() < 0.8 else rng.uniform(1.0, 3.0)
        time.sleep(delay)
        operator.kill()
        operator = start_operator()
        wait_settled(cluster, jobs, touched, counts)
        if (round_ + 1) % 10 == 0:
            console.log(f"kills: {round_ + 1} of {rounds} rounds, stuck so far {counts.stuck}")
    operator.stop()


def control_plane_campaign(
    cluster: Cluster,
    local: LocalCluster,
    start_operator: Callable[[], OperatorProcess],
    jobs: dict[str, Expected],
    counts: Counts,
) -> None:
    operator = start_operator()
    names = [f"cp-{i:02d}" for i in range(20)]
    for name in names:
        cluster.create_job(name)
        jobs[name] = Expected()
    wait_settled(cluster, jobs, names, counts)
    for name in names[:10]:
        fail_worker(cluster, name, jobs)
    console.log("control plane: kube-apiserver SIGKILLed with 10 gang restarts in flight")
    local.restart("kube-apiserver", kill=True)
    # A kube-scheduler with leader election (kubeadm's default) cannot renew its lease while
    # the API server is down, exits, and is started again by its kubelet. The embedded one
    # runs without it and survives with a scheduling cache the restart can leave corrupted
    # ("Pod updated on a different node than previously added to"; new pods then stayed
    # Pending for minutes in one run of seven): restart it as a real cluster would.
    local.restart("kube-scheduler")
    wait_settled(cluster, jobs, names, counts)
    for name in names:
        finish(cluster, name, jobs)
    console.log("control plane: etcd SIGKILLed with 20 jobs finishing")
    local.restart("etcd", kill=True)
    wait_settled(cluster, jobs, names, counts)
    operator.stop()


def final_checks(cluster: Cluster, jobs: dict[str, Expected], counts: Counts) -> None:
    """Phases, restarts and events of every job; then delete all and look for orphans."""
    for name, want in jobs.items():
        if want.deleted:
            continue
        status = (cluster.job(name) or {}).get("status") or {}
        if status.get("phase") != want.phase or int(status.get("restarts", 0)) != want.restarts:
            counts.wrong_phase += 1
            counts.note(f"{name}: {status.get('phase')}/{status.get('restarts')}, wanted {want}")
    # events follow the status writes: read them once they have stopped changing
    seen = cluster.events()
    for _ in range(50):
        time.sleep(0.2)
        again = cluster.events()
        if again == seen:
            break
        seen = again
    for name, want in jobs.items():
        if not want.deleted:
            compare_events(name, want.events(), seen.get(name, Counter()), counts)


def orphans_after_deleting_all(cluster: Cluster, jobs: dict[str, Expected], counts: Counts) -> None:
    for name, want in jobs.items():
        if not want.deleted:
            cluster.delete_job(name)
            want.deleted = True
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (cluster.pods() or cluster.services()):
        time.sleep(0.5)
    left = [p["metadata"]["name"] for p in cluster.pods()] + cluster.services()
    counts.orphans += len(left)
    for name in left[:5]:
        counts.note(f"orphan: {name}")


# --- set-up ------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=100, help="operator SIGKILL rounds")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-control-plane", action="store_true")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    counts = Counts()
    jobs: dict[str, Expected] = {}
    began = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        local = LocalCluster(
            "faults", state / "cluster", cpu_nodes=4, gpu_nodes=0, tie_to_parent=True
        )
        with local:
            api = config.new_client_from_config(config_file=str(local.kubeconfig))  # type: ignore[no-untyped-call]
            ext = client.ApiextensionsV1Api(api)
            ext.create_custom_resource_definition(
                yaml.safe_load((ROOT / "crds/trainyard.dev_trainingjobs.yaml").read_text())
            )
            core = client.CoreV1Api(api)
            core.create_namespace({"metadata": {"name": NAMESPACE}})
            wait_for_service_account(core, NAMESPACE)
            kubeconfig = operator_as_service_account(
                api, local, state, namespace=NAMESPACE, expiration_seconds=86400
            )
            time.sleep(2.0)  # the CRD established and RBAC in the authorizer's cache
            cluster = Cluster(api)
            started: list[OperatorProcess] = []

            def start_operator() -> OperatorProcess:
                process = OperatorProcess(
                    kubeconfig,
                    [NAMESPACE],
                    log_path=state / f"operator-{len(started):03d}.log",
                    env={"TRAINYARD_RESYNC_SECONDS": "30"},
                )
                started.append(process)
                return process.start(timeout=120)

            ledger = PodLedger(cluster)
            try:
                kill_campaign(
                    cluster, start_operator, rounds=args.kills, rng=rng, jobs=jobs, counts=counts
                )
                if not args.no_control_plane:
                    control_plane_campaign(cluster, local, start_operator, jobs, counts)
                final_checks(cluster, jobs, counts)
                orphans_after_deleting_all(cluster, jobs, counts)
            finally:
                counts.duplicate_pods = ledger.stop()
                for process in started:
                    process.stop()
            api.close()  # type: ignore[no-untyped-call]
    return report(args, counts, len(jobs), time.monotonic() - began)


def report(args: argparse.Namespace, counts: Counts, jobs: int, seconds: float) -> int:
    table = Table(
        title=f"fault campaigns: {args.kills} operator kills, {jobs} jobs, {seconds:.0f} s"
    )
    table.add_column("count")
    table.add_column("value", justify="right")
    for name in COUNTED:
        table.add_row(name.replace("_", " "), str(getattr(counts, name)))
    console.print(table)
    for note in counts.notes:
        console.print(f"  {note}")
    bad = any(getattr(counts, n) for n in COUNTED)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
