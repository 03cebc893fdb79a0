"""The trainer image's Dockerfile (it cannot be built here: no registry to pull a base)."""

from __future__ import annotations

import re
from pathlib import Path

import torch

IMAGE = Path(__file__).parents[2] / "trainer-image"


def test_runs_as_numeric_non_root_user() -> None:
    users = re.findall(r"^USER\s+(\S+)", (IMAGE / "Dockerfile").read_text(), re.M)
    uid = users[-1].split(":")[0]
    # runAsNonRoot can only be verified by the kubelet for a numeric uid.
    assert uid.isdigit() and int(uid) != 0


def test_torch_pinned_to_the_tested_version_cuda_by_default_cpu_by_argument() -> None:
    text = (IMAGE / "Dockerfile").read_text()
    assert re.search(r"^ARG TORCH_VARIANT=cuda$", text, re.M)
    pinned = re.search(r"^ARG TORCH_VERSION=(\S+)$", text, re.M)
    assert pinned is not None and pinned.group(1) == torch.__version__.split("+")[0]
    cpu_branch = re.search(r"cpu\)(.*?);;", text, re.S)
    assert cpu_branch is not None
    assert "--index-url https://download.pytorch.org/whl/cpu" in cpu_branch.group(1)


def test_every_dependency_is_pinned() -> None:
    lines = [
        line
        for line in (IMAGE / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines and all(re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][0-9A-Za-z.]*", ln) for ln in lines)
