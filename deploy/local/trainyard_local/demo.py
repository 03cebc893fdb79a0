"""`make demo`: the whole Trainyard flow on this machine, and `make demo-down`.

It always runs on the embedded local cluster (`cluster.py`) with the process agent
(`process_runner.py`), which runs the worker pods' torchrun as local processes, whether or not
a Docker engine happens to run here; the real containers are `make demo-kind` (`kind.py`,
which ends with `follow_anywhere` below):

    cluster up -> helm upgrade --install (the chart, operator replicas 0)
    -> the operator as a local process under the chart ServiceAccount's token (its RBAC)
    -> a Prometheus server (`prometheus.py`) scraping the operator and the trainer pods
    -> kubectl apply -f examples/digits-ddp.yaml in a namespace enforcing the restricted
       Pod Security profile -> live progress from the TrainingJob status -> results table,
       PromQL answers and where to look next, then the wall time.

Everything stays up after the demo so that `kubectl get tj` and the Prometheus URL keep
working; `python -m trainyard_local.demo down` stops it all (operator and Prometheus by the
pids recorded under `<TRAINYARD_HOME>/demo/`, then the cluster). The helpers here (chart
install, operator under a ServiceAccount token, following a job) are what the e2e test uses
too, so the test exercises the demo's own code.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from rich.console import Console
from rich.table import Table

from trainyard_cli.views import results_table
from trainyard_cli.watch import JobGoneError
from trainyard_cli.watch import follow as watch_job
from trainyard_local import binaries, processes
from trainyard_local.cluster import LocalCluster, state_root
from trainyard_local.kubeconfig import write_token_kubeconfig
from trainyard_local.operator_process import MATCH as OPERATOR_MATCH
from trainyard_local.operator_process import OperatorProcess
from trainyard_local.prometheus import LocalPrometheus, PrometheusError, TrainerTargetSync

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "deploy" / "helm" / "trainyard"
EXAMPLE = REPO / "examples" / "digits-ddp.yaml"
CLUSTER_NAME = "demo"
RELEASE = "trainyard"
CHART_NAMESPACE = "trainyard-system"
JOB_NAMESPACE = "trainyard-demo"
RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted"}
#: What the chart's Deployment would set in its cluster-wide mode beyond the defaults, for the
#: operator that runs as a local process under the chart's ServiceAccount: it watches Nodes
#: (the chart grants the rule) so that `gpus: auto` chooses from them.
CHART_OPERATOR_ENV = {"TRAINYARD_READ_NODES": "true"}
GROUP, VERSION, PLURAL = "trainyard.dev", "v1alpha1", "trainingjobs"
TERMINAL = ("Succeeded", "Failed")


class DemoError(RuntimeError):
    """A step of the demo failed; the message says which and where its log is."""


def api_client(kubeconfig: Path) -> client.ApiClient:
    api: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig)
    )
    return api


# -- helm ----------------------------------------------------------------------------------


def helm(kubeconfig: Path, *args: str, timeout: float = 300) -> str:
    """Run the pinned helm binary against a kubeconfig; DemoError with its output on failure."""
    argv = [str(binaries.binary("helm")), f"--kubeconfig={kubeconfig}", *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise DemoError(f"helm {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def install_chart(
    kubeconfig: Path,
    *,
    release: str = RELEASE,
    namespace: str = CHART_NAMESPACE,
    values: dict[str, str] | None = None,
) -> str:
    """`helm upgrade --install` the chart with no operator pod (it runs as a local process)."""
    settings = {"operator.replicas": "0", **(values or {})}
    flags = [arg for key, value in settings.items() for arg in ("--set", f"{key}={value}")]
    return helm(
        kubeconfig,
        "upgrade",
        "--install",
        release,
        str(CHART),
        f"--namespace={namespace}",
        "--create-namespace",
        "--wait",
        "--timeout=3m",
        *flags,
    )


def service_account_kubeconfig(
    admin: Path, *, server: str, ca_cert: Path, namespace: str, name: str, path: Path
) -> Path:
    """A kubeconfig with a TokenRequest token of an existing ServiceAccount (24 h)."""
    with api_client(admin) as api:
        core = client.CoreV1Api(api)
        request = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=86400)
        )
        answer = core.create_namespaced_service_account_token(name, namespace, request)
    if answer.status is None or not answer.status.token:
        raise DemoError(f"TokenRequest for ServiceAccount {namespace}/{name} returned no token")
    return write_token_kubeconfig(
        path,
        name=f"{namespace}-{name}",
        server=server,
        ca_cert=ca_cert,
        token=answer.status.token,
        namespace=namespace,
    )


def ensure_namespace(kubeconfig: Path, name: str, labels: dict[str, str]) -> None:
    """Create (or relabel) a namespace and wait for its default ServiceAccount."""
    with api_client(kubeconfig) as api:
        core = client.CoreV1Api(api)
        try:
            core.create_namespace(
                client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels))
            )
        except ApiException as error:
            if error.status != 409:
                raise
            core.patch_namespace(name, {"metadata": {"labels": labels}})
        deadline = time.monotonic() + 60
        while True:
            try:
                core.read_namespaced_service_account("default", name)
                return
            except ApiException as error:
                if error.status != 404 or time.monotonic() > deadline:
                    raise
            time.sleep(0.2)


# -- following a job -------------------------------------------------------------------------


def get_job(kubeconfig: Path, namespace: str, name: str) -> dict[str, Any] | None:
    with api_client(kubeconfig) as api:
        try:
            job = client.CustomObjectsApi(api).get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
    if not isinstance(job, dict):
        raise DemoError(f"TrainingJob {namespace}/{name}: unexpected answer {job!r}")
    return job


def delete_job(kubeconfig: Path, namespace: str, name: str, timeout: float = 120) -> None:
    """Delete a previous run of the job and wait until it and its pods are gone."""
    with api_client(kubeconfig) as api:
        custom = client.CustomObjectsApi(api)
        core = client.CoreV1Api(api)
        try:
            custom.delete_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, propagation_policy="Foreground"
            )
        except ApiException as error:
            if error.status != 404:
                raise
            return
        deadline = time.monotonic() + timeout
        selector = f"trainyard.dev/job-name={name}"
        while time.monotonic() < deadline:
            gone = get_job(kubeconfig, namespace, name) is None
            pods = core.list_namespaced_pod(namespace, label_selector=selector).items
            if gone and not pods:
                return
            time.sleep(0.5)
    raise DemoError(f"TrainingJob {namespace}/{name} was not deleted within {timeout:.0f} s")


def follow(
    kubeconfig: Path,
    namespace: str,
    name: str,
    *,
    console: Console,
    timeout: float = 1200,
    on_update: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Show the job's status live until it is Succeeded or Failed; returns the last object.

    The screen is `kubectl trainyard watch`'s (trainyard_cli), always drawn in place here:
    a pipe (make, CI) gets its last frame.
    """
    try:
        return watch_job(
            lambda: get_job(kubeconfig, namespace, name),
            console,
            live=True,
            timeout=timeout,
            on_update=on_update,
        )
    except (TimeoutError, JobGoneError) as error:
        raise DemoError(f"TrainingJob {namespace}/{name}: {error}") from None


DEMO_QUERIES = (
    ("jobs by phase (operator)", 'trainyard_jobs{namespace="%s"} > 0'),
    ("jobs succeeded (operator)", 'trainyard_jobs_succeeded_total{namespace="%s"}'),
    (
        "accuracy at the last scrape (trainer)",
        'max by (pod) (last_over_time(trainyard_trainer_accuracy{namespace="%s"}[30m]))',
    ),
    (
        "steps at the last scrape (trainer)",
        'max by (pod) (last_over_time(trainyard_trainer_steps_total{namespace="%s"}[30m]))',
    ),
)


def prometheus_table(prom: LocalPrometheus, namespace: str) -> Table:
    table = Table(title=f"Prometheus ({prom.url})")
    table.add_column("query")
    table.add_column("series")
    table.add_column("value", justify="right")
    for title, query in DEMO_QUERIES:
        heading = title
        for item in prom.query(query % namespace) or [{"metric": {}, "value": [0, "(none)"]}]:
            labels = ", ".join(
                f"{k}={v}"
                for k, v in sorted(item["metric"].items())
                if k in ("phase", "stage", "pod", "job")
            )
            value = str(item["value"][1])
            with contextlib.suppress(ValueError):
                value = f"{float(value):g}"
            table.add_row(heading, labels, value)
            heading = ""
    return table


# -- the embedded demo -----------------------------------------------------------------------


class EmbeddedDemo:
    """The embedded path's pieces and where each keeps its state."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.home = state_root() / "demo"
        self.cluster = LocalCluster(
            CLUSTER_NAME,
            cpu_nodes=1,
            gpu_nodes=0,
            agent="process",
            progress=lambda message: console.log(f"cluster: {message}"),
        )
        self.prometheus_home = self.home / "prometheus"

    @property
    def operator_record(self) -> Path:
        return self.home / "operator.json"

    def _operator_running(self) -> dict[str, Any] | None:
        try:
            record: dict[str, Any] = json.loads(self.operator_record.read_text())
        except (FileNotFoundError, ValueError):
            return None
        tracked = processes.Tracked("operator", int(record["pid"]), OPERATOR_MATCH)
        return record if processes.is_running(tracked) else None

    def start_operator(self) -> dict[str, Any]:
        """The operator under the chart ServiceAccount's token; not tied to this process, so
        it keeps running after the demo returns (`down` stops it by pid)."""
        running = self._operator_running()
        if running is not None:
            return running
        sa_config = service_account_kubeconfig(
            self.cluster.kubeconfig,
            server=self.cluster.server,
            ca_cert=self.cluster.pki.ca_cert,
            namespace=CHART_NAMESPACE,
            name=RELEASE,
            path=self.home / "operator.kubeconfig",
        )
        operator = OperatorProcess(
            sa_config,
            log_path=self.home / "operator.log",
            # read worker 0's progress every second: the demo's run is short
            env={**CHART_OPERATOR_ENV, "TRAINYARD_PROGRESS_INTERVAL_SECONDS": "1"},
        )
        popen = processes.spawn(
            [sys.executable, "-m", "trainyard_operator"],
            operator.log_path,
            env=operator.environment(),
        )
        record = {
            "pid": popen.pid,
            "metrics_port": operator.metrics_port,
            "health_port": operator.health_port,
            "log": str(operator.log_path),
        }
        self.operator_record.write_text(json.dumps(record))
        deadline = time.monotonic() + 60
        while True:
            if popen.poll() is not None:
                raise DemoError(
                    f"the operator exited with {popen.returncode}; log {operator.log_path}:\n"
                    + processes.log_tail(operator.log_path)
                )
            try:
                if httpx.get(operator.health_url, timeout=1).status_code == 200:
                    return record
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                processes.stop(
                    processes.Tracked("operator", popen.pid, OPERATOR_MATCH), popen=popen
                )
                self.operator_record.unlink(missing_ok=True)
                raise DemoError(
                    f"the operator was not live after 60 s (stopped it); log {operator.log_path}:\n"
                    + processes.log_tail(operator.log_path)
                )
            time.sleep(0.2)

    def up(self, *, job_file: Path = EXAMPLE) -> int:
        began = time.monotonic()
        console = self.console
        self.home.mkdir(parents=True, exist_ok=True)
        console.rule("[bold]Trainyard demo (embedded local cluster, process agent)")
        started = self.cluster.start()
        console.log(
            f"cluster {CLUSTER_NAME}: {'started' if started else 'already up'} "
            f"(kubeconfig {self.cluster.kubeconfig})"
        )
        install_chart(self.cluster.kubeconfig)
        console.log(f"helm: release {RELEASE} installed in {CHART_NAMESPACE}")
        operator = self.start_operator()
        console.log(
            f"operator: running as ServiceAccount {CHART_NAMESPACE}/{RELEASE} "
            f"(pid {operator['pid']}, metrics :{operator['metrics_port']})"
        )
        # restarted on every run: the operator's metrics port may have changed (TSDB kept)
        prom = LocalPrometheus(
            self.prometheus_home, operator_target=f"127.0.0.1:{operator['metrics_port']}"
        )
        prom.start()
        console.log(f"prometheus: {prom.url}")
        ensure_namespace(self.cluster.kubeconfig, JOB_NAMESPACE, RESTRICTED)
        manifest = yaml.safe_load(job_file.read_text())
        name = manifest["metadata"]["name"]
        delete_job(self.cluster.kubeconfig, JOB_NAMESPACE, name)
        kubectl(self.cluster.kubeconfig, "apply", "-n", JOB_NAMESPACE, "-f", str(job_file))
        console.log(f"kubectl apply -n {JOB_NAMESPACE} -f {job_file.relative_to(REPO)}")
        sync = TrainerTargetSync(self.cluster.kubeconfig, prom.trainer_targets_file).start()
        try:
            job = follow(self.cluster.kubeconfig, JOB_NAMESPACE, name, console=console)
        finally:
            sync.stop()
        phase = job["status"]["phase"]
        console.print()
        console.print(results_table(job))
        time.sleep(2)  # one more scrape of the operator after the job finished
        console.print(prometheus_table(prom, JOB_NAMESPACE))
        console.print(
            "\n[bold]Where to look next[/bold]\n"
            f"  export KUBECONFIG={self.cluster.kubeconfig} "
            f"PATH={binaries.bin_dir()}:{Path(sys.executable).parent}:$PATH\n"
            f"  kubectl trainyard list -A             # phase, workers, stage, progress, ETA\n"
            f"  kubectl trainyard logs {name} -n {JOB_NAMESPACE}   # both workers, in time order\n"
            f"  kubectl trainyard results {name} -n {JOB_NAMESPACE}\n"
            f"  kubectl -n {JOB_NAMESPACE} describe tj {name}\n"
            f"  worker files: {self.cluster.state_dir / 'pods'}/{JOB_NAMESPACE}_{name}-worker-*/\n"
            f"  curves: tensorboard --logdir {self.cluster.state_dir / 'pods'}/"
            f"{JOB_NAMESPACE}_{name}-worker-0_*/volumes/output/tensorboard\n"
            f"  operator log: {operator['log']}\n"
            f"  Prometheus: {prom.url}/graph?g0.expr=trainyard_jobs\n"
            f"  stop everything: make demo-down"
        )
        console.print(f"\n[bold]demo wall time: {time.monotonic() - began:.1f} s[/bold]")
        return 0 if phase == "Succeeded" else 1

    def down(self) -> None:
        record = self._operator_running()
        if record is not None:
            processes.stop(processes.Tracked("operator", int(record["pid"]), OPERATOR_MATCH))
            self.console.log(f"operator (pid {record['pid']}) stopped")
        self.operator_record.unlink(missing_ok=True)
        if LocalPrometheus(self.prometheus_home, "").stop():
            self.console.log("prometheus stopped")
        stopped = self.cluster.stop()
        self.console.log(f"cluster {CLUSTER_NAME}: stopped {', '.join(stopped) or 'nothing'}")


def kubectl(kubeconfig: Path, *args: str) -> str:
    argv = [str(binaries.binary("kubectl")), f"--kubeconfig={kubeconfig}", *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise DemoError(f"kubectl {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trainyard_local.demo",
        description="Trainyard's demo on the embedded local cluster (make demo-kind: on kind).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="run the demo on the embedded cluster")
    up.add_argument("--job", type=Path, default=EXAMPLE, help="TrainingJob manifest to apply")
    sub.add_parser("down", help="stop the operator, Prometheus and the demo cluster")
    watch = sub.add_parser("follow", help="apply a job on any cluster and follow it (kind path)")
    watch.add_argument("--kubeconfig", type=Path, default=Path(os.environ.get("KUBECONFIG", "")))
    watch.add_argument("--namespace", default=JOB_NAMESPACE)
    watch.add_argument("--job", type=Path, default=EXAMPLE)
    args = parser.parse_args(argv)
    # a pipe (make, CI logs) gets 80 columns by default, too narrow for the tables
    console = Console(width=None if sys.stdout.isatty() else 120)
    try:
        if args.command == "down":
            EmbeddedDemo(console).down()
            return 0
        if args.command == "follow":
            return follow_anywhere(args.kubeconfig, args.namespace, args.job, console)
        return EmbeddedDemo(console).up(job_file=args.job)
    except (DemoError, PrometheusError, binaries.BinariesMissingError) as error:
        console.print(f"[red]demo failed:[/red] {error}")
        return 1


def follow_anywhere(kubeconfig: Path, namespace: str, job_file: Path, console: Console) -> int:
    """Apply a job on any cluster and follow it: the last step of `make demo-kind`."""
    began = time.monotonic()
    if not str(kubeconfig) or not kubeconfig.is_file():
        raise DemoError("--kubeconfig (or KUBECONFIG) must name the cluster's kubeconfig file")
    ensure_namespace(kubeconfig, namespace, RESTRICTED)
    name = yaml.safe_load(job_file.read_text())["metadata"]["name"]
    delete_job(kubeconfig, namespace, name)
    kubectl(kubeconfig, "apply", "-n", namespace, "-f", str(job_file))
    job = follow(kubeconfig, namespace, name, console=console)
    console.print()
    console.print(results_table(job))
    console.print(f"\n[bold]demo wall time: {time.monotonic() - began:.1f} s[/bold]")
    return 0 if job["status"]["phase"] == "Succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
