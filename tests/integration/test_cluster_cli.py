"""`python -m trainyard_local up|status|down` from a shell, as `make cluster-up` runs it: a
second cluster next to the session's, reachable with the pinned kubectl, gone (every
process) after `down`, and back with its stored objects and URL after the next `up`."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from trainyard_local import binaries, processes
from trainyard_local.cluster import LocalCluster

pytestmark = pytest.mark.integration


def cli(*args: str, home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trainyard_local", *args],
        env={**os.environ, "TRAINYARD_HOME": str(home), **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def kubectl(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binaries.binary("kubectl")), "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def test_up_get_nodes_down_leaves_no_process(tmp_path: Path, local_cluster: LocalCluster) -> None:
    name = f"cli-{secrets.token_hex(3)}"
    home = tmp_path / "home"
    up = cli("up", "--name", name, "--cpu-nodes", "1", "--gpu-nodes", "1", home=home)
    state = home / "clusters" / name
    try:
        assert up.returncode == 0, up.stderr
        match = re.search(r"^kubeconfig: (.+)$", up.stdout, re.MULTILINE)
        assert match, up.stdout
        kubeconfig = Path(match.group(1))
        assert kubeconfig == state / "kubeconfig"
        assert re.search(r"start-up took \d+\.\d s", up.stdout)

        nodes = kubectl(kubeconfig, "get", "nodes")
        assert f"{name}-cpu-0" in nodes.stdout and f"{name}-gpu-0" in nodes.stdout
        assert " Ready " in nodes.stdout

        again = cli("up", "--name", name, home=home)
        assert again.returncode == 0 and "already up" in again.stdout
        assert cli("status", "--name", name, home=home).returncode == 0
        kubectl(kubeconfig, "create", "configmap", "keep-me", "--from-literal=k=v")
        tracked = [
            processes.Tracked(p["component"], p["pid"], p["match"])
            for p in json.loads((state / "pids.json").read_text())["processes"]
        ]
        assert {t.component for t in tracked} == {
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "agent",
        }
    finally:
        down = cli("down", "--name", name, home=home)
    assert down.returncode == 0, down.stderr
    assert [t.component for t in tracked if processes.is_running(t)] == []
    assert cli("status", "--name", name, home=home).returncode == 1
    assert (state / "logs" / "kube-apiserver.log").stat().st_size > 0
    # the session's cluster ran side by side and is untouched
    assert local_cluster.is_up()
    with local_cluster.http() as http:
        assert http.get("/readyz").status_code == 200

    # up again on the kept state: same URL, and what was stored is still there
    try:
        restarted = cli("up", "--name", name, "--cpu-nodes", "1", "--gpu-nodes", "1", home=home)
        assert restarted.returncode == 0, restarted.stderr
        assert up.stdout.splitlines()[0] == restarted.stdout.splitlines()[0]  # "... up at URL"
        kept = kubectl(kubeconfig, "get", "configmap", "keep-me", "-o", "jsonpath={.data.k}")
        assert kept.stdout == "v"
    finally:
        assert cli("down", "--name", name, home=home).returncode == 0


def test_bad_options_name_the_option(tmp_path: Path) -> None:
    bad_name = cli("up", "--name", "Not_A_Label", home=tmp_path)
    assert bad_name.returncode == 1
    assert "--name 'Not_A_Label'" in bad_name.stderr
    no_nodes = cli("up", "--name", "x", "--cpu-nodes", "0", "--gpu-nodes", "0", home=tmp_path)
    assert no_nodes.returncode == 1 and "at least one node" in no_nodes.stderr


def test_missing_binaries_say_how_to_build_them(tmp_path: Path) -> None:
    result = cli("up", "--name", "nobin", home=tmp_path, TRAINYARD_BIN_DIR=str(tmp_path / "none"))
    assert result.returncode == 1
    assert "kube-apiserver" in result.stderr and "make local-binaries" in result.stderr
