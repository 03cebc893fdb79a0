"""`python -m trainyard_trainer.launch`: torchrun, with an exit code that says what happened.

torchrun exits 1 whatever went wrong: a config error (the trainer's exit 2), a worker killed
by the kernel, and even a SIGTERM it forwarded to a trainer that checkpointed and exited 143.
The operator's ExitCode restart policy (1-127 permanent, 128+ retry) needs the difference,
so this wrapper runs torchrun with the same flags (torchrun still reads the `PET_*`
variables), gives every worker a directory to leave its exit code in
(`TRAINYARD_EXIT_DIR`, written by `__main__`), and resolves them:

- any worker exited 2 (bad config)            -> 2
- any worker failed on its own (exit 1)       -> 1
- the launcher was told to stop (SIGTERM)     -> 143 (retryable)
- a worker left no code (killed by a signal),
  the others only lost their connection to it
  or were stopped by torchrun because of it   -> 137 (retryable)

With TRAINYARD_LOG_FORMAT=json it also passes every line the processes print through
`logs.wrap_line`, so that torchrun's own lines, warnings and tracebacks are JSON objects too.

`local.py` (`trainyard-train`) launches through this module too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import IO, TextIO

from trainyard_trainer.logs import json_lines, wrap_line

EXIT_DIR_ENV = "TRAINYARD_EXIT_DIR"
SIGTERM_EXIT = 143
SIGKILL_EXIT = 137
PEER_LOST = -1  # recorded by a worker whose collective failed because a peer went away


def record_exit(code: int, *, signalled: bool, peer_lost: bool = False) -> None:
    """Called by each worker on exit: leave its code for the launcher (no-op without one)."""
    directory = os.environ.get(EXIT_DIR_ENV)
    if not directory:
        return
    rank = os.environ.get("RANK", "0")
    # A worker torn down because the launcher forwarded SIGTERM reports 143 even when its
    # collective failed first: the stop, not the error, is the cause.
    value = SIGTERM_EXIT if signalled and code != 0 else code
    if peer_lost and not signalled:
        value = PEER_LOST
    with contextlib.suppress(OSError):  # the launcher's directory is gone: it is gone too
        Path(directory, f"rank-{rank}").write_text(str(value))


def resolve(torchrun_code: int, *, terminated: bool, codes: Sequence[int], expected: int) -> int:
    """The launcher's exit code from torchrun's and the workers' (see the module docstring)."""
    if torchrun_code == 0:
        return 0
    if 2 in codes:
        return 2
    if any(c not in (0, SIGTERM_EXIT, PEER_LOST) for c in codes):
        return 1
    if terminated:
        return SIGTERM_EXIT
    # Checked before a worker's 143: when one worker is killed, torchrun SIGTERMs the rest,
    # and whether they record 143 or "peer lost" depends on which came first.
    if len(codes) < expected or PEER_LOST in codes:
        return SIGKILL_EXIT  # a worker died without a word: killed (OOM, node trouble)
    if SIGTERM_EXIT in codes:
        return SIGTERM_EXIT  # stopped from outside the launcher (e.g. the whole group)
    return 1


def torchrun_command(extra_args: Sequence[str], nproc: int | None = None) -> list[str]:
    command = [sys.executable, "-m", "torch.distributed.run", *extra_args]
    if nproc is not None:
        command.append(f"--nproc-per-node={nproc}")
    return [*command, "-m", "trainyard_trainer"]


def run(command: Sequence[str], env: dict[str, str], expected: int) -> int:
    """Run torchrun `command`, forwarding SIGTERM/SIGINT, and resolve the exit code."""
    with tempfile.TemporaryDirectory(prefix="trainyard-exit-") as exit_dir:
        wrap = json_lines()
        pipe = subprocess.PIPE if wrap else None
        child = subprocess.Popen(
            list(command), env={**env, EXIT_DIR_ENV: exit_dir}, stdout=pipe, stderr=pipe
        )
        copiers = [
            _copy_lines(child.stdout, sys.stdout, "info"),
            _copy_lines(child.stderr, sys.stderr, "error"),
        ]
        terminated = False

        def forward(signum: int, frame: FrameType | None) -> None:
            nonlocal terminated
            terminated = True
            child.send_signal(signum)

        previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            code = child.wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for copier in copiers:
                if copier is not None:
                    # the pipes end when the last process writing to them does
                    copier.join(timeout=COPY_DRAIN_SECONDS)
        codes = [int(p.read_text() or "1") for p in Path(exit_dir).glob("rank-*")]
    return resolve(code, terminated=terminated, codes=codes, expected=expected)


#: How long the launcher waits, once torchrun has exited, for its output to be copied out.
COPY_DRAIN_SECONDS = 10.0


def _copy_lines(source: IO[bytes] | None, out: TextIO, level: str) -> threading.Thread | None:
    """Copy `source` to `out` line by line as JSON objects, on a thread of its own."""
    if source is None:
        return None

    def copy() -> None:
        with source:
            for raw in iter(source.readline, b""):
                line = raw.decode("utf-8", errors="replace")
                print(wrap_line(line, level=level), file=out, flush=True)

    thread = threading.Thread(target=copy, name=f"copy {level} lines", daemon=True)
    thread.start()
    return thread


def main(argv: Sequence[str] | None = None) -> int:
    """Pass every argument to torchrun; the process count comes from --nproc-per-node or
    PET_NPROC_PER_NODE, as torchrun itself reads it."""
    args = list(sys.argv[1:] if argv is None else argv)
    nproc = os.environ.get("PET_NPROC_PER_NODE", "1")
    for arg in args:
        if arg.startswith(("--nproc-per-node=", "--nproc_per_node=")):
            nproc = arg.split("=", 1)[1]
    expected = int(nproc) if nproc.isdigit() else 1
    return run(torchrun_command(args), dict(os.environ), expected)


if __name__ == "__main__":
    sys.exit(main())
