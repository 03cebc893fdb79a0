"""Giving memory back after jobs park (see `runtime.Parked`).

A burst of jobs that finish or are suspended leaves thousands of workers' bodies, parsed
specs and tasks freed inside the process, yet counted in its RSS until the allocator returns
the pages. Every RELEASE_SECONDS, if jobs parked since the last look, this collects and trims
once (`allocator.release_free_memory`: a full collection, so not more often than that).
"""

from __future__ import annotations

import asyncio
import logging

from trainyard_operator.allocator import release_free_memory
from trainyard_operator.handlers.runtime import Runtime

log = logging.getLogger(__name__)

RELEASE_SECONDS = 30.0


async def release_after_parking(runtime: Runtime) -> None:
    """Forever (cancelled at shutdown): trim after jobs parked."""
    parked = len(runtime.parked)
    while True:
        await asyncio.sleep(RELEASE_SECONDS)
        now = len(runtime.parked)
        if now > parked:
            release_free_memory()
            log.debug("%d jobs parked since the last look: memory released", now - parked)
        parked = now
