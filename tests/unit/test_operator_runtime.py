"""The operator's settings and metrics bookkeeping, without a cluster."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from prometheus_client import generate_latest

from trainyard_operator.api import TrainingJobStatus
from trainyard_operator.handlers.worker import _patch
from trainyard_operator.metrics import OperatorMetrics
from trainyard_operator.settings import OperatorSettings


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAINYARD_NAMESPACES", "team-a, team-b,")
    monkeypatch.setenv("TRAINYARD_OPERATOR_METRICS_PORT", "9090")
    monkeypatch.setenv("TRAINYARD_LOG_LEVEL", "debug")
    settings = OperatorSettings()
    assert settings.namespaces == ["team-a", "team-b"]
    assert settings.operator_metrics_port == 9090
    assert settings.operator_health_port == 8081
    assert settings.log_level == "DEBUG"


def test_a_bad_setting_stops_the_operator_naming_the_variable() -> None:
    env = {**os.environ, "TRAINYARD_OPERATOR_HEALTH_PORT": "70000"}
    done = subprocess.run(
        [sys.executable, "-m", "trainyard_operator"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "TRAINYARD_OPERATOR_HEALTH_PORT='70000'" in done.stderr
    assert "less than or equal to 65535" in done.stderr


def test_phase_gauge_moves_jobs_and_forgets_deleted_ones() -> None:
    metrics = OperatorMetrics()
    metrics.set_phase("ns", "a", "Pending")
    metrics.set_phase("ns", "a", "Running")
    metrics.set_phase("ns", "b", "Running")
    metrics.set_progress("ns", "a", 40, 0.5)
    text = generate_latest(metrics.registry).decode()
    assert 'trainyard_jobs{namespace="ns",phase="Running"} 2.0' in text
    assert 'trainyard_jobs{namespace="ns",phase="Pending"} 0.0' in text
    metrics.forget("ns", "a")
    text = generate_latest(metrics.registry).decode()
    assert 'trainyard_jobs{namespace="ns",phase="Running"} 1.0' in text
    assert 'job="a"' not in text


def test_status_patch_deletes_cleared_fields_with_nulls() -> None:
    status = TrainingJobStatus.model_validate(
        {
            "phase": "Suspended",
            "conditions": [
                {
                    "type": "Suspended",
                    "status": "True",
                    "reason": "Suspended",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ],
        }
    )
    patch = _patch(status)
    assert patch["startTime"] is None  # merge patch: remove the key
    # Lists are replaced whole, so their items carry no nulls (observedGeneration unset).
    assert "observedGeneration" not in patch["conditions"][0]
    assert None not in patch["conditions"][0].values()
