"""The local cluster's process bookkeeping: a component it started is judged by its handle."""

from __future__ import annotations

import sys
from pathlib import Path

from trainyard_local import processes


def test_a_started_process_is_judged_by_its_handle_not_its_command_line(tmp_path: Path) -> None:
    # CI once saw a kube-apiserver taken for dead while it was being exec'd (its command line
    # read empty for a moment): the cluster gave up on it, and left it running unreaped.
    popen = processes.spawn(
        [sys.executable, "-c", "import time; time.sleep(30)"], tmp_path / "sleeper.log"
    )
    tracked = processes.Tracked("sleeper", popen.pid, "a string its command line lacks")
    try:
        assert processes.is_running(tracked) is False
        assert processes.is_running(tracked, popen) is True
        assert processes.stop(tracked, popen=popen, grace_seconds=5) is True
        assert popen.returncode is not None  # reaped: no zombie, no ResourceWarning
        assert processes.is_running(tracked, popen) is False
    finally:
        if popen.poll() is None:
            popen.kill()
            popen.wait()


def test_a_recorded_pid_is_matched_by_its_command_line(tmp_path: Path) -> None:
    popen = processes.spawn(
        [sys.executable, "-c", "import time; time.sleep(30)", "trainyard-test-marker"],
        tmp_path / "sleeper.log",
    )
    tracked = processes.Tracked("sleeper", popen.pid, "trainyard-test-marker")
    try:
        assert processes.is_running(tracked) is True
        assert processes.stop(tracked, popen=popen, grace_seconds=5) is True
        assert processes.is_running(tracked) is False
        assert "trainyard-test-marker" in (tmp_path / "sleeper.log").read_text()
    finally:
        if popen.poll() is None:
            popen.kill()
            popen.wait()
