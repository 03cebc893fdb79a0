"""A container's output and each line's arrival time, as the process runner keeps them."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from trainyard_local import container_log


def _wait_for(log: Path, needle: bytes) -> None:
    """Until the pump has written `needle` to the log (the timeout only bounds a hang)."""
    deadline = time.monotonic() + 30
    while needle not in (log.read_bytes() if log.exists() else b""):
        assert time.monotonic() < deadline, f"{needle!r} never reached {log}"
        time.sleep(0.01)


def test_lines_get_their_arrival_time_and_a_partial_line_waits(tmp_path: Path) -> None:
    log = tmp_path / "main.log"
    read, write = os.pipe()
    source = os.fdopen(read, "rb", buffering=0)
    pump = threading.Thread(target=container_log.pump, args=(source, log), daemon=True)
    pump.start()
    try:
        os.write(write, b"first\n")
        _wait_for(log, b"first")
        # the first line is stamped by now; whatever arrives after this moment is stamped later
        between = time.time()
        os.write(write, b"second\rstill second\nthird without newline")
        _wait_for(log, b"third")

        lines, offset, row = container_log.timed_lines(log)
        # a "\r" (a progress bar redrawing its line) does not end a line
        assert [line for _, line in lines] == [b"first\n", b"second\rstill second\n"]
        first, second = (container_log.parse_stamp(when) for when, _ in lines)
        assert first <= between <= second  # each line keeps the time it arrived
    finally:
        os.close(write)
        pump.join(timeout=10)
    # The output ended: the last line comes, with a time of its own, and nothing twice.
    rest, _, _ = container_log.timed_lines(log, offset, row, ended=True)
    assert [line for _, line in rest] == [b"third without newline"]
    assert log.read_bytes() == b"first\nsecond\rstill second\nthird without newline"


def test_times_are_rfc3339_with_nanoseconds_and_read_back() -> None:
    text = container_log.stamp(1_795_966_559_123_456_789)
    assert text == "2026-11-29T15:35:59.123456789Z"
    assert abs(container_log.parse_stamp(text) - 1_795_966_559.123456789) < 1e-6
    assert container_log.parse_stamp("2026-11-29T16:35:59+01:00") == 1_795_966_559.0
