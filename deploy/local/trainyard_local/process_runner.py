"""The process runner: runs a pod's containers as plain local processes (dev/test only).

NOT a kubelet and not a container runtime: no image, no isolation, no cgroups, no network
namespace. It stands in for a kubelet on the embedded local cluster so that the e2e tests and
`make demo` can run real DDP training (torchrun, gloo) through the real API server,
scheduler and operator on a machine without Docker. `agent.py` owns everything
Kubernetes-facing (nodes, pod IPs, status patches, deletion) and calls `start`, `poll` and
`stop` from its one loop thread (the protocol is in `runners.py`); this module maps a pod
spec onto a process by the rules below and reports what the process does.

Mapping rules (also in deploy/local/README.md):

- Image: ignored. The process runs from the project's virtualenv: its `bin` is first on
  PATH, so `torchrun` and `python` resolve to the venv that holds the trainer. The
  container's `command` + `args` are run as given (`$(VAR)` references expanded as a kubelet
  does); an empty `command` cannot be honoured (there is no image entrypoint) and leaves the
  container waiting with CreateContainerConfigError.
- Environment: a small base (PATH, HOME, LANG, TMPDIR) plus the container's `env`: literal
  values, `valueFrom.fieldRef` (metadata.name, metadata.namespace, metadata.uid,
  metadata.labels['k'], metadata.annotations['k'], spec.nodeName, spec.serviceAccountName,
  status.podIP, status.hostIP) and `configMapKeyRef` / `secretKeyRef` (read through the API
  by `pod_sources.py`). `resourceFieldRef` and `envFrom` are not supported; a missing
  reference gives CreateContainerConfigError naming the variable.
- Rendezvous: `MASTER_ADDR`/`PET_MASTER_ADDR` become 127.0.0.1 and `MASTER_PORT`/
  `PET_MASTER_PORT` a free port chosen once per job (namespace, master pod, gang restart).
  Why not the master pod's own loopback IP: torch's TCPStore listens on every address of
  its port, so two jobs on one machine would collide on 29500 whatever IP they dial, and
  127.0.0.1 needs no ordering between the workers' starts. Gloo is pinned to `lo`.
- Other pod DNS names: an env value `<pod>.<service>.<ns>.svc[.cluster.local]` naming a pod
  this runner knows (or one the API server reports with an IP) becomes that pod's loopback
  IP (127.2.x.y).
- `TRAINYARD_METRICS_HOST` is set to the pod IP so that every worker serves its metrics on
  its own address at the contract's port 9400 (Prometheus scrapes `<pod IP>:9400`).
- GPUs, as NVIDIA's device plugin hands them out (`devices.py`): each GPU node owns a range
  of the host's device indexes, and a container asking for `nvidia.com/gpu` gets that many
  of its node's devices no other running container holds, as `CUDA_VISIBLE_DEVICES` (set
  last: the pod's own value cannot reach another pod's GPUs); a container asking for none
  gets `CUDA_VISIBLE_DEVICES=""` and sees no GPU. They are free again when its process ends
  or its pod is stopped. More than the node has free gives CreateContainerConfigError.
- CPU: `OMP_NUM_THREADS` is set from the container's CPU limit (else request, rounded up,
  at least 1) unless the pod sets it: a container's CPU quota has no local equivalent, and
  unbounded torch threads of several workers would fight over the cores.
- Volumes: `emptyDir` -> `<pod dir>/volumes/<name>/` (removed when the pod goes);
  `persistentVolumeClaim` -> `<state dir>/volumes/pvc/<namespace>/<claim>/` (survives pod
  deletion, so checkpoints survive a gang restart); `secret`, `configMap`, `downwardAPI` and
  `projected` (the ServiceAccount's `kube-api-access-*`: a token bound to the pod) are
  written into `<pod dir>/volumes/<name>/` by `pod_sources.py`. Env values and args that
  equal or start with a `mountPath` are rewritten to the local folder (the trainer finds its
  output through `TRAINYARD_OUTPUT_DIR`); a program reading a fixed absolute path does not
  find the files (no mount namespace). Other volume types (hostPath, CSI, ...) mounted by a
  container give CreateContainerConfigError.
- Termination message: `TRAINYARD_TERMINATION_LOG` and `terminationMessagePath` point to
  `<pod dir>/<container>.termination-log`, read when the process exits (at most 4096
  bytes); with `terminationMessagePolicy: FallbackToLogsOnError` an empty file on a failed
  exit gives the log's last 80 lines (at most 2048 bytes), as a kubelet does.
- Logs: stdout and stderr go through a pipe to `<pod dir>/<container>.log`, with the time
  each line arrived in `<container>.log.times` (`container_log.py`), which the agent's log
  server (`log_server.py`) serves to `kubectl logs` through the API server. The pod dir is
  `<state dir>/pods/<namespace>_<pod>_<uid>/` and is kept after the pod is deleted.
  `<container>.pid` there holds the process id (its process group id too).
- Stop: on pod deletion SIGTERM to the process group, SIGKILL after the pod's
  terminationGracePeriodSeconds (default 30). The processes also get SIGTERM if the agent
  dies (PR_SET_PDEATHSIG), so no trainer outlives its cluster.
- restartPolicy is treated as Never: an exited container is never restarted (the operator
  restarts whole gangs by recreating pods). Init containers, probes and securityContext are
  not applied; processes run as the agent's user.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainyard_local import container_log
from trainyard_local.devices import DeviceError, GpuDevices, Holder, gpu_request, visible_devices
from trainyard_local.pod_sources import ConfigError, PodSources, field_ref
from trainyard_local.runners import ContainerState, Observation, PodHandle, RunnerOptions

log = logging.getLogger("trainyard_local.process_runner")

MASTER_ADDR_NAMES = ("MASTER_ADDR", "PET_MASTER_ADDR")
MASTER_PORT_NAMES = ("MASTER_PORT", "PET_MASTER_PORT")
DEFAULT_TERMINATION_PATH = "/dev/termination-log"
#: A kubelet's limits on the termination message and on the log fallback.
MESSAGE_LIMIT = 4096
FALLBACK_LINES = 80
FALLBACK_BYTES = 2048
DEFAULT_GRACE_SECONDS = 30.0
#: How long an exited container's output may take to reach its log before it is read.
PUMP_DRAIN_SECONDS = 5.0

_POD_DNS = re.compile(
    r"^(?P<pod>[a-z0-9]([-a-z0-9]*[a-z0-9])?)\.(?P<svc>[a-z0-9]([-a-z0-9]*[a-z0-9])?)\."
    r"(?P<ns>[a-z0-9]([-a-z0-9]*[a-z0-9])?)\.svc(\.cluster\.local)?\.?$"
)
_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def venv_bin() -> Path:
    """The bin directory of the virtualenv this agent runs in (not resolved: a venv's python
    is a symlink to the system interpreter, and the venv is what holds the trainer)."""
    return Path(sys.executable).parent


def expand_refs(value: str, env: dict[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: known names are replaced, `$$` is a literal `$`,
    unknown references stay as written."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return _VAR_REF.sub(replace, value)


def cpu_threads(container: dict[str, Any]) -> int:
    """Threads for OMP_NUM_THREADS from the CPU limit (else request): '1500m' -> 2."""
    resources = container.get("resources") or {}
    raw = (resources.get("limits") or {}).get("cpu") or (resources.get("requests") or {}).get("cpu")
    if raw is None:
        return 1
    text = str(raw)
    try:
        cores = float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    except ValueError:
        raise ConfigError(f"resources cpu: {text!r} is not a CPU quantity") from None
    return max(1, math.ceil(cores))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tied_to_agent(argv: list[str]) -> list[str]:
    """Run `argv` under util-linux's setpriv so that it gets SIGTERM when the agent dies (even
    by SIGKILL). A preexec_fn could set the same parent-death signal, but is unsafe in a
    parent with threads, which the agent has. Without setpriv the process outlives a killed
    agent; `stop` still ends it on a clean shutdown."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--", *argv] if setpriv else argv


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def exit_code_of(returncode: int) -> int:
    """Popen's returncode (negative = killed by signal N) as a container exit code (128+N)."""
    return 128 - returncode if returncode < 0 else returncode


def read_termination_message(path: Path, log_path: Path, *, fallback: bool, failed: bool) -> str:
    """What the kubelet would put in state.terminated.message."""
    try:
        message = path.read_bytes()[:MESSAGE_LIMIT].decode(errors="replace").strip()
    except FileNotFoundError:
        message = ""
    if message or not (fallback and failed):
        return message
    try:
        lines = log_path.read_bytes().decode(errors="replace").splitlines()[-FALLBACK_LINES:]
    except FileNotFoundError:
        return ""
    tail = "\n".join(lines).encode()[-FALLBACK_BYTES:]
    return tail.decode(errors="replace").strip()


@dataclass
class Process:
    """One container's process and where its files are."""

    container: str
    popen: subprocess.Popen[bytes] | None
    log_path: Path
    termination_path: Path
    fallback_to_logs: bool
    started_at: dt.datetime
    final: ContainerState | None = None
    error: ContainerState | None = None
    pump: threading.Thread | None = None
    holder: Holder = ("", "")
    """(pod uid, container): whose GPUs to free when the process ends."""


@dataclass
class LaunchPlan:
    """What `plan` derived from one container: argv, env, cwd and files."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path
    log_path: Path
    termination_path: Path
    fallback_to_logs: bool


class ProcessRunner:
    """Implements the `Runner` protocol with one local process per container."""

    def __init__(self, options: RunnerOptions) -> None:
        self.options = options
        self._pods: dict[str, list[Process]] = {}
        self._ips: dict[tuple[str, str], str] = {}
        self._ports: dict[tuple[str, str, str], int] = {}
        self.sources = PodSources(options.kubeconfig)
        self.gpus = GpuDevices(options.gpu_devices)

    # -- the Runner protocol ---------------------------------------------------------------

    def start(self, pod: PodHandle) -> None:
        if pod.uid in self._pods:
            return
        self._ips[(pod.namespace, pod.name)] = pod.pod_ip
        pod.work_dir.mkdir(parents=True, exist_ok=True)
        processes: list[Process] = []
        for container in pod.containers:
            name = str(container["name"])
            try:
                plan = self.plan(pod, container)
            except Exception as error:  # ConfigError, or the API server refusing a lookup
                log.warning("pod %s/%s container %s: %s", pod.namespace, pod.name, name, error)
                processes.append(
                    Process(
                        name,
                        None,
                        pod.work_dir / f"{name}.log",
                        pod.work_dir / f"{name}.termination-log",
                        False,
                        _now(),
                        error=ContainerState("waiting", "CreateContainerConfigError", str(error)),
                    )
                )
                continue
            processes.append(self._launch(pod, name, plan))
        self._pods[pod.uid] = processes

    def poll(self, pod: PodHandle) -> Observation:
        states: dict[str, ContainerState] = {}
        for process in self._pods.get(pod.uid, []):
            states[process.container] = self._state(process)
        return Observation(states)

    def stop(self, pod: PodHandle) -> None:
        processes = self._pods.pop(pod.uid, None)
        self._ips.pop((pod.namespace, pod.name), None)
        self.gpus.release_pod(pod.uid)
        if processes is None:
            return
        grace = pod.pod["metadata"].get("deletionGracePeriodSeconds")
        if grace is None:
            grace = pod.pod["spec"].get("terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS)
        running = [p.popen for p in processes if p.popen is not None and p.popen.poll() is None]
        for popen in running:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(popen.pid, signal.SIGTERM)
        emptydirs = pod.work_dir / "volumes"
        # the agent's loop must not wait out a grace period: a reaper thread does (not a
        # daemon, so an exiting agent still SIGKILLs what ignores SIGTERM)
        threading.Thread(
            target=self._reap,
            args=(running, float(grace), emptydirs),
            name=f"reap-{pod.name}",
        ).start()
        log.info("pod %s/%s stopped (SIGTERM, grace %ss)", pod.namespace, pod.name, grace)

    # -- mapping a container onto a process ---------------------------------------------------

    def plan(self, pod: PodHandle, container: dict[str, Any]) -> LaunchPlan:
        """Derive argv, env and files for one container; ConfigError names what cannot map."""
        name = str(container["name"])
        mounts = self._mounts(pod, container)
        termination_path = pod.work_dir / f"{name}.termination-log"
        message_path = str(container.get("terminationMessagePath") or DEFAULT_TERMINATION_PATH)

        def local(value: str) -> str:
            if value == message_path:
                return str(termination_path)
            for mount_path, folder in mounts:
                if value == mount_path:
                    return str(folder)
                if value.startswith(mount_path.rstrip("/") + "/"):
                    return str(folder) + value[len(mount_path.rstrip("/")) :]
            return value

        venv = venv_bin()
        env: dict[str, str] = {
            "PATH": f"{venv}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(pod.work_dir),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "TMPDIR": str(pod.work_dir / "tmp"),
            "HOSTNAME": str(pod.pod["spec"].get("hostname") or pod.name),
            "VIRTUAL_ENV": str(venv.parent),
            "OMP_NUM_THREADS": str(cpu_threads(container)),
            "GLOO_SOCKET_IFNAME": "lo",
            "TP_SOCKET_IFNAME": "lo",
            "NCCL_SOCKET_IFNAME": "lo",
        }
        (pod.work_dir / "tmp").mkdir(parents=True, exist_ok=True)
        for item in container.get("env") or []:
            variable = str(item["name"])
            if "value" in item or "valueFrom" not in item:
                env[variable] = expand_refs(str(item.get("value", "")), env)
                continue
            source = item["valueFrom"] or {}
            if "fieldRef" in source:
                path = str(source["fieldRef"]["fieldPath"])
                env[variable] = field_ref(pod, path, f"env {variable}")
            else:
                value = self.sources.env_value(pod, variable, source)
                if value is not None:
                    env[variable] = value
        self._rewrite_network(pod, env)
        for variable, value in list(env.items()):
            env[variable] = local(value)
        env["TRAINYARD_METRICS_HOST"] = pod.pod_ip
        env["TRAINYARD_TERMINATION_LOG"] = str(termination_path)

        command = [str(part) for part in container.get("command") or []]
        if not command:
            raise ConfigError(
                f"container {name}: command is empty; the process runner has no image "
                "entrypoint to fall back on, so set command explicitly"
            )
        args = [str(part) for part in container.get("args") or []]
        argv = [local(expand_refs(part, env)) for part in command + args]
        resolved = shutil.which(argv[0], path=env["PATH"])
        if resolved is None:
            raise ConfigError(f"container {name}: command {argv[0]!r} is not on PATH ({venv})")
        argv[0] = resolved
        working_dir = container.get("workingDir")
        cwd = Path(local(str(working_dir))) if working_dir else pod.work_dir
        if not cwd.is_absolute() or (working_dir and str(cwd) == working_dir):
            # a workingDir inside the image: nothing local to map it to
            cwd = pod.work_dir
        # last, so a ConfigError above holds no device
        try:
            devices = self.gpus.allocate(pod.node_name, (pod.uid, name), gpu_request(container))
        except DeviceError as error:
            raise ConfigError(f"container {name}: {error}") from None
        env["CUDA_VISIBLE_DEVICES"] = visible_devices(devices)
        return LaunchPlan(
            argv=argv,
            env=env,
            cwd=cwd,
            log_path=pod.work_dir / f"{name}.log",
            termination_path=termination_path,
            fallback_to_logs=container.get("terminationMessagePolicy") == "FallbackToLogsOnError",
        )

    def _mounts(self, pod: PodHandle, container: dict[str, Any]) -> list[tuple[str, Path]]:
        volumes = {str(v["name"]): v for v in pod.pod["spec"].get("volumes") or []}
        filled = {p.name for p in (pod.work_dir / "volumes").glob("*")}
        mounts: list[tuple[str, Path]] = []
        for mount in container.get("volumeMounts") or []:
            volume_name = str(mount["name"])
            volume = volumes.get(volume_name)
            if volume is None:
                raise ConfigError(f"volumeMounts {volume_name}: no such volume in the pod")
            if "emptyDir" in volume:
                folder = pod.work_dir / "volumes" / volume_name
            elif "persistentVolumeClaim" in volume:
                claim = str(volume["persistentVolumeClaim"]["claimName"])
                folder = self.options.state_dir / "volumes" / "pvc" / pod.namespace / claim
            else:
                # secret, configMap, downwardAPI, projected (the ServiceAccount token): written
                # once per pod, like a kubelet's volume setup
                folder = pod.work_dir / "volumes" / volume_name
                if volume_name not in filled:
                    folder.mkdir(parents=True, exist_ok=True)
                    self.sources.fill_volume(pod, volume, folder)
                    filled.add(volume_name)
            sub_path = str(mount.get("subPath") or "")
            if sub_path:
                folder = folder / sub_path
            folder.mkdir(parents=True, exist_ok=True)
            mounts.append((str(mount["mountPath"]), folder))
        # longest mount path first, so /output/ckpt wins over /output
        return sorted(mounts, key=lambda item: len(item[0]), reverse=True)

    def _rewrite_network(self, pod: PodHandle, env: dict[str, str]) -> None:
        master = next((env[n] for n in MASTER_ADDR_NAMES if n in env), "")
        if master:
            restart = (pod.pod["metadata"].get("labels") or {}).get("trainyard.dev/restart", "")
            key = (pod.namespace, master, restart)
            if key not in self._ports:
                # free now, but the kernel may hand out a port of a job whose master has not
                # bound it yet: never give two jobs the same one
                taken = set(self._ports.values())
                port = free_port()
                while port in taken:
                    port = free_port()
                self._ports[key] = port
            for variable in MASTER_ADDR_NAMES:
                if variable in env:
                    env[variable] = "127.0.0.1"
            for variable in MASTER_PORT_NAMES:
                if variable in env:
                    env[variable] = str(self._ports[key])
        for variable, value in env.items():
            match = _POD_DNS.match(value)
            if match and variable not in MASTER_ADDR_NAMES:
                ip = self._pod_ip(match.group("ns"), match.group("pod"))
                if ip:
                    env[variable] = ip

    def _pod_ip(self, namespace: str, name: str) -> str:
        known = self._ips.get((namespace, name))
        if known:
            return known
        try:
            pod = self.sources.core().read_namespaced_pod(name, namespace, _request_timeout=5)
            return str((pod.status and pod.status.pod_ip) or "")
        except Exception as error:  # a name that does not resolve stays as written
            log.info("no IP for pod %s/%s: %s", namespace, name, error)
            return ""

    # -- processes ------------------------------------------------------------------------

    def _launch(self, pod: PodHandle, name: str, plan: LaunchPlan) -> Process:
        plan.termination_path.write_bytes(b"")
        popen = subprocess.Popen(
            tied_to_agent(plan.argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=plan.env,
            cwd=plan.cwd,
            start_new_session=True,  # its own process group: stop() signals the whole tree
        )
        assert popen.stdout is not None
        # a runtime's job: copy the output into the log, stamping each line's arrival
        pump = threading.Thread(
            target=container_log.pump,
            args=(popen.stdout, plan.log_path),
            name=f"log-{pod.name}-{name}",
            daemon=True,
        )
        pump.start()
        (pod.work_dir / f"{name}.pid").write_text(f"{popen.pid}\n")
        log.info(
            "pod %s/%s container %s: pid %d, log %s",
            pod.namespace,
            pod.name,
            name,
            popen.pid,
            plan.log_path,
        )
        return Process(
            name,
            popen,
            plan.log_path,
            plan.termination_path,
            plan.fallback_to_logs,
            _now(),
            pump=pump,
            holder=(pod.uid, name),
        )

    def _state(self, process: Process) -> ContainerState:
        if process.error is not None:
            return process.error
        if process.final is not None:
            return process.final
        assert process.popen is not None
        returncode = process.popen.poll()
        if returncode is None:
            return ContainerState("running", started_at=process.started_at)
        code = exit_code_of(returncode)
        self.gpus.release(process.holder)
        if process.pump is not None:
            # the last words may still be in the pipe (a child that keeps it open past the
            # leader's exit only delays this)
            process.pump.join(timeout=PUMP_DRAIN_SECONDS)
        process.final = ContainerState(
            "terminated",
            reason="Completed" if code == 0 else "Error",
            message=read_termination_message(
                process.termination_path,
                process.log_path,
                fallback=process.fallback_to_logs,
                failed=code != 0,
            ),
            exit_code=code,
            started_at=process.started_at,
            finished_at=_now(),
        )
        return process.final

    @staticmethod
    def _reap(running: list[subprocess.Popen[bytes]], grace: float, emptydirs: Path) -> None:
        for popen in running:
            try:
                popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(popen.pid, signal.SIGKILL)
                popen.wait()
            # the leader is gone; children that stayed in its group get the same end
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(popen.pid, signal.SIGKILL)
        shutil.rmtree(emptydirs, ignore_errors=True)
