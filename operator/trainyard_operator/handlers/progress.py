"""Reading live progress from worker 0's trainer metrics endpoint (no API call involved).

The trainer serves Prometheus text on `http://<podIP>:9400/metrics` (docs/contracts.md); the
job worker (`handlers.worker`) calls `read_progress` every few seconds while the job runs and
hands the result to the pure status logic. Failing reads are normal — the pod may not have
started its server yet, and fake-node pods have none — so they are logged at debug level
and simply yield no reading.
"""

import logging

import aiohttp

from trainyard_operator.api.constants import METRICS_PORT
from trainyard_operator.api.status import Progress
from trainyard_operator.status import progress_from_metrics

log = logging.getLogger(__name__)


async def read_progress(
    session: aiohttp.ClientSession, pod_ip: str, timeout: float
) -> Progress | None:
    """Worker 0's progress, or None when its endpoint does not answer in time."""
    host = f"[{pod_ip}]" if ":" in pod_ip else pod_ip
    url = f"http://{host}:{METRICS_PORT}/metrics"
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            if response.status != 200:
                return None
            text = await response.text()
    except (aiohttp.ClientError, TimeoutError, OSError) as err:
        log.debug("no progress from %s: %s", url, err)
        return None
    return progress_from_metrics(text)
