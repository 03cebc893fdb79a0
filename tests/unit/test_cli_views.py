"""`kubectl trainyard`'s pure parts: what `list` and `watch` draw from a TrainingJob object,
how `logs` reads the kubelet's timestamps, and how following a job ends. Jobs here are the
dicts the API server returns (the commands against a real API server: tests/integration/
test_cli.py and tests/e2e/test_cli_live.py)."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rich.console import Console

from trainyard_cli import views, watch
from trainyard_cli.logs import LogLine, format_line, parse_stamped

NOW = datetime(2026, 12, 2, 6, 0, 0, tzinfo=UTC)


def job(phase: str, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "digits-ddp",
            "namespace": "team-a",
            "creationTimestamp": (NOW - timedelta(minutes=3, seconds=5)).isoformat(),
        },
        "status": {"phase": phase, **status},
    }


RUNNING = job(
    "Running",
    workers={"ready": 2, "desired": 2},
    restarts=1,
    progress={
        "stage": "train",
        "epoch": 6,
        "totalEpochs": 10,
        "percent": 50,
        "loss": 0.10164,
        "accuracy": 0.9638,
        "samplesPerSecond": 2334.4,
        "etaSeconds": 95,
    },
)
FAILED = job(
    "Failed",
    conditions=[
        {
            "type": "Failed",
            "status": "True",
            "reason": "BackoffLimitExceeded",
            "message": "worker 1 failed with exit code 1; backoffLimit 3 reached",
            "lastTransitionTime": NOW.isoformat(),
        }
    ],
)


def render(renderable: Any, width: int = 120) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None)
    console.print(renderable)
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_list_rows_show_phase_workers_stage_progress_eta_and_loss() -> None:
    text = render(views.jobs_table([RUNNING, FAILED], now=NOW, namespaces=True))
    header, running, failed = (line.split() for line in text.splitlines())
    assert header == [
        "NAMESPACE", "NAME", "PHASE", "WORKERS", "STAGE", "PROGRESS", "ETA", "LOSS",
        "ACCURACY", "RESTARTS", "AGE",
    ]  # fmt: skip
    assert running == [
        "team-a", "digits-ddp", "Running", "2/2", "train", "6/10", "50%", "1m35s", "0.1016",
        "0.9638", "1", "3m5s",
    ]  # fmt: skip
    # A finished job has no ETA and no progress yet shows dashes, not zeros.
    assert failed[2:4] == ["Failed", "0/0"] and failed[4:8] == ["-", "-", "-", "-"]


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(None, "-"), (0, "0s"), (59, "59s"), (95, "1m35s"), (600, "10m"), (3700, "1h1m"),
     (40000, "11h"), (90000, "1d1h"), (30 * 86400, "30d")],
)  # fmt: skip
def test_durations_read_like_kubectl(seconds: float | None, shown: str) -> None:
    assert views.duration(seconds) == shown


def test_live_view_and_line_say_why_a_job_is_not_running() -> None:
    frame = render(views.progress_view(RUNNING), width=80)
    assert "Running   workers ready 2/2   restarts 1" in frame
    assert "train 6/10" in frame and " 50%" in frame
    assert "loss 0.1016   accuracy 0.9638   2334 samples/s   ETA 95 s" in frame
    failed = render(views.progress_view(FAILED), width=200)
    assert "BackoffLimitExceeded: worker 1 failed with exit code 1" in failed
    line = views.progress_line(FAILED)
    assert line.startswith("digits-ddp Failed workers 0/? restarts 0")
    assert line.endswith(
        "(BackoffLimitExceeded: worker 1 failed with exit code 1; backoffLimit 3 reached)"
    )


def test_kubelet_timestamps_are_read_to_the_nanosecond_and_lines_merge_by_them() -> None:
    at, text = parse_stamped("2026-12-02T06:08:12.088267123Z [train] epoch 1/10\n")
    assert text == "[train] epoch 1/10\n"
    assert at == int(datetime(2026, 12, 2, 6, 8, 12, tzinfo=UTC).timestamp()) * 10**9 + 88267123
    # Go trims trailing zeros (and the fraction itself when it is zero): still in order.
    whole, _ = parse_stamped("2026-12-02T06:08:12Z a")
    half, _ = parse_stamped("2026-12-02T06:08:12.5Z b")
    zoned, _ = parse_stamped("2026-12-02T07:08:12.5+01:00 c")
    assert whole < half == zoned
    assert parse_stamped("no time here") == (0, "no time here")
    lines = sorted([LogLine(half, 1, "w-1", "b"), LogLine(whole, 0, "w-0", "a")])
    assert [format_line(line, timestamps=True) for line in lines] == [
        "2026-12-02T06:08:12.000000Z [w-0] a",
        "2026-12-02T06:08:12.500000Z [w-1] b",
    ]


def test_following_prints_each_change_once_and_ends_with_the_job() -> None:
    pending = job("Pending", workers={"ready": 0, "desired": 2})
    done = job("Succeeded", workers={"ready": 0, "desired": 2}, progress={"stage": "done"})
    answers = iter([None, pending, pending, RUNNING, RUNNING, done])
    out = io.StringIO()
    last = watch.follow(lambda: next(answers), Console(file=out, width=200), interval=0)
    assert last is done
    lines = out.getvalue().splitlines()
    assert [line.split()[1] for line in lines] == ["Pending", "Running", "Succeeded"]


def test_following_a_job_that_goes_away_or_takes_too_long_stops() -> None:
    answers = iter([RUNNING, None])
    with pytest.raises(watch.JobGoneError):
        watch.follow(lambda: next(answers), Console(file=io.StringIO()), interval=0)
    with pytest.raises(TimeoutError):
        watch.follow(lambda: RUNNING, Console(file=io.StringIO()), interval=0.01, timeout=0.05)


def test_messages_and_log_text_are_printed_as_written() -> None:
    odd = job(
        "Failed",
        conditions=[
            {
                "type": "Failed",
                "status": "True",
                "reason": "WorkerFailed",
                "message": "worker 1: [rank 1] [bold]x[/bold] :x: failed",
                "lastTransitionTime": NOW.isoformat(),
            }
        ],
    )
    out = io.StringIO()
    watch.follow(lambda: odd, Console(file=out, width=200), interval=0)
    assert "(WorkerFailed: worker 1: [rank 1] [bold]x[/bold] :x: failed)" in out.getvalue()
