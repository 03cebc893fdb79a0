"""The progress reader treats worker 0's metrics endpoint as untrusted: a redirect is not
followed, an endless body is cut off at the cap, a normal page still gives progress.

Real HTTP servers on 127.0.0.1 (aiohttp's), the operator's own reader."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web

from trainyard_operator.handlers.progress import (
    MAX_BODY_BYTES,
    READS_PER_JOB,
    read_progress,
    read_trainers,
)
from trainyard_operator.status.readings import TrainerReading

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PAGE = (
    'trainyard_trainer_stage_info{stage="train"} 1\n'
    "trainyard_trainer_epoch 3\ntrainyard_trainer_epochs_total 10\n"
)


async def serve(handler: Handler) -> tuple[web.AppRunner, int]:
    app = web.Application()
    app.router.add_get("/metrics", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, port


async def read_from(handler: Handler) -> object:
    """What the operator's reader makes of an endpoint served by `handler`."""
    runner, port = await serve(handler)
    try:
        async with aiohttp.ClientSession() as session:
            return await read_progress(session, "127.0.0.1", 60, port=port)
    finally:
        await runner.cleanup()


def test_a_redirect_is_not_followed() -> None:
    asked: list[str] = []

    async def target(request: web.Request) -> web.StreamResponse:
        asked.append(request.path)
        return web.Response(text=PAGE)

    async def main() -> object:
        target_runner, target_port = await serve(target)

        async def redirect(request: web.Request) -> web.StreamResponse:
            raise web.HTTPFound(f"http://127.0.0.1:{target_port}/metrics")

        try:
            return await read_from(redirect)
        finally:
            await target_runner.cleanup()

    assert asyncio.run(main()) is None
    assert asked == []


def test_an_endless_body_is_cut_off_at_the_cap() -> None:
    sent = 0
    gigabyte = 1 << 30

    async def endless(request: web.Request) -> web.StreamResponse:
        nonlocal sent
        response = web.StreamResponse()  # chunked: no Content-Length to refuse up front
        await response.prepare(request)
        line = b"# " + b"x" * 65_532 + b"\n"
        while sent < gigabyte:
            await response.write(line)
            sent += len(line)
        return response

    assert asyncio.run(read_from(endless)) is None
    # the reader stopped at the cap: the server could write little beyond what sockets buffer
    assert sent < 64 * MAX_BODY_BYTES, f"{sent} bytes sent before the reader hung up"


def test_a_normal_page_still_gives_progress() -> None:
    async def page(request: web.Request) -> web.StreamResponse:
        return web.Response(text=PAGE)

    assert asyncio.run(read_from(page)) is not None


def test_every_worker_is_read_a_few_at_a_time() -> None:
    """Each worker's page by index (one that does not answer is left out), and a large gang's
    endpoints are never all read at once: a gang of hostile pages cannot make the operator
    hold more than READS_PER_JOB bodies."""
    in_flight = peak = 0
    counters = (
        "trainyard_trainer_steps_total 7.0\ntrainyard_trainer_step_compute_seconds_total 0.5\n"
    )

    async def page(request: web.Request) -> web.StreamResponse:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.05)
        in_flight -= 1
        return web.Response(text=PAGE + counters)

    async def main() -> tuple[dict[int, TrainerReading], dict[int, TrainerReading]]:
        runner, port = await serve(page)
        try:
            async with aiohttp.ClientSession() as session:
                # worker 2's address has nothing listening on the port
                few = {0: "127.0.0.1", 1: "127.0.0.1", 2: "127.0.0.2"}
                first = await read_trainers(session, few, 60, port=port)
                many = {i: "127.0.0.1" for i in range(40)}
                return first, await read_trainers(session, many, 60, port=port)
        finally:
            await runner.cleanup()

    first, many = asyncio.run(main())
    assert sorted(first) == [0, 1]
    assert (first[1].steps, first[1].compute_seconds) == (7.0, 0.5)
    assert sorted(many) == list(range(40))
    assert 1 < peak <= READS_PER_JOB
