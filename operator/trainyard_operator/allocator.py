"""Fewer malloc arenas: the operator's memory follows its jobs, not its threads.

glibc gives each thread that allocates its own malloc arena (up to 8 per core). The API
client threads (TRAINYARD_API_CONCURRENCY) read every response into their own arena and the
event loop frees it later, so freed memory is scattered over many arenas that each keep
their share: with thousands of jobs that was tens of MiB of RSS holding nothing
(bench/vs_kubeflow.py --mode memory, docs/operator.md "Performance against Kubeflow").
Two arenas is the usual setting for threaded Python servers (MALLOC_ARENA_MAX=2); set here
before any thread starts, so it holds however the operator is launched. Other C libraries
(musl) have no such arenas and no `mallopt`: nothing to do there.

`release_free_memory` returns what parked jobs left free to the system
(`handlers.memory` calls it after jobs park).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc

#: glibc's mallopt parameter number for the arena limit (malloc.h: M_ARENA_MAX).
M_ARENA_MAX = -8
ARENAS = 2


def limit_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Ask glibc for at most `arenas` malloc arenas; False where that is not glibc."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(ctypes.c_int(M_ARENA_MAX), ctypes.c_int(arenas)))


def release_free_memory() -> bool:
    """Collect cycles, then hand the heap's free pages back to the system (glibc's
    malloc_trim): after a burst of jobs parks, the memory their workers held is free inside
    the process but still counted in its RSS. False where that is not glibc."""
    gc.collect()
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return False
    return bool(trim(ctypes.c_size_t(0)))
