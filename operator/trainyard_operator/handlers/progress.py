"""Reading live progress from worker 0's trainer metrics endpoint (no API call involved).

The trainer serves Prometheus text on `http://<podIP>:9400/metrics` (docs/contracts.md); the
job worker (`handlers.worker`) calls `read_progress` every few seconds while the job runs and
hands the result to the pure status logic. Failing reads are normal — the pod may not have
started its server yet, and fake-node pods have none — so they are logged at debug level
and simply yield no reading.

The endpoint is user code (a job may run any command), so it is read as untrusted input: no
redirect is followed (a 302 must not make the operator fetch another address from inside the
cluster), the body is read up to `MAX_BODY_BYTES` and dropped beyond it (a trainer's page is
a few KB; a hostile one must not stream hundreds of MB into the operator), and the parsing
runs in a worker thread, off the event loop that serves every other job.
"""

import asyncio
import logging

import aiohttp

from trainyard_operator.api.constants import METRICS_PORT
from trainyard_operator.api.status import Progress
from trainyard_operator.status import progress_from_metrics

log = logging.getLogger(__name__)

#: The most of a metrics page that is read (the trainer's is under 10 KB).
MAX_BODY_BYTES = 1 << 20


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


async def read_progress(
    session: aiohttp.ClientSession, pod_ip: str, timeout: float, *, port: int = METRICS_PORT
) -> Progress | None:
    """Worker 0's progress, or None when its endpoint does not answer in time or properly."""
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
    return await asyncio.to_thread(progress_from_metrics, text)
