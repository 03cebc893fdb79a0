"""What `kubectl trainyard` shows, rendered with rich from TrainingJob objects (plain dicts as
the API server returns them): the live view of one job, its results table, the job list.

Pure: no API calls and no clock of its own (the caller passes `now`), so `make demo` and the
plugin draw the same screen from the same object. Fields are read with defaults, as a job
the operator has not reached yet (or an older operator) may lack any of them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.console import Group, JustifyMethod, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

TERMINAL = ("Succeeded", "Failed")
ACTIVE = ("Running", "Compressing")
#: The condition that says why a job is not running, by phase (shown under the live view).
WHY = {
    "Failed": "Failed",
    "Restarting": "Restarting",
    "Pending": "Running",
    "Suspended": "Suspended",
}


def fmt(value: Any, pattern: str = "{}", missing: str = "-") -> str:
    return missing if value is None else pattern.format(value)


def duration(seconds: float | None) -> str:
    """kubectl's way with ages and durations: 45s, 3m20s, 2h5m, 3d4h."""
    if seconds is None:
        return "-"
    total = max(0, int(seconds))
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m{secs}s" if secs and minutes < 10 else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes}m" if minutes and hours < 10 else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours}h" if hours and days < 10 else f"{days}d"


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


def size(value: Any) -> str:
    """Bytes in B, KiB, MiB or GiB."""
    if value is None:
        return "-"
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024 or unit == "GiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} GiB"


def _status(job: dict[str, Any]) -> dict[str, Any]:
    status = job.get("status")
    return status if isinstance(status, dict) else {}


def _condition(job: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for cond in _status(job).get("conditions") or []:
        if isinstance(cond, dict) and cond.get("type") == kind:
            return cond
    return None


def why(job: dict[str, Any]) -> str | None:
    """'<reason>: <message>' of the condition that explains the phase (None when running)."""
    status = _status(job)
    kind = WHY.get(str(status.get("phase", "")))
    cond = _condition(job, kind) if kind else None
    if cond is None or not cond.get("message"):
        return None
    if kind == "Running" and cond.get("reason") == "WorkersPending":
        return None  # the plain start: the workers line already says it
    return f"{cond.get('reason', '')}: {cond['message']}"


def progress_view(job: dict[str, Any]) -> Table:
    """One frame of the live view (three lines, fits 80 columns): phase, workers and restarts;
    stage, epoch and a progress bar; loss, accuracy, throughput and ETA; then, while the job
    is not running, the condition that says why."""
    status = _status(job)
    progress = status.get("progress") or {}
    workers = status.get("workers") or {}
    percent = int(progress.get("percent") or 0)
    view = Table.grid(padding=(0, 2))
    view.add_column()
    view.add_column()
    view.add_row(
        f"[bold]{job['metadata']['name']}[/bold]",
        f"[bold]{status.get('phase', 'Pending')}[/bold]   "
        f"workers ready {workers.get('ready', 0)}/{workers.get('desired', '?')}   "
        f"restarts {status.get('restarts', 0)}",
    )
    bar = ProgressBar(total=100, completed=percent, width=24)
    stage = f"{progress.get('stage') or '-'} {progress.get('epoch', 0)}/"
    details = Table.grid(padding=(0, 1))
    for _ in range(3):
        details.add_column()
    details.add_row(f"{stage}{progress.get('totalEpochs', 0)}", bar, f"{percent:3d}%")
    view.add_row("", details)
    view.add_row(
        "",
        f"loss {fmt(progress.get('loss'), '{:.4f}')}   "
        f"accuracy {fmt(progress.get('accuracy'), '{:.4f}')}   "
        f"{fmt(progress.get('samplesPerSecond'), '{:.0f}')} samples/s   "
        f"ETA {fmt(progress.get('etaSeconds'), '{} s')}",
    )
    reason = why(job)
    if reason:
        view.add_row("", Text(reason, style="yellow"))
    return view


def progress_line(job: dict[str, Any]) -> str:
    """The live view as one plain line, for output that is not a terminal (logs, pipes)."""
    status = _status(job)
    progress = status.get("progress") or {}
    workers = status.get("workers") or {}
    line = (
        f"{job['metadata']['name']} {status.get('phase', 'Pending')} "
        f"workers {workers.get('ready', 0)}/{workers.get('desired', '?')} "
        f"restarts {status.get('restarts', 0)} "
        f"stage {progress.get('stage') or '-'} {progress.get('epoch', 0)}/"
        f"{progress.get('totalEpochs', 0)} {int(progress.get('percent') or 0)}% "
        f"loss {fmt(progress.get('loss'), '{:.4f}')} "
        f"accuracy {fmt(progress.get('accuracy'), '{:.4f}')} "
        f"ETA {duration(progress.get('etaSeconds'))}"
    )
    reason = why(job)
    return f"{line} ({reason})" if reason else line


def results_table(job: dict[str, Any]) -> Table:
    """status.results as a table: accuracy, bytes (and the ratio to dense), sparsity, seconds."""
    results = _status(job).get("results") or {}
    stages = results.get("stages") or []
    dense = next((s.get("modelBytes") for s in stages if s.get("name") == "train"), None)
    table = Table(title="Results (status.results)")
    table.add_column("stage")
    table.add_column("accuracy", justify="right")
    table.add_column("model bytes", justify="right")
    table.add_column("vs dense", justify="right")
    table.add_column("sparsity", justify="right")
    table.add_column("seconds", justify="right")
    for stage in stages:
        bytes_ = stage.get("modelBytes")
        ratio = f"{bytes_ / dense:.2f}x" if bytes_ and dense else "-"
        table.add_row(
            str(stage.get("name")),
            fmt(stage.get("accuracy"), "{:.4f}"),
            size(bytes_),
            ratio,
            fmt(stage.get("sparsity"), "{:.2f}"),
            fmt(stage.get("seconds"), "{:.1f}"),
        )
    return table


def results_view(job: dict[str, Any]) -> RenderableType:
    """The results table with the final model's figures under it."""
    results = _status(job).get("results") or {}
    footer = (
        f"final: accuracy {fmt(results.get('accuracy'), '{:.4f}')}, "
        f"{fmt(results.get('parameters'))} parameters, {size(results.get('modelBytes'))}, "
        f"artifact {results.get('artifactPath') or '-'}"
    )
    return Group(results_table(job), Text(footer))


def jobs_table(jobs: list[dict[str, Any]], *, now: datetime, namespaces: bool) -> Table:
    """`kubectl trainyard list`: one row per job, kubectl-style plain columns."""
    table = Table(box=None, pad_edge=False, header_style="bold", padding=(0, 3, 0, 0))
    headers = ["NAMESPACE"] if namespaces else []
    headers += ["NAME", "PHASE", "WORKERS", "STAGE", "PROGRESS", "ETA", "LOSS"]
    headers += ["ACCURACY", "RESTARTS", "AGE"]
    for header in headers:
        justify: JustifyMethod = "left"
        if header in ("PROGRESS", "LOSS", "ACCURACY", "RESTARTS"):
            justify = "right"
        table.add_column(header, justify=justify, no_wrap=True)
    for job in jobs:
        meta = job.get("metadata") or {}
        status = _status(job)
        progress = status.get("progress") or {}
        workers = status.get("workers") or {}
        phase = str(status.get("phase") or "Pending")
        stage = progress.get("stage") or "-"
        if progress.get("totalEpochs"):
            stage = f"{stage} {progress.get('epoch', 0)}/{progress['totalEpochs']}"
        created = parse_time(meta.get("creationTimestamp"))
        eta = progress.get("etaSeconds") if phase in ACTIVE else None
        row = [meta.get("namespace", "")] if namespaces else []
        row += [
            str(meta.get("name", "")),
            phase,
            f"{workers.get('ready', 0)}/{workers.get('desired', 0)}",
            str(stage),
            fmt(progress.get("percent"), "{}%"),
            duration(eta),
            fmt(progress.get("loss"), "{:.4f}"),
            fmt(progress.get("accuracy"), "{:.4f}"),
            str(status.get("restarts", 0)),
            duration((now - created).total_seconds()) if created else "-",
        ]
        table.add_row(*row)
    return table
