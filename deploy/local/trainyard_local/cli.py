"""Command line of the local cluster: `python -m trainyard_local up|down|status`.

`make cluster-up` / `make cluster-down` call it. A thin layer over `cluster.LocalCluster`:
it parses options, prints progress and the kubeconfig path, and turns the errors a user can
fix (missing binaries, bad option values, a component that would not start) into one clear
message and exit status 1 instead of a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from trainyard_local.binaries import BinariesMissingError
from trainyard_local.cluster import COMPONENTS, ClusterStartError, LocalCluster
from trainyard_local.runners import RUNNERS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainyard_local",
        description="The embedded local Kubernetes cluster (real control plane, fake nodes).",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--name", default="trainyard", help="cluster name (default trainyard)")
        sub.add_argument(
            "--state-dir",
            type=Path,
            default=None,
            help="state directory (default $TRAINYARD_HOME/clusters/<name>)",
        )

    up = commands.add_parser("up", help="start the cluster (no-op when it is already up)")
    common(up)
    up.add_argument("--cpu-nodes", type=int, default=1, metavar="N")
    up.add_argument("--gpu-nodes", type=int, default=1, metavar="M")
    up.add_argument("--gpus-per-node", type=int, default=8, metavar="K")
    up.add_argument("--agent", choices=sorted(RUNNERS), default="fake", help="node runner")
    common(commands.add_parser("down", help="stop every process of the cluster (keeps state)"))
    common(commands.add_parser("status", help="show which components run"))
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        sys.exit(_run(args))
    except (BinariesMissingError, ClusterStartError, ValueError) as error:
        print(f"trainyard-local: {error}", file=sys.stderr)
        sys.exit(1)


def _say(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


def _run(args: argparse.Namespace) -> int:
    if args.command == "up":
        cluster = LocalCluster(
            args.name,
            args.state_dir,
            cpu_nodes=args.cpu_nodes,
            gpu_nodes=args.gpu_nodes,
            gpus_per_node=args.gpus_per_node,
            agent=args.agent,
            progress=_say,
        )
        if not cluster.start():
            print(f"cluster {cluster.name!r} is already up ({cluster.server})")
            print(f"kubeconfig: {cluster.kubeconfig}")
            return 0
        print(f"cluster {cluster.name!r} is up at {cluster.server}")
        print(f"kubeconfig: {cluster.kubeconfig}")
        print(f"start-up took {cluster.startup_seconds:.1f} s")
        print(f"logs: {cluster.logs_dir}/")
        print(f"try: kubectl --kubeconfig {cluster.kubeconfig} get nodes")
        return 0
    cluster = LocalCluster(args.name, args.state_dir, cpu_nodes=1, gpu_nodes=0)
    if args.command == "down":
        stopped = cluster.stop()
        if stopped:
            print(f"cluster {cluster.name!r}: stopped {', '.join(stopped)}")
        else:
            print(f"cluster {cluster.name!r}: nothing was running")
        if cluster.state_dir.exists():
            print(f"kept: {cluster.state_dir} (logs, certificates, etcd data)")
        return 0
    state = cluster.status()
    for component in COMPONENTS:
        mark = "running" if state.get(component) else "stopped"
        print(f"{component:26} {mark}")
    if cluster.is_up():
        print(f"server: {cluster.server}")
        print(f"kubeconfig: {cluster.kubeconfig}")
        return 0
    return 1
