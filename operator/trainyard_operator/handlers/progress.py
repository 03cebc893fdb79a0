"""Reading the trainers' metrics endpoints: worker 0's progress, every worker's step counters.

The trainer serves Prometheus text on `http://<podIP>:9400/metrics` (docs/contracts.md); the
job worker (`handlers.worker`) calls `read_trainers` every few seconds while the job runs and
hands the readings to the pure status logic (progress from worker 0, step times of every
worker for the straggler check). Failing reads are normal — the pod may not have started
its server yet, and fake-node pods have none — so they are logged at debug level and simply
yield no reading.

The endpoint is user code (a job may run any command), so it is read as untrusted input: no
redirect is followed (a 302 must not make the operator fetch another address from inside the
cluster), the body is read up to `MAX_BODY_BYTES` and dropped beyond it (a trainer's page is
a few KB; a hostile one must not stream hundreds of MB into the operator), and the parsing
runs in a worker thread, off the event loop that serves every other job.
"""

import asyncio
import logging
from collections.abc import Mapping

import aiohttp

from trainyard_operator.api.constants import METRICS_PORT
from trainyard_operator.api.status import Progress
from trainyard_operator.status.readings import TrainerReading, trainer_reading

log = logging.getLogger(__name__)

#: The most of a metrics page that is read (the trainer's is under 10 KB).
MAX_BODY_BYTES = 1 << 20
#: Reads of one job's workers in flight at once: a large gang of hostile endpoints holds at
#: most this many bodies of MAX_BODY_BYTES in the operator (and aiohttp's connection limit,
#: 100, bounds all jobs together).
READS_PER_JOB = 8


async def read_bounded(response: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The body, or None as soon as it proves longer than `limit` (the rest is never read)."""
    declared = response.content_length
    if declared is not None and declared > limit:
        return None
    body = bytearray()
    async for chunk in response.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


async def read_trainers(
    session: aiohttp.ClientSession,
    pod_ips: Mapping[int, str],
    timeout: float,
    *,
    port: int = METRICS_PORT,
) -> dict[int, TrainerReading]:
    """Read the workers' endpoints (by worker index), `READS_PER_JOB` at a time; those that
    do not answer in time or properly are left out."""
    gate = asyncio.Semaphore(READS_PER_JOB)

    async def read(ip: str) -> TrainerReading | None:
        async with gate:
            return await read_trainer(session, ip, timeout, port=port)

    indexes = list(pod_ips)
    readings = await asyncio.gather(*(read(pod_ips[i]) for i in indexes))
    return {i: r for i, r in zip(indexes, readings, strict=True) if r is not None}


async def read_progress(
    session: aiohttp.ClientSession, pod_ip: str, timeout: float, *, port: int = METRICS_PORT
) -> Progress | None:
    """A worker's progress, or None when its endpoint does not answer in time or properly."""
    reading = await read_trainer(session, pod_ip, timeout, port=port)
    return reading.progress if reading is not None else None


async def read_trainer(
    session: aiohttp.ClientSession, pod_ip: str, timeout: float, *, port: int = METRICS_PORT
) -> TrainerReading | None:
    """What a worker's metrics page says, or None when it does not answer in time or
    properly (no redirect followed, the body bounded, the parsing off the event loop)."""
    host = f"[{pod_ip}]" if ":" in pod_ip else pod_ip
    url = f"http://{host}:{port}/metrics"
    try:
        async with session.get(
            url, timeout=aiohttp.ClientTimeout(total=timeout), allow_redirects=False
        ) as response:
            if response.status != 200:
                log.debug("no progress from %s: HTTP %d", url, response.status)
                return None
            body = await read_bounded(response, MAX_BODY_BYTES)
    except (aiohttp.ClientError, TimeoutError, OSError) as err:
        log.debug("no progress from %s: %s", url, err)
        return None
    if body is None:
        log.warning("no progress from %s: the page is over %d bytes", url, MAX_BODY_BYTES)
        return None
    text = body.decode("utf-8", errors="replace")
    return await asyncio.to_thread(trainer_reading, text)
