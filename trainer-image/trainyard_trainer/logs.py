"""The trainer's log lines: plain text, or one JSON object per line (TRAINYARD_LOG_FORMAT).

The operator passes its own TRAINYARD_LOG_FORMAT to the worker pods (docs/contracts.md).
With `json` every line a worker prints is one object with the same keys, for log collectors
such as ELK or Loki: `time` (RFC 3339, UTC), `level`, `job`, `namespace`, `worker` (the
pod's index), `rank` (the global rank; null where the line is not a trainer process's own),
`stage` and `epoch` (null where they do not apply), `message`. The trainer's own lines go
through `emit`; whatever else the processes print (torchrun, Python warnings, a traceback)
is wrapped line by line by the launcher (`launch.py`, `wrap_line`), so every line parses.
Text, the default, prints the message alone, as the trainer always has.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

FORMAT_ENV = "TRAINYARD_LOG_FORMAT"


def json_lines() -> bool:
    """Whether this process logs JSON objects (TRAINYARD_LOG_FORMAT=json)."""
    return os.environ.get(FORMAT_ENV, "text").strip().lower() == "json"


def record(
    message: str,
    *,
    level: str = "info",
    stage: str | None = None,
    epoch: int | None = None,
    rank: int | None = None,
) -> dict[str, Any]:
    """One line's object (see the module docstring); `rank` defaults to this process's."""
    if rank is None:
        rank = _int(os.environ.get("RANK"))
    return {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "level": level,
        "job": os.environ.get("TRAINYARD_JOB") or None,
        "namespace": os.environ.get("TRAINYARD_NAMESPACE") or None,
        "worker": _int(os.environ.get("PET_NODE_RANK") or os.environ.get("NODE_RANK")),
        "rank": rank,
        "stage": stage,
        "epoch": epoch,
        "message": message,
    }


def emit(
    message: str,
    *,
    level: str = "info",
    stage: str | None = None,
    epoch: int | None = None,
    stream: TextIO | None = None,
) -> None:
    """Print one line of the trainer's (stdout unless `stream`), in the chosen format."""
    out = stream or sys.stdout
    if json_lines():
        text = json.dumps(record(message.rstrip("\n"), level=level, stage=stage, epoch=epoch))
    else:
        text = message.rstrip("\n")
    print(text, file=out, flush=True)


def wrap_line(line: str, *, level: str) -> str:
    """A line of a process's output as one JSON object: unchanged when it already is one
    (the trainer's own), else its text as the message of a new one."""
    text = line.rstrip("\r\n")
    if text.startswith("{"):
        try:
            if isinstance(json.loads(text), dict):
                return text
        except ValueError:
            pass
    # Not a trainer process's own line: whose rank it is cannot be told, so none is claimed.
    data = record(text, level=level)
    data["rank"] = None
    return json.dumps(data)


def _int(value: str | None) -> int | None:
    return int(value) if value is not None and value.strip().isdigit() else None
