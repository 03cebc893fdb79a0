"""A container's output with the time each line arrived, as a container runtime keeps it.

Dev/test tooling for the process runner. A kubelet can answer `kubectl logs --timestamps`
and `--since` because the runtime stamps every line it reads from the container (CRI log
format). Here the process runner gives each container a pipe and `pump` copies it into two
files next to each other in the pod dir:

- `<container>.log`: the output exactly as written (the termination-message fallback and a
  plain `kubectl logs` read this);
- `<container>.log.times`: one RFC 3339 UTC time with nanoseconds per line of the log, in
  order: row i is when line i's newline arrived (a last line without a newline gets its row
  when the output ends).

Rows are appended before the bytes they describe, so a reader never sees a finished line
without its time. `timed_lines` reads the two back for the log server.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import time
from pathlib import Path
from typing import IO

CHUNK = 64 * 1024
#: every row is a 30-character time and a newline, so row i starts at byte 31 * i
ROW_BYTES = 31


def times_path(log_path: Path) -> Path:
    """Where the per-line times of `log_path` are kept."""
    return log_path.with_name(log_path.name + ".times")


def stamp(ns: int) -> str:
    """Nanoseconds since the epoch as RFC 3339 with nine fractional digits (kubelet's form)."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    whole = dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{whole}.{nanos:09d}Z"


def parse_stamp(text: str) -> float:
    """Seconds since the epoch of an RFC 3339 time (any number of fractional digits)."""
    match = _RFC3339.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    whole, fraction, zone = match.groups()
    zone = "+00:00" if zone in ("Z", "z") else zone
    return dt.datetime.fromisoformat(whole + zone).timestamp() + float(f"0{fraction or ''}")


_RFC3339 = re.compile(r"(\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d)(\.\d+)?([Zz]|[+-]\d\d:\d\d)")


def pump(source: IO[bytes], log_path: Path) -> None:
    """Copy `source` (a container's stdout+stderr pipe) into the log and its times until EOF."""
    rows = times_path(log_path)
    ended_with_newline = True
    with log_path.open("ab") as log, rows.open("a") as times:
        fd = source.fileno()
        while True:
            try:
                chunk = os.read(fd, CHUNK)
            except OSError:
                chunk = b""
            if not chunk:
                break
            lines = chunk.count(b"\n")
            if lines:
                times.write(f"{stamp(time.time_ns())}\n" * lines)
                times.flush()
            log.write(chunk)
            log.flush()
            ended_with_newline = chunk.endswith(b"\n")
        if not ended_with_newline:
            times.write(f"{stamp(time.time_ns())}\n")
    source.close()


def timed_lines(
    log_path: Path, offset: int = 0, row: int = 0, *, ended: bool = False
) -> tuple[list[tuple[str, bytes]], int, int]:
    """The log's lines from byte `offset` (line number `row`), each with its time.

    Returns them with the offset and row to continue from. A last line without a newline
    waits for more output unless the output has `ended`.
    """
    try:
        with log_path.open("rb") as handle:
            handle.seek(offset)
            data = handle.read()
        with times_path(log_path).open("rb") as handle:
            handle.seek(row * ROW_BYTES)
            stamps = handle.read().decode().splitlines()
    except FileNotFoundError:
        return [], offset, row
    # only "\n" ends a line, as for the pump: a progress bar's "\r" does not
    parts = data.split(b"\n")
    lines = [part + b"\n" for part in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
    out: list[tuple[str, bytes]] = []
    for line, when in zip(lines, stamps, strict=False):
        if not line.endswith(b"\n") and not ended:
            break
        out.append((when, line))
        offset += len(line)
        row += 1
    return out, offset, row
