"""Start, find and stop the local cluster's processes, by pid and never by name.

`cluster.py` spawns every component through `spawn` (stdout and stderr appended to
`logs/<component>.log`) and records each pid in `pids.json` together with a string its
command line must contain; `stop` checks that string before signalling, so a pid the kernel
has since given to an unrelated process is never killed. This module knows nothing about
Kubernetes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Tracked:
    """One process the cluster started: `match` must occur in its command line."""

    component: str
    pid: int
    match: str


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports that are free on 127.0.0.1 right now.

    All sockets are held open until every port is chosen so that the same port is never
    handed out twice; another program may still take one before the component binds it,
    which `cluster.py` reports as a start-up failure with the component's log.
    """
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _tied(argv: Sequence[str]) -> list[str]:
    # util-linux's setpriv sets the parent-death signal and then execs the component: if the
    # test session that started the cluster is killed, the kernel kills the component instead
    # of leaving it running. SIGKILL, not SIGTERM: a terminating kube-apiserver waits for an
    # etcd that may already be gone, and the state of a test cluster is disposable. (A
    # preexec_fn could do the same, but is unsafe in a parent with threads.) Without setpriv
    # the component simply outlives a killed parent.
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--", *argv] if setpriv else list(argv)


def spawn(
    argv: Sequence[str],
    log_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    tie_to_parent: bool = False,
) -> subprocess.Popen[bytes]:
    """Start `argv` in its own session with output appended to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}\n".encode())
        log.flush()
        return subprocess.Popen(
            _tied(argv) if tie_to_parent else list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            # its own session: Ctrl-C in the shell that ran `up` does not reach the cluster
            start_new_session=True,
        )


# how often an empty /proc/<pid>/cmdline is read again (20 ms apart) before giving up on it
EMPTY_CMDLINE_READS = 50


def _cmdline(pid: int) -> str | None:
    # While a process is inside execve (setpriv exec'ing the component, or a large binary
    # being loaded on a busy machine) /proc/<pid>/cmdline reads empty for a moment: read again
    # rather than take a live component for a dead one.
    for _ in range(EMPTY_CMDLINE_READS):
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
            stat = Path(f"/proc/{pid}/stat").read_text()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            return None
        # a zombie has exited already; it only waits for its parent to reap it
        state = stat.rsplit(")", 1)[-1].split()[0]
        if state in ("Z", "X"):
            return None
        if raw:
            return raw.replace(b"\0", b" ").decode(errors="replace")
        time.sleep(0.02)
    return ""


def is_running(tracked: Tracked, popen: subprocess.Popen[bytes] | None = None) -> bool:
    """True when the pid is alive and still runs the process we started.

    `popen` is the handle when this process started it: its exit status is then the answer
    (the pid cannot have been reused while we have not reaped it).
    """
    if popen is not None:
        return popen.poll() is None
    cmdline = _cmdline(tracked.pid)
    return cmdline is not None and tracked.match in cmdline


def stop(
    tracked: Tracked,
    *,
    grace_seconds: float = 10.0,
    popen: subprocess.Popen[bytes] | None = None,
) -> bool:
    """SIGTERM, then SIGKILL after `grace_seconds`; returns True if the process was running.

    `popen` is the handle when this process started it, so that it is reaped (no zombie).
    """
    if not is_running(tracked, popen):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(tracked.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline:
        if not is_running(tracked, popen):
            break
        time.sleep(0.05)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.kill(tracked.pid, signal.SIGKILL)
    if popen is not None:
        popen.wait(timeout=grace_seconds)
    else:
        end = time.monotonic() + grace_seconds
        while is_running(tracked) and time.monotonic() < end:
            time.sleep(0.05)
    return True


def log_tail(path: Path, lines: int = 25) -> str:
    """The last lines of a component log, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])
