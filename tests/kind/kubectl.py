"""The pinned kubectl bound to one kubeconfig, for the kind suite."""

from __future__ import annotations

import subprocess
from pathlib import Path

from trainyard_local import binaries


class Kubectl:
    """The pinned kubectl against the kind cluster; failures raise with kubectl's output."""

    def __init__(self, kubeconfig: Path) -> None:
        self.argv = [str(binaries.binary("kubectl")), f"--kubeconfig={kubeconfig}"]

    def __call__(
        self, *args: str, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*self.argv, *args], capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {done.stdout}{done.stderr}")
        return done
