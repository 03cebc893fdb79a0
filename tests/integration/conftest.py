"""Fixtures of the integration tests that need the TrainingJob API itself.

    crd_installed   session: the CRD from crds/ applied (server-side, so re-applying a
                    newer copy updates it) and Established; returns the CRD's name. Every
                    test that creates TrainingJobs depends on it; it is idempotent, so the
                    operator fixtures (operator_fixtures.py) and the e2e suites share one.

The cluster itself comes from trainyard_local's pytest plugin (tests/conftest.py).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from trainyard_local import binaries
from trainyard_operator.api.crdgen import CRD_FILE, CRD_NAME

ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = ROOT / "crds" / CRD_FILE


def install_crd(kubeconfig: Path, path: Path = CRD_PATH) -> str:
    """Apply the CRD and wait until the API server serves it; returns its name."""
    try:
        kubectl = [str(binaries.binary("kubectl")), f"--kubeconfig={kubeconfig}"]
    except binaries.BinariesMissingError as error:
        pytest.fail(str(error), pytrace=False)
    for args in (
        ["apply", "--server-side", "--force-conflicts", "-f", str(path)],
        ["wait", "--for=condition=Established", "--timeout=60s", f"crd/{CRD_NAME}"],
    ):
        done = subprocess.run(
            [*kubectl, *args], capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            pytest.fail(f"kubectl {' '.join(args)}: {done.stderr}", pytrace=False)
    return CRD_NAME


@pytest.fixture(scope="session")
def crd_installed(kubeconfig: Path) -> str:
    """The TrainingJob CRD, established in the session's cluster."""
    return install_crd(kubeconfig)
