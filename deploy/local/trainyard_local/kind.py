"""The kind path: Trainyard's images and operator on a real kind cluster, as users run them.

`make demo-kind` and the kind end-to-end tests (tests/kind/) both go through `KindPath`:

    host set-up (deploy/kind/host/setup.sh: dockerd, the runc wrapper, only where needed)
    -> the node image (deploy/kind/node-image/build.sh: kindest/node where it can be pulled,
       else assembled here from Debian packages and Go modules, cached)
    -> both images (deploy/images/build.sh: the Dockerfiles as users build them)
    -> kind create cluster (deploy/kind/cluster.yaml; on cgroup v1 hosts a kubelet patch)
    -> kind load: the operator image everywhere; the large trainer image streamed only into
       the nodes that run workers, one copy of its layers per node (`load_large_image`)
    -> helm upgrade --install: the operator as a pod under the chart's RBAC (in-cluster config)

The shell scripts do the building and caching; this module orders them, runs kind and helm,
and says which step failed with the end of its output. Everything else about following a job
(the live view, the results table) is `demo.py`'s, shared with the embedded demo.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from trainyard_local import binaries

REPO = Path(__file__).resolve().parents[3]
KIND_DIR = REPO / "deploy" / "kind"
CLUSTER_CONFIG = KIND_DIR / "cluster.yaml"
CHART = REPO / "deploy" / "helm" / "trainyard"
#: nodes of deploy/kind/cluster.yaml that run workers carry this label; only they get the
#: trainer image (several GB with PyPI's CUDA torch)
WORKER_POOL_LABEL = "trainyard.dev/pool"


class KindError(RuntimeError):
    """A step of the kind path failed; the message names it and ends with its output."""


def state_home() -> Path:
    return Path(os.environ.get("TRAINYARD_HOME") or REPO / ".trainyard") / "kind"


def run(
    argv: list[str], *, step: str, timeout: float = 3600, env: dict[str, str] | None = None
) -> str:
    """Run one step; its stderr streams to ours (progress of long builds), stdout is returned."""
    merged = {**os.environ, **(env or {})}
    try:
        done = subprocess.run(
            argv, stdout=subprocess.PIPE, text=True, timeout=timeout, check=False, env=merged
        )
    except subprocess.TimeoutExpired as error:
        raise KindError(f"{step}: no result after {timeout:.0f} s ({' '.join(argv)})") from error
    if done.returncode != 0:
        tail = "\n".join(done.stdout.splitlines()[-20:])
        raise KindError(f"{step} failed (exit {done.returncode}): {' '.join(argv)}\n{tail}")
    return done.stdout


def cgroup_v1_host() -> bool:
    """kubelet >= 1.35 refuses cgroup v1 unless told otherwise; kind nodes share the host's."""
    return not Path("/sys/fs/cgroup/cgroup.controllers").exists()


def effective_config(base: dict[str, object], *, cgroup_v1: bool) -> dict[str, object]:
    """deploy/kind/cluster.yaml plus what this host needs (nothing on a cgroup v2 host)."""
    config = dict(base)
    if cgroup_v1:
        patches = list(config.get("kubeadmConfigPatches") or [])  # type: ignore[call-overload]
        patches.append("kind: KubeletConfiguration\nfailCgroupV1: false\n")
        config["kubeadmConfigPatches"] = patches
    return config


def node_image_id(node: str, image: str) -> str | None:
    """The ID (config digest) of `image` in a kind node's CRI store, None when absent."""
    done = subprocess.run(
        ["docker", "exec", node, "crictl", "inspecti", "--output=json", image],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        return None
    found = json.loads(done.stdout).get("status", {}).get("id")
    return found if isinstance(found, str) else None


def node_snapshotter(node: str) -> str:
    """The snapshotter the node's CRI plugin unpacks images with (what kubelet will look in)."""
    dumped = run(["docker", "exec", node, "containerd", "config", "dump"], step="containerd config")
    return snapshotter_of(tomllib.loads(dumped))


def snapshotter_of(config: dict[str, Any]) -> str:
    """containerd 2 keeps it in the CRI images plugin, 1.x in the CRI plugin's containerd table."""
    plugins = config.get("plugins", {})
    for path in (("io.containerd.cri.v1.images",), ("io.containerd.grpc.v1.cri", "containerd")):
        table: Any = plugins
        for key in path:
            table = table.get(key, {}) if isinstance(table, dict) else {}
        if isinstance(table, dict) and isinstance(table.get("snapshotter"), str):
            return str(table["snapshotter"])
    return "overlayfs"


@dataclass
class KindPath:
    """One kind cluster with Trainyard installed; every method is safe to call again."""

    name: str = "trainyard"
    operator_image: str = "trainyard-operator:0.1.0"
    trainer_image: str = "trainyard-trainer:0.1.0"
    torch_variant: str = "auto"
    release: str = "trainyard"
    namespace: str = "trainyard-system"
    console: Console = field(default_factory=Console)
    home: Path = field(default_factory=state_home)

    @property
    def kubeconfig(self) -> Path:
        return self.home / self.name / "kubeconfig"

    def _step(self, label: str, argv: list[str], env: dict[str, str] | None = None) -> str:
        began = time.monotonic()
        self.console.log(f"{label} …")
        out = run(argv, step=label, env=env)
        self.console.log(f"{label}: {time.monotonic() - began:.0f} s")
        return out

    # -- building -------------------------------------------------------------------------
    def prepare_host(self) -> None:
        self._step("host set-up", [str(KIND_DIR / "host" / "setup.sh")])

    @cached_property
    def kind_binary(self) -> str:
        """kind on PATH, else built once into the cache (deploy/kind/kind-binary.sh)."""
        return run([str(KIND_DIR / "kind-binary.sh")], step="kind binary").strip().splitlines()[-1]

    def node_image(self) -> str:
        out = self._step("node image", [str(KIND_DIR / "node-image" / "build.sh")])
        return out.strip().splitlines()[-1]

    def build_images(self) -> None:
        self._step(
            "images",
            [str(REPO / "deploy" / "images" / "build.sh")],
            env={
                "OPERATOR_IMAGE": self.operator_image,
                "TRAINER_IMAGE": self.trainer_image,
                "TORCH_VARIANT": self.torch_variant,
            },
        )

    # -- the cluster ----------------------------------------------------------------------
    def exists(self) -> bool:
        out = run([self.kind_binary, "get", "clusters"], step="kind get clusters")
        return self.name in out.split()

    def create(self, node_image: str) -> None:
        if self.exists():
            self.console.log(f"kind cluster {self.name}: exists, reused")
            self._write_kubeconfig()
            return
        base = yaml.safe_load(CLUSTER_CONFIG.read_text())
        config = effective_config(base, cgroup_v1=cgroup_v1_host())
        self.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
            yaml.safe_dump(config, handle)
        try:
            self._step(
                "kind create cluster",
                [
                    self.kind_binary,
                    "create",
                    "cluster",
                    f"--name={self.name}",
                    f"--config={handle.name}",
                    f"--image={node_image}",
                    f"--kubeconfig={self.kubeconfig}",
                    "--wait=5m",
                    # keep failed nodes for `docker logs` / `kind export logs` when debugging
                    *(["--retain"] if os.environ.get("TRAINYARD_KIND_RETAIN") else []),
                ],
            )
        finally:
            os.unlink(handle.name)

    def _write_kubeconfig(self) -> None:
        self.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
        out = run(
            [self.kind_binary, "get", "kubeconfig", f"--name={self.name}"],
            step="kind get kubeconfig",
        )
        self.kubeconfig.write_text(out)
        self.kubeconfig.chmod(0o600)

    def nodes(self, *, workers_only: bool = False) -> list[str]:
        selector = ["-l", WORKER_POOL_LABEL] if workers_only else []
        out = run(
            [
                str(binaries.binary("kubectl")),
                f"--kubeconfig={self.kubeconfig}",
                "get",
                "nodes",
                *selector,
                "-o",
                "name",
            ],
            step="kubectl get nodes",
        )
        return [line.removeprefix("node/") for line in out.split()]

    def load_images(self) -> None:
        kind = self.kind_binary
        self._step(
            "kind load (operator image, every node)",
            [kind, "load", "docker-image", f"--name={self.name}", self.operator_image],
        )
        for node in self.nodes(workers_only=True):
            self.load_large_image(node, self.trainer_image)

    def load_large_image(self, node: str, image: str) -> None:
        """Stream `image` into one node's containerd, keeping one copy of its layers there.

        `kind load docker-image` first saves the image to a file on the host, and each node
        then keeps the imported layer blobs beside their unpacked snapshots: for the trainer
        image (6 GB with PyPI's CUDA torch) that is 6 GB on the host plus 12 GB per node, more
        than a CI machine's disk holds. Here `docker save` is piped straight into the node's
        `ctr images import --local --discard-unpacked-layers` (the flag needs --local), so
        containerd drops each blob once it is unpacked: 6 GB per node, nothing on the host.
        A node that already has this image ID is skipped, as kind does.
        """
        image_id = run(
            ["docker", "image", "inspect", "--format={{.Id}}", image], step="docker image inspect"
        ).strip()
        if node_image_id(node, image) == image_id:
            self.console.log(f"{image} on {node}: already loaded")
            return
        label = f"load {image} into {node}"
        began = time.monotonic()
        self.console.log(f"{label} …")
        importer = [
            "docker", "exec", "--privileged", "-i", node,
            "ctr", "--namespace=k8s.io", "images", "import", "--all-platforms", "--digests",
            f"--snapshotter={node_snapshotter(node)}", "--local", "--discard-unpacked-layers", "-",
        ]  # fmt: skip
        with subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE) as save:
            done = subprocess.run(
                importer, stdin=save.stdout, capture_output=True, text=True, check=False
            )
            assert save.stdout is not None
            save.stdout.close()  # a failed import must not leave `docker save` blocked
        if save.returncode != 0 or done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-20:])
            raise KindError(
                f"{label} failed (docker save exit {save.returncode}, ctr import exit "
                f"{done.returncode})\n{tail}"
            )
        self.console.log(f"{label}: {time.monotonic() - began:.0f} s")

    def install_chart(self, *extra: str) -> str:
        repository, _, tag = self.operator_image.rpartition(":")
        return self._step(
            "helm upgrade --install",
            [
                str(binaries.binary("helm")),
                f"--kubeconfig={self.kubeconfig}",
                "upgrade",
                "--install",
                self.release,
                str(CHART),
                f"--namespace={self.namespace}",
                "--create-namespace",
                "--wait",
                "--timeout=5m",
                f"--set=image.repository={repository}",
                f"--set=image.tag={tag}",
                "--set=image.pullPolicy=IfNotPresent",
                f"--set=operator.trainerImage={self.trainer_image}",
                *extra,
            ],
        )

    def uninstall_chart(self) -> None:
        run(
            [
                str(binaries.binary("helm")),
                f"--kubeconfig={self.kubeconfig}",
                "uninstall",
                self.release,
                f"--namespace={self.namespace}",
                "--wait",
                "--timeout=5m",
            ],
            step="helm uninstall",
        )

    def up(self, *chart_values: str) -> None:
        """Everything `make demo-kind` needs before it applies a job."""
        self.prepare_host()
        node_image = self.node_image()
        self.build_images()
        self.create(node_image)
        self.load_images()
        self.install_chart(*chart_values)

    def delete(self) -> None:
        if shutil.which("docker") is None:
            return
        # node containers outlive a stopped daemon: start it (where it is not running) to ask
        self.prepare_host()
        run(
            [self.kind_binary, "delete", "cluster", f"--name={self.name}"],
            step="kind delete cluster",
        )
        self.kubeconfig.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trainyard_local.kind",
        description="Trainyard on a kind cluster: images, cluster, chart (docs/kind.md).",
    )
    parser.add_argument("command", choices=["up", "demo", "down", "kubeconfig"])
    parser.add_argument("--name", default=os.environ.get("KIND_CLUSTER", "trainyard"))
    args = parser.parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 120)
    path = KindPath(
        name=args.name,
        operator_image=os.environ.get("OPERATOR_IMAGE", "trainyard-operator:0.1.0"),
        trainer_image=os.environ.get("TRAINER_IMAGE", "trainyard-trainer:0.1.0"),
        torch_variant=os.environ.get("TORCH_VARIANT", "auto"),
        console=console,
    )
    try:
        if args.command == "down":
            path.delete()
            return 0
        if args.command == "kubeconfig":
            print(path.kubeconfig)
            return 0
        began = time.monotonic()
        # the demo's job trains in seconds: read worker 0's progress every second, as the
        # embedded demo does, so the live view moves (the chart's default is 5 s)
        live = (
            [
                "--set=operator.extraEnv[0].name=TRAINYARD_PROGRESS_INTERVAL_SECONDS",
                "--set-string=operator.extraEnv[0].value=1",
            ]
            if args.command == "demo"
            else []
        )
        path.up(*live)
        if args.command == "up":
            console.log(f"kubeconfig: {path.kubeconfig}")
            return 0
        from trainyard_local.demo import follow_anywhere

        code = follow_anywhere(
            path.kubeconfig, "trainyard-demo", REPO / "examples" / "digits-ddp.yaml", console
        )
        console.print(
            f"[bold]demo-kind wall time (all steps): {time.monotonic() - began:.1f} s[/bold]"
        )
        return code
    except KindError as error:
        console.print(f"[red]kind path failed:[/red] {error}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
