"""Where the control-plane binaries live, and a clear error when they are missing.

deploy/local/build-binaries.sh builds kube-apiserver, kube-controller-manager, kube-scheduler,
kubectl, etcd and helm at the versions pinned in deploy/local/versions.env into a cache keyed
by those versions. This module computes that directory the same way the script does (so that
starting a cluster never triggers a build by surprise), and `cluster.py`, `cli.py` and the
pytest plugin ask it for paths. `TRAINYARD_BIN_DIR` points somewhere else entirely.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

#: deploy/local/, which holds versions.env and build-binaries.sh next to this package.
LOCAL_DIR = Path(__file__).resolve().parent.parent
VERSIONS_FILE = LOCAL_DIR / "versions.env"
BUILD_SCRIPT = LOCAL_DIR / "build-binaries.sh"

#: What a cluster needs to start, and what tests call (kubectl, helm).
REQUIRED = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
ALL = (*REQUIRED, "helm")


class BinariesMissingError(RuntimeError):
    """The cache holds none or only some of the binaries; the message says how to build them."""


def versions() -> dict[str, str]:
    """The pinned versions from versions.env (KUBE_VERSION, ETCD_VERSION, HELM_VERSION)."""
    pinned: dict[str, str] = {}
    for raw in VERSIONS_FILE.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            pinned[key.strip()] = value.strip().strip("\"'")
    for key in ("KUBE_VERSION", "ETCD_VERSION", "HELM_VERSION"):
        if key not in pinned:
            raise ValueError(f"{VERSIONS_FILE}: {key} is not set")
    return pinned


def kube_version() -> str:
    """The Kubernetes version the API server reports in /version (e.g. v1.37.2)."""
    return versions()["KUBE_VERSION"]


def default_bin_dir() -> Path:
    """The cache directory build-binaries.sh writes to (same formula as the script)."""
    pinned = versions()
    cache = Path(os.environ.get("TRAINYARD_CACHE") or Path.home() / ".cache" / "trainyard")
    key = f"bin-{pinned['KUBE_VERSION']}-etcd{pinned['ETCD_VERSION']}-helm{pinned['HELM_VERSION']}"
    return cache / key


def bin_dir(*, build: bool = False, need: tuple[str, ...] = REQUIRED) -> Path:
    """The directory holding the binaries named in `need`.

    With `build=True` a missing binary is built by build-binaries.sh (its progress goes to
    stderr; a cold build takes tens of minutes). Otherwise a missing binary raises
    BinariesMissingError naming it and the command that builds it.
    """
    override = os.environ.get("TRAINYARD_BIN_DIR")
    directory = Path(override) if override else default_bin_dir()
    missing = [name for name in need if not os.access(directory / name, os.X_OK)]
    if missing and build and not override:
        subprocess.run([str(BUILD_SCRIPT), *missing], check=True, stdout=subprocess.DEVNULL)
        missing = [name for name in need if not os.access(directory / name, os.X_OK)]
    if missing:
        where = "TRAINYARD_BIN_DIR" if override else "the binary cache"
        raise BinariesMissingError(
            f"{where} {directory} lacks {', '.join(missing)}: run `make local-binaries` "
            f"(deploy/local/build-binaries.sh) first"
        )
    return directory


def binary(name: str) -> Path:
    """Path of one binary (kubectl, helm, ...), checked to exist."""
    return bin_dir(need=(name,)) / name
