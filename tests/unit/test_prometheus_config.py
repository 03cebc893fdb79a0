"""The demo's Prometheus config and trainer targets (`trainyard_local.prometheus`).

`promtool` (Debian's prometheus package, `make prometheus`) judges the generated config, so a
key Prometheus does not know fails here rather than in the middle of `make demo`; the
file_sd target list is what Prometheus scrapes: running trainer pods at their metrics port,
labelled like the chart's PodMonitor labels them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from trainyard_local.prometheus import scrape_config, trainer_targets, write_targets


def pod(name: str, phase: str, ip: str, index: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "team",
            "labels": {"trainyard.dev/job-name": "digits", "trainyard.dev/worker-index": index},
        },
        "spec": {
            "containers": [
                {"name": "trainer", "ports": [{"name": "metrics", "containerPort": 9400}]}
            ]
        },
        "status": {"phase": phase, "podIP": ip},
    }


def test_running_trainer_pods_become_labelled_targets() -> None:
    groups = trainer_targets(
        [
            pod("digits-worker-0", "Running", "127.2.0.1", "0"),
            pod("digits-worker-1", "Running", "127.2.0.2", "1"),
            pod("old-worker-0", "Succeeded", "127.2.0.3", "0"),
            pod("new-worker-0", "Pending", "", "0"),
        ]
    )
    assert [g["targets"] for g in groups] == [["127.2.0.1:9400"], ["127.2.0.2:9400"]]
    assert groups[1]["labels"] == {
        "namespace": "team",
        "pod": "digits-worker-1",
        "trainyard_dev_job_name": "digits",
        "trainyard_dev_worker_index": "1",
    }


def test_generated_config_passes_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    if not Path(promtool).exists():
        pytest.fail("promtool is missing: run `make prometheus`", pytrace=False)
    targets = tmp_path / "trainers.json"
    write_targets(targets, trainer_targets([pod("w-0", "Running", "127.2.0.1", "0")]))
    assert json.loads(targets.read_text())[0]["targets"] == ["127.2.0.1:9400"]
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            scrape_config(operator_target="127.0.0.1:8080", trainer_targets_file=targets)
        )
    )
    done = subprocess.run(
        [promtool, "check", "config", str(config)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
