"""The progress reader treats worker 0's metrics endpoint as untrusted: a redirect is not
followed, an endless body is cut off at the cap, a normal page still gives progress.

Real HTTP servers on 127.0.0.1 (aiohttp's), the operator's own reader."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web

from trainyard_operator.handlers.progress import MAX_BODY_BYTES, read_progress

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
