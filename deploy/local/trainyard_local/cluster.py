"""LocalCluster: a real Kubernetes control plane on 127.0.0.1, started from local binaries.

It runs etcd, kube-apiserver (RBAC; ServiceAccount and PodSecurity admission on),
kube-controller-manager, kube-scheduler and one node agent (`agent.py`) that stands in for
kubelets on fake nodes. Everything lives in one state directory:

    <state_dir>/kubeconfig          admin kubeconfig (system:masters)
    <state_dir>/pki/                CA, serving cert, client certs, ServiceAccount keys
    <state_dir>/components/         kubeconfigs of the controller-manager and the scheduler
    <state_dir>/logs/<component>.log
    <state_dir>/logs/audit.log      the API server's audit log: pod lists and watches only
    <state_dir>/pids.json           what is running: pids, ports, server URL
    <state_dir>/etcd-data/          kept across down/up, so objects survive a restart

`cli.py` (python -m trainyard_local up|down|status) and the pytest plugin drive this class;
`processes.py` does the process handling and `pki.py` the certificates.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import ssl
import sys
import time
from collections.abc import Callable
from pathlib import Path
from subprocess import Popen
from types import TracebackType
from typing import Any

import httpx

from trainyard_local import binaries, nodes, processes
from trainyard_local.kubeconfig import write_cert_kubeconfig
from trainyard_local.pki import SERVICE_CIDR, Pki, ensure_pki
from trainyard_local.runners import check_runner_name

#: Whole start-ups tried before giving up (see start()).
START_ATTEMPTS = 3
#: etcd client and peer, kube-apiserver, kube-controller-manager, kube-scheduler, agent logs
PORTS = 6

#: Start order; stop runs it backwards.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "agent")

#: kube-controller-manager controllers. Garbage collection, namespaces, ServiceAccounts and
#: their tokens are what the tests rely on; the workload controllers make `helm install`
#: of a Deployment work; node-lifecycle (with taint-eviction) is kept because the agent
#: renews node Leases every 10 s, so a node whose agent died turns NotReady as it would in a
#: real cluster. Volume, cloud and certificate controllers are left out: nothing here has them.
CONTROLLERS = (
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "clusterrole-aggregation-controller",
    "node-lifecycle-controller",
    "taint-eviction-controller",
    "pod-garbage-collector-controller",
    "deployment-controller",
    "replicaset-controller",
    "statefulset-controller",
    "job-controller",
    "ttl-after-finished-controller",
    "endpoints-controller",
    "endpointslice-controller",
    "resourcequota-controller",
    "disruption-controller",
)

SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"

#: The API server audits who lists and watches pods, and with which selectors (the request
#: URI): how a test sees that a controller asks the server to filter instead of receiving
#: every pod of the cluster. Long-running watches are logged when their response starts.
AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    verbs: [list, watch]
    resources: [{group: "", resources: [pods]}]
  - level: None
"""


class ClusterStartError(RuntimeError):
    """A component did not start or become ready; the message carries its log tail."""


def state_root() -> Path:
    """$TRAINYARD_HOME, else ~/.trainyard (the Makefile sets <repo>/.trainyard)."""
    return Path(os.environ.get("TRAINYARD_HOME") or Path.home() / ".trainyard")


def default_state_dir(name: str) -> Path:
    return state_root() / "clusters" / name


def _ports_free(ports: list[int]) -> bool:
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


class LocalCluster:
    """One local cluster. `start()` is idempotent: an already running cluster is left alone."""

    def __init__(  # noqa: PLR0917 - the positional order is the documented API
        self,
        name: str = "trainyard",
        state_dir: Path | None = None,
        cpu_nodes: int = 1,
        gpu_nodes: int = 1,
        gpus_per_node: int = 8,
        agent: str = "fake",
        *,
        tie_to_parent: bool = False,
        progress: Callable[[str], None] | None = None,
        ready_timeout: float = 120.0,
        audit_policy: str = AUDIT_POLICY,
        audit_log_max_mib: int = 20,
    ) -> None:
        self.name = nodes.check_cluster_name(name)
        self.state_dir = Path(state_dir) if state_dir else default_state_dir(name)
        self.agent = check_runner_name(agent)
        self.node_specs = nodes.plan_nodes(name, cpu_nodes, gpu_nodes, gpus_per_node)
        self.cpu_nodes, self.gpu_nodes, self.gpus_per_node = cpu_nodes, gpu_nodes, gpus_per_node
        # tie_to_parent: components die with this Python process (the pytest plugin wants
        # that; `up` from a shell does not)
        self.tie_to_parent = tie_to_parent
        self.ready_timeout = ready_timeout
        # what the API server audits (bench/vs_kubeflow.py audits every request, to count
        # each client's) and how large its log grows before it rotates (one backup is kept)
        self.audit_policy = audit_policy
        self.audit_log_max_mib = audit_log_max_mib
        self._progress = progress or (lambda _message: None)
        self._popens: dict[int, Popen[bytes]] = {}
        self.startup_seconds: float | None = None

    # -- paths and recorded state ---------------------------------------------------------

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def pids_file(self) -> Path:
        return self.state_dir / "pids.json"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def pki(self) -> Pki:
        return Pki(self.state_dir / "pki")

    @property
    def audit_log(self) -> Path:
        """The API server's audit log (pod lists and watches by default, see AUDIT_POLICY)."""
        return self.logs_dir / "audit.log"

    def log_path(self, component: str) -> Path:
        return self.logs_dir / f"{component}.log"

    def _record(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.pids_file.read_text())
        except FileNotFoundError:
            return {}
        return data

    def _write_record(self, record: dict[str, Any]) -> None:
        tmp = self.pids_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        tmp.replace(self.pids_file)

    def _tracked(self) -> list[processes.Tracked]:
        return [
            processes.Tracked(entry["component"], int(entry["pid"]), entry["match"])
            for entry in self._record().get("processes", [])
        ]

    @property
    def server(self) -> str:
        """The API server URL (https://127.0.0.1:<port>); known once started."""
        server = self._record().get("server")
        if not server:
            raise RuntimeError(f"cluster {self.name!r} is not running ({self.pids_file} missing)")
        return str(server)

    def status(self) -> dict[str, bool]:
        """component -> running, for every component recorded in pids.json."""
        return {
            t.component: processes.is_running(t, self._popens.get(t.pid)) for t in self._tracked()
        }

    def is_up(self) -> bool:
        state = self.status()
        return bool(state) and set(state) == set(COMPONENTS) and all(state.values())

    # -- HTTP helpers -----------------------------------------------------------------------

    def _ssl_context(self, *, client: bool) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        if client:
            context.load_cert_chain(
                str(self.pki.client_cert("admin")), str(self.pki.client_key("admin"))
            )
        return context

    def http(self) -> httpx.Client:
        """An httpx client with admin credentials, for quick checks without the k8s client."""
        return httpx.Client(
            base_url=self.server, verify=self._ssl_context(client=True), timeout=10.0
        )

    # -- start ------------------------------------------------------------------------------

    def start(self) -> bool:
        """Start every component and wait until nodes are Ready; False if it was already up."""
        if self.is_up():
            return False
        self.stop()  # leftovers of a half-started or half-stopped cluster
        began = time.monotonic()
        bins = binaries.bin_dir()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(exist_ok=True)
        pki = ensure_pki(self.state_dir / "pki", self.name)
        ports = self._choose_ports()
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                record = self._start_on(ports, bins, pki)
                break
            except ClusterStartError as error:
                # A free port chosen here can be taken by another program before the component
                # binds it (two clusters starting at once), and on a loaded 2-core machine a
                # component can give up waiting on its neighbour: start again on fresh ports.
                if attempt == START_ATTEMPTS:
                    raise
                self._progress(f"start attempt {attempt} failed ({error}); trying again")
                ports = processes.free_ports(PORTS)
        self.startup_seconds = time.monotonic() - began
        record["startup_seconds"] = round(self.startup_seconds, 2)
        self._write_record(record)
        return True

    def _start_on(self, ports: list[int], bins: Path, pki: Pki) -> dict[str, Any]:
        etcd_port, peer_port, api_port, kcm_port, sched_port, agent_port = ports
        server = f"https://127.0.0.1:{api_port}"
        record: dict[str, Any] = {
            "name": self.name,
            "server": server,
            "kubeconfig": str(self.kubeconfig),
            "ports": {
                "etcd": etcd_port,
                "etcd-peer": peer_port,
                "kube-apiserver": api_port,
                "kube-controller-manager": kcm_port,
                "kube-scheduler": sched_port,
                "agent": agent_port,
            },
            "nodes": [spec.name for spec in self.node_specs],
            "agent": self.agent,
            "processes": [],
        }
        self._write_record(record)
        self._write_kubeconfigs(pki, server)
        try:
            self._start_components(bins, pki, record)
        except BaseException:
            self.stop()
            raise
        return record

    def _choose_ports(self) -> list[int]:
        # Reuse the previous ports when they are free, so a restarted cluster keeps its URL
        # (and etcd its peer URL); otherwise take fresh ones.
        previous = self._record().get("last_ports") or []
        if len(previous) == PORTS and _ports_free(previous):
            return [int(p) for p in previous]
        return processes.free_ports(PORTS)

    def _write_kubeconfigs(self, pki: Pki, server: str) -> None:
        write_cert_kubeconfig(
            self.kubeconfig,
            name=self.name,
            server=server,
            ca_cert=pki.ca_cert,
            client_cert=pki.client_cert("admin"),
            client_key=pki.client_key("admin"),
        )
        for who in ("controller-manager", "scheduler"):
            write_cert_kubeconfig(
                self.state_dir / "components" / f"{who}.kubeconfig",
                name=self.name,
                server=server,
                ca_cert=pki.ca_cert,
                client_cert=pki.client_cert(who),
                client_key=pki.client_key(who),
            )

    def _spawn(self, component: str, argv: list[str], match: str, record: dict[str, Any]) -> None:
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        popen = processes.spawn(
            argv,
            self.log_path(component),
            env=env,
            cwd=self.state_dir,
            tie_to_parent=self.tie_to_parent,
        )
        self._popens[popen.pid] = popen
        record["processes"].append(
            {"component": component, "pid": popen.pid, "match": match, "argv": argv}
        )
        record["last_ports"] = list(record["ports"].values())
        self._write_record(record)
        self._progress(f"{component}: started (pid {popen.pid}, log {self.log_path(component)})")

    def _start_components(self, bins: Path, pki: Pki, record: dict[str, Any]) -> None:
        ports = record["ports"]
        etcd, peer = ports["etcd"], ports["etcd-peer"]
        serving = [
            f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}",
        ]

        etcd_bin = str(bins / "etcd")
        self._spawn(
            "etcd",
            [
                etcd_bin,
                f"--name={self.name}",
                f"--data-dir={self.state_dir / 'etcd-data'}",
                f"--listen-client-urls=http://127.0.0.1:{etcd}",
                f"--advertise-client-urls=http://127.0.0.1:{etcd}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster={self.name}=http://127.0.0.1:{peer}",
                # test data: losing the last writes on a power cut is fine, fsync latency is not
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
            etcd_bin,
            record,
        )
        self._wait("etcd", lambda: self._get(f"http://127.0.0.1:{etcd}/health", verify=False))

        api_bin = str(bins / "kube-apiserver")
        audit_policy = self.state_dir / "components" / "audit-policy.yaml"
        audit_policy.write_text(self.audit_policy)
        self._spawn(
            "kube-apiserver",
            [
                api_bin,
                f"--etcd-servers=http://127.0.0.1:{etcd}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={ports['kube-apiserver']}",
                *serving,
                f"--client-ca-file={pki.ca_cert}",
                "--authorization-mode=RBAC",
                # the first three are on by default, named so nobody turns them off by accident;
                # OwnerReferencesPermissionEnforcement is on in several distributions (OpenShift
                # among them): a child with blockOwnerDeletion needs update on the owner's
                # finalizers, which the operator's RBAC must grant
                "--enable-admission-plugins=NamespaceLifecycle,ServiceAccount,PodSecurity,"
                "OwnerReferencesPermissionEnforcement",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                # privileged pods are admitted unless PodSecurity forbids them in the namespace
                "--allow-privileged=true",
                # the `kubernetes` Endpoints may not hold a loopback address; nothing dials it
                "--endpoint-reconciler-type=none",
                "--profiling=false",
                # `kubectl logs` goes through the API server to the node's kubelet endpoint:
                # here the agent's log server, which asks for this client certificate and
                # presents the shared serving certificate (checked against the CA)
                f"--kubelet-client-certificate={pki.client_cert('kubelet-client')}",
                f"--kubelet-client-key={pki.client_key('kubelet-client')}",
                f"--kubelet-certificate-authority={pki.ca_cert}",
                "--kubelet-preferred-address-types=InternalIP",
                f"--audit-policy-file={audit_policy}",
                f"--audit-log-path={self.audit_log}",
                f"--audit-log-maxsize={self.audit_log_max_mib}",
                "--audit-log-maxbackup=1",
            ],
            api_bin,
            record,
        )
        self._wait("kube-apiserver", lambda: self._get_api("/readyz"))

        components = self.state_dir / "components"
        # no --authentication/--authorization-kubeconfig for the two below: their only
        # clients are our health probes on always-allowed paths, and delegated auth would
        # need a front-proxy CA that nothing else here uses
        kcm_bin = str(bins / "kube-controller-manager")
        kcm_kubeconfig = components / "controller-manager.kubeconfig"
        self._spawn(
            "kube-controller-manager",
            [
                kcm_bin,
                f"--kubeconfig={kcm_kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={ports['kube-controller-manager']}",
                *serving,
                "--leader-elect=false",
                f"--root-ca-file={pki.ca_cert}",
                f"--service-account-private-key-file={pki.sa_key}",
                # each controller acts as its own ServiceAccount, as kubeadm sets it up
                "--use-service-account-credentials=true",
                f"--controllers={','.join(CONTROLLERS)}",
            ],
            kcm_bin,
            record,
        )
        sched_bin = str(bins / "kube-scheduler")
        sched_kubeconfig = components / "scheduler.kubeconfig"
        self._spawn(
            "kube-scheduler",
            [
                sched_bin,
                f"--kubeconfig={sched_kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={ports['kube-scheduler']}",
                *serving,
                "--leader-elect=false",
            ],
            sched_bin,
            record,
        )
        self._spawn(
            "agent",
            [
                sys.executable,
                "-m",
                "trainyard_local.agent",
                f"--kubeconfig={self.kubeconfig}",
                f"--runner={self.agent}",
                f"--cluster={self.name}",
                f"--cpu-nodes={self.cpu_nodes}",
                f"--gpu-nodes={self.gpu_nodes}",
                f"--gpus-per-node={self.gpus_per_node}",
                f"--state-dir={self.state_dir}",
                f"--log-port={ports['agent']}",
                f"--pki-dir={pki.root}",
            ],
            "trainyard_local.agent",
            record,
        )
        kcm_url = f"https://127.0.0.1:{ports['kube-controller-manager']}/healthz"
        sched_url = f"https://127.0.0.1:{ports['kube-scheduler']}/readyz"
        self._wait("kube-controller-manager", lambda: self._get(kcm_url))
        self._wait("kube-scheduler", lambda: self._get(sched_url))
        # the ServiceAccount controller has run: pods can be admitted in `default`
        self._wait(
            "kube-controller-manager",
            lambda: self._get_api("/api/v1/namespaces/default/serviceaccounts/default"),
            what="the default ServiceAccount",
        )
        self._wait("agent", self._nodes_ready, what=f"{len(self.node_specs)} Ready nodes")

    # -- readiness probes ---------------------------------------------------------------------

    def _get(self, url: str, *, verify: bool = True) -> bool:
        context: ssl.SSLContext | bool = self._ssl_context(client=False) if verify else False
        try:
            return httpx.get(url, verify=context, timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def _get_api(self, path: str) -> bool:
        try:
            with self.http() as client:
                return client.get(path, timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def _nodes_ready(self) -> bool:
        try:
            with self.http() as client:
                response = client.get(
                    "/api/v1/nodes", params={"labelSelector": f"{nodes.CLUSTER_LABEL}={self.name}"}
                )
        except httpx.HTTPError:
            return False
        if response.status_code != 200:
            return False
        ready = {n["metadata"]["name"] for n in response.json()["items"] if nodes.is_ready(n)}
        return all(spec.name in ready for spec in self.node_specs)

    def _wait(self, component: str, probe: Callable[[], bool], *, what: str = "ready") -> None:
        tracked = next(t for t in reversed(self._tracked()) if t.component == component)
        deadline = time.monotonic() + self.ready_timeout
        delay = 0.05
        while not probe():
            if not processes.is_running(tracked, self._popens.get(tracked.pid)):
                raise ClusterStartError(
                    f"{component} exited during start-up; last lines of "
                    f"{self.log_path(component)}:\n{processes.log_tail(self.log_path(component))}"
                )
            if time.monotonic() > deadline:
                raise ClusterStartError(
                    f"{component}: not {what} after {self.ready_timeout:.0f} s; last lines of "
                    f"{self.log_path(component)}:\n{processes.log_tail(self.log_path(component))}"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)
        self._progress(f"{component}: {what}")

    # -- faults -----------------------------------------------------------------------------

    def restart(self, component: str, *, kill: bool = False) -> None:
        """Stop one component (SIGTERM, or SIGKILL with `kill`) and start it again with the
        same arguments, waiting until it is ready: the fault tests' way to restart etcd or
        the API server under a running operator. Data and ports stay."""
        record = self._record()
        entries = [e for e in record.get("processes", []) if e["component"] == component]
        if not entries:
            raise ClusterStartError(f"{component} is not running in cluster {self.name}")
        entry = entries[-1]
        tracked = processes.Tracked(component, int(entry["pid"]), entry["match"])
        popen = self._popens.pop(tracked.pid, None)
        if kill and processes.is_running(tracked, popen):
            with contextlib.suppress(ProcessLookupError):
                os.kill(tracked.pid, signal.SIGKILL)
        processes.stop(tracked, popen=popen)  # reaps it (or stops it, without `kill`)
        record["processes"] = [e for e in record["processes"] if e is not entry]
        self._spawn(component, list(entry["argv"]), entry["match"], record)
        ports = record["ports"]
        probes: dict[str, Callable[[], bool]] = {
            "etcd": lambda: self._get(f"http://127.0.0.1:{ports['etcd']}/health", verify=False),
            "kube-apiserver": lambda: self._get_api("/readyz"),
            "kube-scheduler": lambda: self._get(
                f"https://127.0.0.1:{ports['kube-scheduler']}/readyz"
            ),
        }
        probe = probes.get(component)
        if probe is not None:
            self._wait(component, probe)

    def compact_etcd(self) -> int:
        """Compact etcd's history up to its current revision (what kube-apiserver does every
        5 minutes): a watch that resumes from an older resourceVersion then gets 410 Gone and
        must list again. Through etcd's own JSON gateway; returns the revision."""
        base = f"http://127.0.0.1:{self._record()['ports']['etcd']}/v3/kv"
        with httpx.Client(timeout=30) as http:
            head = http.post(f"{base}/range", json={"key": "AA=="}).raise_for_status().json()
            revision = int(head["header"]["revision"])
            http.post(
                f"{base}/compaction", json={"revision": revision, "physical": True}
            ).raise_for_status()
        return revision

    # -- stop -------------------------------------------------------------------------------

    def stop(self) -> list[str]:
        """Stop every recorded process, agent first and etcd last; returns what was running.

        Logs, certificates, kubeconfigs and etcd data stay; pids.json keeps the ports (so the
        next start reuses them) but no longer lists processes.
        """
        record = self._record()
        tracked = self._tracked()
        order = {component: i for i, component in enumerate(COMPONENTS)}
        stopped = []
        for item in sorted(tracked, key=lambda t: -order.get(t.component, -1)):
            if processes.stop(item, popen=self._popens.pop(item.pid, None)):
                stopped.append(item.component)
        for popen in self._popens.values():  # started but never recorded: stop and reap anyway
            if popen.poll() is None:
                popen.kill()
                popen.wait()
        self._popens.clear()
        if record:
            record["processes"] = []
            record.pop("server", None)
            self._write_record(record)
        return stopped

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
