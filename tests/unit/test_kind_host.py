"""The host-specific parts of the kind path: the runc capability wrapper and the cluster
config patch for cgroup v1 hosts (deploy/kind/host/, trainyard_local/kind.py)."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
from pathlib import Path
from types import ModuleType

import yaml

from trainyard_local.kind import CLUSTER_CONFIG, effective_config

WRAPPER = Path(__file__).resolve().parents[2] / "deploy/kind/host/runc-caps-wrapper"


def load_wrapper() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("runc_caps_wrapper", str(WRAPPER))
    spec = importlib.util.spec_from_loader("runc_caps_wrapper", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_the_wrapper_keeps_exactly_the_capabilities_the_host_can_give(tmp_path: Path) -> None:
    wrapper = load_wrapper()
    every = ["CAP_" + name for name in wrapper.CAPS]
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    config = {
        "process": {
            "args": ["sh"],
            "capabilities": {k: every for k in ("bounding", "effective", "permitted")},
        }
    }
    (bundle / "config.json").write_text(json.dumps(config))
    wrapper.trim(str(bundle / "config.json"), "process")
    caps = json.loads((bundle / "config.json").read_text())["process"]["capabilities"]
    allowed = wrapper.bounding_set()
    for kept in caps.values():
        assert kept == [name for name in every if name in allowed]
    # what an `exec --process` file holds is trimmed the same way
    process = tmp_path / "process.json"
    process.write_text(json.dumps({"args": ["sh"], "capabilities": {"bounding": every}}))
    wrapper.trim(str(process), None)
    assert json.loads(process.read_text())["capabilities"]["bounding"] == [
        name for name in every if name in allowed
    ]


def test_the_wrapper_finds_the_bundle_and_process_options() -> None:
    wrapper = load_wrapper()
    assert wrapper.option(["--root", "/r", "create", "--bundle", "/b", "id"], "--bundle") == "/b"
    assert wrapper.option(["exec", "--process=/p.json", "id"], "--process") == "/p.json"
    assert wrapper.option(["start", "id"], "--bundle") is None


def test_cgroup_v1_hosts_get_the_kubelet_patch_and_others_the_config_unchanged() -> None:
    base = yaml.safe_load(CLUSTER_CONFIG.read_text())
    assert effective_config(base, cgroup_v1=False) == base
    patched = effective_config(base, cgroup_v1=True)
    patches = [yaml.safe_load(p) for p in patched["kubeadmConfigPatches"]]  # type: ignore[union-attr]
    assert {"kind": "KubeletConfiguration", "failCgroupV1": False} in patches
    assert patched["nodes"] == base["nodes"]
