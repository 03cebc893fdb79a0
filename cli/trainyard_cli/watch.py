"""Follow one TrainingJob until it Succeeds or Fails: `kubectl trainyard watch` and the screen
of `make demo` (which calls `follow` with its own reader).

On a terminal the view (views.progress_view) is redrawn in place; elsewhere (a pipe, a CI
log) one plain line is printed whenever what it says changes, so the record reads like
`kubectl get -w`. The job is read every `interval` seconds: one GET, as cheap as a watch for
a view that refreshes twice a second, and it never misses the last state.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.live import Live

from trainyard_cli.views import TERMINAL, progress_line, progress_view


class JobGoneError(Exception):
    """The job was deleted while it was followed."""


Fetch = Callable[[], dict[str, Any] | None]


def follow(
    fetch: Fetch,
    console: Console,
    *,
    live: bool | None = None,
    interval: float = 0.5,
    timeout: float | None = None,
    on_update: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Show the job as `fetch` returns it until its phase is terminal; returns the last object.

    `fetch` returns None while there is no such job: before the job was seen that is waited
    out (it may not be visible yet), after it a `JobGoneError`. `live`: redraw in place (by
    default when the console is a terminal). `timeout` raises TimeoutError.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    in_place = console.is_terminal if live is None else live
    seen = False
    last_line = ""

    def step() -> dict[str, Any] | None:
        nonlocal seen
        job = fetch()
        if job is None:
            if seen:
                raise JobGoneError("the TrainingJob was deleted")
        else:
            seen = True
            if on_update is not None:
                on_update(job)
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"the job did not finish within {timeout:.0f} s")
        return job

    if in_place:
        with Live(console=console, refresh_per_second=4, transient=False) as screen:
            while True:
                job = step()
                if job is not None:
                    screen.update(progress_view(job))
                    if (job.get("status") or {}).get("phase") in TERMINAL:
                        return job
                time.sleep(interval)
    while True:
        job = step()
        if job is not None:
            line = progress_line(job)
            if line != last_line:
                # plain text: a condition's message may hold brackets or colons
                console.print(line, markup=False, emoji=False, highlight=False, soft_wrap=True)
                last_line = line
            if (job.get("status") or {}).get("phase") in TERMINAL:
                return job
        time.sleep(interval)
