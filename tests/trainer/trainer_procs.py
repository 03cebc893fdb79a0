"""Helpers for the trainer tests: launch real trainer processes and read what they write.

`start_trainer` starts `python -m trainyard_trainer` under torchrun, through
`trainyard_trainer.launch` (`--standalone`, so every
test gets its own rendezvous port and tests may run side by side) with a TRAINYARD_CONFIG,
an output directory and a termination-log path in tmp_path. Children run with
OMP_NUM_THREADS=1: these tests share two cores with everyone else's.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class TrainerRun:
    """A started trainer: its process, where it writes, and what it printed so far."""

    proc: subprocess.Popen[str]
    output: Path
    termination_log: Path
    lines: list[str] = field(default_factory=list)

    def wait_for_line(self, needle: str, timeout: float = 120.0) -> str:
        """Read stdout until a line contains `needle` (and keep every line read)."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                if self.proc.poll() is not None:
                    break
                continue
            self.lines.append(line)
            if needle in line:
                return line
        raise AssertionError(f"no line with {needle!r}; output:\n{''.join(self.lines[-40:])}")

    def finish(self, timeout: float = 300.0) -> int:
        """Wait for exit; collect the rest of stdout."""
        out, _ = self.proc.communicate(timeout=timeout)
        self.lines.extend(out.splitlines(keepends=True))
        return self.proc.returncode

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def results(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.output / "results.json").read_text())
        return data

    def stage(self, name: str) -> dict[str, Any]:
        return next(s for s in self.results()["stages"] if s["name"] == name)


def trainer_env(config: dict[str, Any], output: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRAINYARD_", "PET_"))}
    env.update(
        TRAINYARD_CONFIG=json.dumps(config),
        TRAINYARD_OUTPUT_DIR=str(output),
        TRAINYARD_TERMINATION_LOG=str(output.parent / "termination-log"),
        OMP_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def start_trainer(
    config: dict[str, Any], output: Path, nproc: int = 1, *, torchrun: bool = True, **env: str
) -> TrainerRun:
    output.mkdir(parents=True, exist_ok=True)
    if torchrun:
        # Through launch.py, as a pod should: torchrun with exit codes that mean something.
        command = [
            sys.executable,
            "-m",
            "trainyard_trainer.launch",
            "--standalone",
            f"--nproc-per-node={nproc}",
            "--max-restarts=0",
        ]
    else:
        command = [sys.executable, "-m", "trainyard_trainer"]
    proc = subprocess.Popen(
        command,
        env=trainer_env(config, output, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return TrainerRun(proc, output, output.parent / "termination-log")


def descendants_of(pid: int) -> list[int]:
    """Every process below `pid`, from /proc (launcher -> torchrun -> workers)."""
    found: list[int] = []
    frontier = [pid]
    while frontier:
        kids = children_of(frontier.pop())
        found += kids
        frontier += kids
    return found


def worker_pids(launcher: int) -> list[int]:
    """The trainer worker processes under a launcher (the leaves of its process tree)."""
    tree = descendants_of(launcher)
    return [p for p in tree if not children_of(p)]


def children_of(pid: int) -> list[int]:
    """Direct child pids of `pid`, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces; fields after the closing paren are fixed.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            found.append(int(entry.name))
    return sorted(found)


DIGITS = {"model": "mlp", "dataset": "digits", "batchSize": 32, "learningRate": 0.001}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> str:
    """Rank 0's live metrics page."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        body: bytes = resp.read()
    return body.decode()
