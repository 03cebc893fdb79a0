"""The controllers bench/vs_kubeflow.py runs side by side, on one embedded cluster.

Each `System` knows how to install itself once (CRDs, its ServiceAccount bound to its own
upstream RBAC, whatever it needs to start outside a pod), start for one measured run
(`start` -> `Running`: its processes, for CPU and RSS), what one of its jobs looks like
(4 workers of 1 nvidia.com/gpu, cpu 100m, memory 64Mi, tolerating the GPU nodes' taint)
and which label ties a pod to its job. Every controller acts under its own identity, so
the API server's audit log tells their requests apart (`audit_counts.py`).

- `Trainyard`: this repository's operator (`OperatorProcess`) under the ServiceAccount of
  `operator_api.operator_as_service_account` (the chart's rules, never admin).
- `KubeflowV1`: Kubeflow training-operator (PyTorchJob), at its defaults (1 worker thread,
  20 QPS / burst 30, what its upstream Deployment runs) or with threads and QPS raised.
  Outside a pod it needs: an empty Secret `training-operator-webhook-cert` in `kubeflow`
  (its certificate rotator fills it; v1.9.3 cannot turn that off) whose tls.crt/tls.key
  are then copied to the hard-coded /tmp/k8s-webhook-server/serving-certs, which a pod
  would mount; its controllers start only once that is done. No webhook configuration is
  installed: the API server never calls it.
- `KubeflowV2`: Kubeflow Trainer v2 (TrainJob -> JobSet -> Job -> Pod) with JobSet's
  controller; the Jobs' pods are created by kube-controller-manager's job-controller, which
  is counted as part of this system's requests (it does the pod creation the others do
  themselves) but not in its CPU or memory (it is shared with the control plane).
  Both controllers run with their certificate management off (their config files allow
  it), serving their webhooks with the cluster's own serving pair; their webhook
  configurations are registered by URL for the run and removed after it (JobSet's
  controller relies on its defaulting webhook: without it, it panics on nil fields).

The controllers are built by bench/kubeflow/build.sh into the cache outside the
repository (their CRDs beside them); their RBAC roles, webhook configurations and the
torch-distributed runtime are read from the Go module cache that build filled
(`module_file`). Nothing of theirs is committed.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from operator_api import operator_as_service_account
from trainyard_local import processes
from trainyard_local.cluster import LocalCluster
from trainyard_local.kubeconfig import write_token_kubeconfig
from trainyard_local.operator_process import OperatorProcess
from trainyard_local.pytest_plugin import wait_for_service_account

ROOT = Path(__file__).resolve().parents[1]
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
#: Any image: the fake agent runs nothing.
IMAGE = "docker.io/pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime"
KF_CERT_DIR = Path("/tmp/k8s-webhook-server/serving-certs")
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def build_controllers(needed: set[str]) -> dict[str, Path]:
    """The Kubeflow controllers (name -> binary): from the cache when bench/kubeflow/build.sh
    built them already (paths and versions as that script sets them), else built by it."""
    script = ROOT / "bench/kubeflow/build.sh"
    cache = Path(os.environ.get("TRAINYARD_CACHE") or Path.home() / ".cache/trainyard")
    cached = {}
    for name in needed:
        variable = name.upper().replace("-", "_") + "_VERSION"
        found = re.search(rf'{variable}="\$\{{{variable}:-([^}}]+)\}}"', script.read_text())
        version = os.environ.get(variable) or (found.group(1) if found else "")
        binary = cache / f"kubeflow-{name}-{version}" / name
        if binary.is_file():
            cached[name] = binary
    if set(cached) == needed:
        return cached
    result = subprocess.run(["bash", str(script)], check=True, capture_output=True, text=True)
    paths = {}
    for line in result.stdout.splitlines():
        name, sep, path = line.partition("=")
        if sep:
            paths[name.strip()] = Path(path.strip())
    return paths


def module_file(module: str, built: Path, path: str) -> Path:
    """A file of a controller's Go module (its RBAC, its default runtimes), from the Go module
    cache that build.sh filled: the version is the suffix of the binary's cache folder."""
    version = built.name.rsplit("-", 1)[1]
    modcache = subprocess.run(
        ["go", "env", "GOMODCACHE"], check=True, capture_output=True, text=True
    ).stdout.strip()
    found = Path(modcache) / f"{module}@{version}" / path
    if not found.exists():
        raise FileNotFoundError(f"{found} (run bench/kubeflow/build.sh)")
    return found


# --- processes -----------------------------------------------------------------------------


def clock_ticks() -> int:
    return os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a live process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / clock_ticks()


def memory_mib(pid: int) -> tuple[float, float]:
    """(RSS now, peak RSS) of a live process, MiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


@dataclass
class Running:
    """A started system: its processes (name -> pid) and how to stop them."""

    pids: dict[str, int]
    stop: Callable[[], None]
    logs: dict[str, Path] = field(default_factory=dict)

    def cpu(self) -> dict[str, float]:
        return {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    def memory(self) -> dict[str, tuple[float, float]]:
        return {name: memory_mib(pid) for name, pid in self.pids.items()}


def spawn(name: str, argv: list[str], log: Path, env: dict[str, str] | None = None) -> Running:
    popen = processes.spawn(argv, log, env=env, tie_to_parent=True)
    tracked = processes.Tracked(name, popen.pid, argv[0])

    def stop() -> None:
        processes.stop(tracked, popen=popen)

    return Running({name: popen.pid}, stop, {name: log})


def wait_for(what: str, probe: Callable[[], bool], timeout: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            tail = processes.log_tail(log) if log else ""
            raise TimeoutError(f"{what}: not after {timeout:.0f} s\n{tail}")
        time.sleep(0.2)


def log_has(log: Path, text: str) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            return text in log.read_text(errors="replace")
        except FileNotFoundError:
            return False

    return probe


# --- cluster set-up helpers ---------------------------------------------------------------


def apply_crds(api: client.ApiClient, folder: Path, only: set[str] | None = None) -> None:
    """Create the CRDs of a folder (those named in `only`) and wait until they serve."""
    ext = client.ApiextensionsV1Api(api)
    names = []
    for path in sorted(folder.glob("*.yaml")):
        if only is not None and not any(_crd_file(name) == path.name for name in only):
            continue  # (the others are large: parsing them all takes minutes on 2 cores)
        for doc in yaml.load_all(path.read_text(), Loader=LOADER):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            if only is not None and doc["metadata"]["name"] not in only:
                continue
            try:
                ext.create_custom_resource_definition(doc)
            except ApiException as err:
                if err.status != 409:
                    raise
            names.append(doc["metadata"]["name"])

    def established() -> bool:
        for name in names:
            conditions = ext.read_custom_resource_definition(name).status.conditions or []
            if not any(c.type == "Established" and c.status == "True" for c in conditions):
                return False
        return True

    wait_for(f"CRDs {names}", established, 60)


def _crd_file(name: str) -> str:
    """Where controller-gen writes a CRD: `<group>_<plural>.yaml`."""
    plural, _, group = name.partition(".")
    return f"{group}_{plural}.yaml"


def ensure(create: Callable[[], object]) -> None:
    """Create, tolerating AlreadyExists (the set-up runs once per system and cluster)."""
    try:
        create()
    except ApiException as err:
        if err.status != 409:
            raise


def service_account_kubeconfig(
    api: client.ApiClient,
    cluster: LocalCluster,
    path: Path,
    *,
    namespace: str,
    name: str,
    rules: list[dict[str, Any]],
) -> Path:
    """A ServiceAccount bound cluster-wide to `rules` (a ClusterRole of the same name), and a
    token kubeconfig for it (24 h)."""
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    ensure(lambda: core.create_namespace({"metadata": {"name": namespace}}))
    wait_for_service_account(core, namespace)
    ensure(lambda: core.create_namespaced_service_account(namespace, {"metadata": {"name": name}}))
    ensure(lambda: rbac.create_cluster_role({"metadata": {"name": name}, "rules": rules}))
    ensure(
        lambda: rbac.create_cluster_role_binding(
            {
                "metadata": {"name": name},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": name,
                },
                "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
            }
        )
    )
    token = core.create_namespaced_service_account_token(
        name, namespace, {"spec": {"expirationSeconds": 86400}}
    ).status.token
    return write_token_kubeconfig(
        path, name=name, server=cluster.server, ca_cert=cluster.pki.ca_cert, token=token
    )


def rules_of(path: Path) -> list[dict[str, Any]]:
    """The rules of every ClusterRole/Role in a YAML file."""
    rules: list[dict[str, Any]] = []
    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc.get("kind") in ("ClusterRole", "Role"):
            rules.extend(doc.get("rules") or [])
    return rules


# --- the systems ----------------------------------------------------------------------------


class System:
    """One controller (or chain of controllers) under test."""

    key = ""
    label = ""
    group = ""
    version = ""
    plural = ""
    #: the pod label whose value is the job's name
    job_label = ""
    #: resources it watches once it is ready to work
    watched: frozenset[str] = frozenset()

    def install(self, api: client.ApiClient, cluster: LocalCluster, state: Path) -> None:
        """Once per cluster: CRDs, RBAC, anything it needs to start."""

    def start(
        self, api: client.ApiClient, cluster: LocalCluster, namespace: str, state: Path
    ) -> Running:
        raise NotImplementedError

    def identities(self, namespace: str) -> set[str]:
        """The audit log's user names of the requests this system makes."""
        raise NotImplementedError

    def job(self, name: str, workers: int, *, suspend: bool = False) -> dict[str, Any]:
        raise NotImplementedError

    def settings(self) -> str:
        """What this run was started with, for the report."""
        return ""

    def suspended(self, obj: dict[str, Any]) -> bool:
        """The controller has seen this suspended job and recorded it as suspended."""
        raise NotImplementedError

    def dropped_events(self, running: Running) -> int:
        """Events the controller says it dropped (client-go's recorder queue overflowing)."""
        dropped = 0
        for log in running.logs.values():
            with contextlib.suppress(FileNotFoundError):
                dropped += log.read_text(errors="replace").count(
                    "too many queued events, dropped event"
                )
        return dropped


class Trainyard(System):
    key = "trainyard"
    label = "Trainyard"
    group, version, plural = "trainyard.dev", "v1alpha1", "trainingjobs"
    job_label = "trainyard.dev/job-name"
    watched = frozenset({"trainingjobs", "pods"})

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.env = dict(env or {})

    def install(self, api: client.ApiClient, cluster: LocalCluster, state: Path) -> None:
        apply_crds(api, ROOT / "crds", {"trainingjobs.trainyard.dev"})

    def start(
        self, api: client.ApiClient, cluster: LocalCluster, namespace: str, state: Path
    ) -> Running:
        kubeconfig = operator_as_service_account(api, cluster, state, namespace=namespace)
        time.sleep(1.0)  # RBAC reaches the authorizer's cache
        log = state / "trainyard-operator.log"
        operator = OperatorProcess(kubeconfig, [namespace], log_path=log, env=self.env).start(
            timeout=120
        )
        assert operator.pid is not None
        return Running({"trainyard-operator": operator.pid}, operator.stop, {"operator": log})

    def identities(self, namespace: str) -> set[str]:
        return {f"system:serviceaccount:{namespace}:trainyard-operator"}

    def job(self, name: str, workers: int, *, suspend: bool = False) -> dict[str, Any]:
        return {
            "apiVersion": f"{self.group}/{self.version}",
            "kind": "TrainingJob",
            "metadata": {"name": name},
            "spec": {
                "workers": workers,
                "suspend": suspend,
                "resources": {"gpus": 1, "cpu": "100m", "memory": "64Mi"},
            },
        }

    def settings(self) -> str:
        return " ".join(f"{k}={v}" for k, v in sorted(self.env.items())) or "defaults"

    def suspended(self, obj: dict[str, Any]) -> bool:
        return (obj.get("status") or {}).get("phase") == "Suspended"


class KubeflowV1(System):
    group, version, plural = "kubeflow.org", "v1", "pytorchjobs"
    job_label = "training.kubeflow.org/job-name"
    watched = frozenset({"pytorchjobs", "pods", "services"})
    namespace = "kubeflow"
    account = "training-operator"

    def __init__(self, binary: Path, *, threads: int = 1, qps: int = 20, burst: int = 30) -> None:
        self.binary = binary
        self.threads, self.qps, self.burst = threads, qps, burst
        defaults = (threads, qps, burst) == (1, 20, 30)
        self.key = "kubeflow_v1_defaults" if defaults else "kubeflow_v1"
        self.label = "KF v1 defaults" if defaults else "KF v1 best"
        self.kubeconfig: Path | None = None

    @property
    def module(self) -> Path:
        return self.binary.parent

    def install(self, api: client.ApiClient, cluster: LocalCluster, state: Path) -> None:
        apply_crds(api, self.module / "crds", {"pytorchjobs.kubeflow.org"})
        rules = rules_of(
            module_file(
                "github.com/kubeflow/training-operator",
                self.module,
                "manifests/base/rbac/role.yaml",
            )
        )
        self.kubeconfig = service_account_kubeconfig(
            api,
            cluster,
            state / "training-operator.kubeconfig",
            namespace=self.namespace,
            name=self.account,
            rules=rules,
        )
        core = client.CoreV1Api(api)
        ensure(
            lambda: core.create_namespaced_secret(
                self.namespace, {"metadata": {"name": "training-operator-webhook-cert"}}
            )
        )

    def _copy_certs(self, api: client.ApiClient) -> bool:
        """Once the rotator has filled its Secret, put the pair where a pod would mount it."""
        secret = client.CoreV1Api(api).read_namespaced_secret(
            "training-operator-webhook-cert", self.namespace
        )
        data = secret.data or {}
        if not data.get("tls.crt") or not data.get("tls.key"):
            return False
        KF_CERT_DIR.mkdir(parents=True, exist_ok=True)
        for key in ("tls.crt", "tls.key"):
            target = KF_CERT_DIR / key
            content = base64.b64decode(data[key])
            if not target.exists() or target.read_bytes() != content:
                target.write_bytes(content)
        return True

    def start(
        self, api: client.ApiClient, cluster: LocalCluster, namespace: str, state: Path
    ) -> Running:
        assert self.kubeconfig is not None
        metrics, health, webhook = processes.free_ports(3)
        log = state / f"{self.key}.log"
        running = spawn(
            self.key,
            [
                str(self.binary),
                f"--kubeconfig={self.kubeconfig}",
                "--enable-scheme=pytorchjob",
                f"--namespace={namespace}",
                f"--controller-threads={self.threads}",
                f"--kube-api-qps={self.qps}",
                f"--kube-api-burst={self.burst}",
                f"--metrics-bind-address=127.0.0.1:{metrics}",
                f"--health-probe-bind-address=127.0.0.1:{health}",
                f"--webhook-server-port={webhook}",
            ],
            log,
        )
        try:
            wait_for("training-operator's certificate", lambda: self._copy_certs(api), 120, log)
            wait_for(
                "training-operator's PyTorchJob workers",
                log_has(log, "Starting workers"),
                120,
                log,
            )
            wait_for(
                "training-operator /readyz", _http_ok(f"http://127.0.0.1:{health}/readyz"), 60, log
            )
        except BaseException:
            running.stop()
            raise
        return running

    def identities(self, namespace: str) -> set[str]:
        return {f"system:serviceaccount:{self.namespace}:{self.account}"}

    def job(self, name: str, workers: int, *, suspend: bool = False) -> dict[str, Any]:
        def replicas(count: int) -> dict[str, Any]:
            return {
                "replicas": count,
                "restartPolicy": "OnFailure",
                "template": {
                    "spec": {
                        "containers": [
                            {
                                "name": "pytorch",
                                "image": IMAGE,
                                "resources": {
                                    "limits": {
                                        "nvidia.com/gpu": 1,
                                        "cpu": "100m",
                                        "memory": "64Mi",
                                    },
                                    "requests": {
                                        "nvidia.com/gpu": 1,
                                        "cpu": "100m",
                                        "memory": "64Mi",
                                    },
                                },
                            }
                        ],
                        "tolerations": [GPU_TOLERATION],
                    }
                },
            }

        specs = {"Master": replicas(1)}
        if workers > 1:
            specs["Worker"] = replicas(workers - 1)
        return {
            "apiVersion": f"{self.group}/{self.version}",
            "kind": "PyTorchJob",
            "metadata": {"name": name},
            "spec": {"runPolicy": {"suspend": suspend}, "pytorchReplicaSpecs": specs},
        }

    def suspended(self, obj: dict[str, Any]) -> bool:
        conditions = (obj.get("status") or {}).get("conditions") or []
        return any(c.get("type") == "Suspended" and c.get("status") == "True" for c in conditions)

    def settings(self) -> str:
        return (
            f"--controller-threads={self.threads} --kube-api-qps={self.qps} "
            f"--kube-api-burst={self.burst}"
        )


def _http_ok(url: str) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            return httpx.get(url, timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    return probe


def clear_kubeflow_certs() -> None:
    """Remove the certificate pair copied for training-operator (a run's leftovers)."""
    shutil.rmtree(KF_CERT_DIR, ignore_errors=True)


class KubeflowV2(System):
    key = "kubeflow_v2"
    label = "KF v2 (Trainer + JobSet)"
    group, version, plural = "trainer.kubeflow.org", "v1alpha1", "trainjobs"
    job_label = "jobset.sigs.k8s.io/jobset-name"
    watched = frozenset({"trainjobs", "jobsets"})
    trainer_namespace, trainer_account = "kubeflow-system", "kubeflow-trainer-controller-manager"
    jobset_namespace, jobset_account = "jobset-system", "jobset-controller-manager"

    def __init__(self, trainer: Path, jobset: Path) -> None:
        self.trainer, self.jobset = trainer, jobset
        self.kubeconfigs: dict[str, Path] = {}

    def install(self, api: client.ApiClient, cluster: LocalCluster, state: Path) -> None:
        apply_crds(api, self.jobset.parent / "crds")
        apply_crds(api, self.trainer.parent / "crds")
        trainer_module = ("github.com/kubeflow/trainer/v2", self.trainer.parent)
        jobset_module = ("sigs.k8s.io/jobset", self.jobset.parent)
        self.kubeconfigs["trainer"] = service_account_kubeconfig(
            api,
            cluster,
            state / "kubeflow-trainer.kubeconfig",
            namespace=self.trainer_namespace,
            name=self.trainer_account,
            rules=rules_of(module_file(*trainer_module, "manifests/base/rbac/role.yaml")),
        )
        self.kubeconfigs["jobset"] = service_account_kubeconfig(
            api,
            cluster,
            state / "jobset.kubeconfig",
            namespace=self.jobset_namespace,
            name=self.jobset_account,
            rules=rules_of(module_file(*jobset_module, "config/components/rbac/role.yaml")),
        )
        runtime = yaml.safe_load(
            module_file(
                *trainer_module, "manifests/base/runtimes/torch_distributed.yaml"
            ).read_text()
        )
        ensure(
            lambda: client.CustomObjectsApi(api).create_cluster_custom_object(
                "trainer.kubeflow.org", "v1alpha1", "clustertrainingruntimes", runtime
            )
        )
        # Their webhook servers start even with no webhook configured: they need a key pair,
        # which a pod would mount; the cluster's serving pair does (nothing calls them).
        self.certs = state / "kubeflow-v2-certs"
        self.certs.mkdir(exist_ok=True)
        shutil.copy(cluster.pki.serving_cert, self.certs / "tls.crt")
        shutil.copy(cluster.pki.serving_key, self.certs / "tls.key")
        if not (KF_CERT_DIR / "tls.crt").exists():  # the trainer's is not configurable
            KF_CERT_DIR.mkdir(parents=True, exist_ok=True)
            shutil.copy(cluster.pki.serving_cert, KF_CERT_DIR / "tls.crt")
            shutil.copy(cluster.pki.serving_key, KF_CERT_DIR / "tls.key")

    def _webhooks(self, cluster: LocalCluster, trainer_port: int, jobset_port: int) -> list[Any]:
        """Their webhook configurations (upstream's, with upstream's kustomize patches that
        matter: the pod webhooks only for JobSet pods), calling the local servers by URL.
        JobSet needs its defaulting webhook: without it its controller panics on nil fields."""
        ca = base64.b64encode(cluster.pki.ca_cert.read_bytes()).decode()
        sources = (
            (
                "trainer",
                trainer_port,
                "github.com/kubeflow/trainer/v2",
                self.trainer.parent,
                "manifests/base/webhook/manifests.yaml",
            ),
            (
                "jobset",
                jobset_port,
                "sigs.k8s.io/jobset",
                self.jobset.parent,
                "config/components/webhook/manifests.yaml",
            ),
        )
        out = []
        for owner, port, module, built, path in sources:
            for doc in yaml.safe_load_all(module_file(module, built, path).read_text()):
                if not doc:
                    continue
                doc["metadata"] = {"name": f"bench-{owner}-{doc['kind'].lower()}"}
                for hook in doc["webhooks"]:
                    route = hook["clientConfig"]["service"]["path"]
                    hook["clientConfig"] = {
                        "url": f"https://127.0.0.1:{port}{route}",
                        "caBundle": ca,
                    }
                    if owner == "jobset" and hook["name"] in ("mpod.kb.io", "vpod.kb.io"):
                        hook["objectSelector"] = {
                            "matchExpressions": [
                                {"key": "jobset.sigs.k8s.io/jobset-name", "operator": "Exists"}
                            ]
                        }
                out.append(doc)
        return out

    def start(
        self, api: client.ApiClient, cluster: LocalCluster, namespace: str, state: Path
    ) -> Running:
        health, metrics, webhook, status, jhealth, jwebhook = processes.free_ports(6)
        # the trainer's webhook server reads the default folder (training-operator's pair
        # may be there from an earlier run): the cluster's serving pair, which the CA signs
        KF_CERT_DIR.mkdir(parents=True, exist_ok=True)
        shutil.copy(cluster.pki.serving_cert, KF_CERT_DIR / "tls.crt")
        shutil.copy(cluster.pki.serving_key, KF_CERT_DIR / "tls.key")
        registrations = client.AdmissionregistrationV1Api(api)
        hooks = self._webhooks(cluster, webhook, jwebhook)

        def unregister() -> None:
            for doc in hooks:
                delete = (
                    registrations.delete_mutating_webhook_configuration
                    if doc["kind"] == "MutatingWebhookConfiguration"
                    else registrations.delete_validating_webhook_configuration
                )
                with contextlib.suppress(ApiException):
                    delete(doc["metadata"]["name"])

        unregister()
        for doc in hooks:
            if doc["kind"] == "MutatingWebhookConfiguration":
                registrations.create_mutating_webhook_configuration(doc)
            else:
                registrations.create_validating_webhook_configuration(doc)
        # upstream's manager config (manifests/base/manager), less leader election and
        # certificate management, on free local ports
        trainer_config = {
            "apiVersion": "config.trainer.kubeflow.org/v1alpha1",
            "kind": "Configuration",
            "health": {
                "healthProbeBindAddress": f"127.0.0.1:{health}",
                "readinessEndpointName": "readyz",
                "livenessEndpointName": "healthz",
            },
            "metrics": {"bindAddress": f"127.0.0.1:{metrics}", "secureServing": False},
            "webhook": {"port": webhook, "host": "127.0.0.1"},
            "leaderElection": {"leaderElect": False},
            "controller": {
                "groupKindConcurrency": {
                    "TrainJob.trainer.kubeflow.org": 5,
                    "TrainingRuntime.trainer.kubeflow.org": 1,
                    "ClusterTrainingRuntime.trainer.kubeflow.org": 1,
                }
            },
            "certManagement": {"enable": False},
            "clientConnection": {"qps": 50, "burst": 100},
            "statusServer": {"port": status, "qps": 5, "burst": 10},
        }
        jobset_config = {
            "apiVersion": "config.jobset.x-k8s.io/v1alpha1",
            "kind": "Configuration",
            "leaderElection": {"leaderElect": False},
            "internalCertManagement": {"enable": False},
            "webhook": {"port": jwebhook, "host": "127.0.0.1", "certDir": str(self.certs)},
            "metrics": {"bindAddress": "0"},
            "health": {"healthProbeBindAddress": f"127.0.0.1:{jhealth}"},
        }
        (state / "trainer-config.yaml").write_text(yaml.safe_dump(trainer_config))
        (state / "jobset-config.yaml").write_text(yaml.safe_dump(jobset_config))
        jobset_log, trainer_log = state / "jobset.log", state / "kubeflow-trainer.log"
        jobset = spawn(
            "jobset",
            [
                str(self.jobset),
                f"--kubeconfig={self.kubeconfigs['jobset']}",
                f"--config={state / 'jobset-config.yaml'}",
            ],
            jobset_log,
        )
        try:
            trainer = spawn(
                "kubeflow-trainer",
                [
                    str(self.trainer),
                    f"--kubeconfig={self.kubeconfigs['trainer']}",
                    f"--config={state / 'trainer-config.yaml'}",
                ],
                trainer_log,
            )
        except BaseException:
            unregister()
            jobset.stop()
            raise

        def stop() -> None:
            unregister()
            trainer.stop()
            jobset.stop()

        running = Running({**jobset.pids, **trainer.pids}, stop, {**jobset.logs, **trainer.logs})
        try:
            wait_for("JobSet's workers", log_has(jobset_log, "Starting workers"), 180, jobset_log)
            wait_for(
                "Trainer's TrainJob workers",
                log_has(trainer_log, "Starting workers"),
                180,
                trainer_log,
            )
        except BaseException:
            stop()
            raise
        return running

    def identities(self, namespace: str) -> set[str]:
        return {
            f"system:serviceaccount:{self.trainer_namespace}:{self.trainer_account}",
            f"system:serviceaccount:{self.jobset_namespace}:{self.jobset_account}",
            # the Jobs' pods are created by kube-controller-manager's job-controller
            "system:serviceaccount:kube-system:job-controller",
        }

    def job(self, name: str, workers: int, *, suspend: bool = False) -> dict[str, Any]:
        resources = {"nvidia.com/gpu": 1, "cpu": "100m", "memory": "64Mi"}
        node = {
            "name": "node",
            "template": {"spec": {"template": {"spec": {"tolerations": [GPU_TOLERATION]}}}},
        }
        return {
            "apiVersion": f"{self.group}/{self.version}",
            "kind": "TrainJob",
            "metadata": {"name": name},
            "spec": {
                "runtimeRef": {"name": "torch-distributed"},
                "suspend": suspend,
                "trainer": {
                    "numNodes": workers,
                    "resourcesPerNode": {"limits": resources, "requests": resources},
                },
                "runtimePatches": [
                    {
                        "manager": "trainyard.dev/bench",
                        "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": [node]}}},
                    }
                ],
            },
        }

    def suspended(self, obj: dict[str, Any]) -> bool:
        conditions = (obj.get("status") or {}).get("conditions") or []
        return any(c.get("type") == "Suspended" and c.get("status") == "True" for c in conditions)

    def settings(self) -> str:
        return "upstream config: TrainJob concurrency 5, QPS 50 / burst 100; JobSet QPS 500"
