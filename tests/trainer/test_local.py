"""`trainyard-train --config job.yaml` runs a TrainingJob manifest on this machine."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(240)

MANIFEST = """\
apiVersion: trainyard.dev/v1alpha1
kind: TrainingJob
metadata: {name: digits-local}
spec:
  workers: 2
  trainer: {model: mlp, dataset: digits, epochs: 4, batchSize: 32}
  compression:
    - quantize: {method: dynamic}
  checkpoint: {everyEpochs: 2, keep: 1}
"""


def trainyard_train() -> str:
    path = shutil.which("trainyard-train") or str(
        Path(__file__).parents[2] / ".venv/bin/trainyard-train"
    )
    return path


def test_manifest_runs_with_workers_as_processes(tmp_path: Path) -> None:
    manifest = tmp_path / "job.yaml"
    manifest.write_text(MANIFEST)
    out = tmp_path / "out"
    proc = subprocess.run(
        [trainyard_train(), "--config", str(manifest), "--output", str(out)],
        capture_output=True,
        check=False,
        text=True,
        timeout=200,
        env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 process(es)" in proc.stdout
    results = json.loads((out / "results.json").read_text())
    assert results["job"] == "digits-local" and results["worldSize"] == 2
    assert [s["name"] for s in results["stages"]] == ["train", "quantize"]
    assert "quantize  accuracy" in proc.stdout  # the closing per-stage table
    assert [p.name[:21] for p in (out / "checkpoints").iterdir()] == ["ckpt-e00004-s0000000-"]
    assert json.loads((out / "termination-log").read_text())["accuracy"] == pytest.approx(
        results["accuracy"], abs=1e-4
    )


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ("trainer: {epochs: 0}", "trainer.epochs"),
        ("trainer: {model: vit}", "trainer.model"),
        ("workers: 0", "spec.workers"),
        ("command: [python, train.py]", "spec.command"),
    ],
)
def test_bad_manifest_exits_2_naming_the_field(tmp_path: Path, spec: str, field: str) -> None:
    manifest = tmp_path / "job.yaml"
    manifest.write_text(
        "apiVersion: trainyard.dev/v1alpha1\nkind: TrainingJob\nmetadata: {name: bad}\n"
        f"spec:\n  {spec}\n"
    )
    proc = subprocess.run(
        [trainyard_train(), "--config", str(manifest), "--output", str(tmp_path / "out")],
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
    assert f"{field}:" in proc.stderr
    assert not (tmp_path / "out").exists()
