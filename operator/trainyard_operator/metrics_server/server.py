"""The HTTPS /metrics server behind Kubernetes authentication and authorization.

aiohttp on an event loop of its own in a daemon thread, as prometheus_client's
`start_http_server` serves from a thread: a slow scraper or API server never holds up kopf's
loop, and a busy operator never delays a scrape. Each request's bearer token is reviewed by
`Gate` (cache, then TokenReview and SubjectAccessReview on a small thread pool, since the
`kubernetes` client blocks), and only an allowed one gets the registry's exposition.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from trainyard_operator.metrics_server.decisions import (
    METRICS_PATH,
    NO_TOKEN,
    REVIEW_FAILED,
    User,
    Verdict,
    VerdictCache,
    access_allowed,
    authenticated_user,
    bearer_token,
    token_key,
    verdict,
)
from trainyard_operator.metrics_server.reviews import ReviewError
from trainyard_operator.metrics_server.tls import CertificateFiles

log = logging.getLogger(__name__)
#: aiohttp's own messages about connections and malformed requests.
http_log = logging.getLogger(f"{__name__}.http")

#: Reviews in flight at once; more requests wait for a thread (a flood of fresh tokens
#: cannot turn into a flood of API requests).
REVIEW_THREADS = 2
#: A request has no business sending more: /metrics takes no body, and header lines and
#: counts are capped by the parser.
MAX_BODY_BYTES = 1024
MAX_HEADERS = 32
MAX_FIELD_BYTES = 8190  # a bound ServiceAccount token is about 1 KiB
#: Idle keep-alive connections close after this (scrapers come back every 15-60 s).
KEEPALIVE_SECONDS = 75.0
#: How often a mounted certificate is checked for renewal.
CERT_CHECK_SECONDS = 10.0


class _NoRequestEcho(logging.Filter):
    """aiohttp logs a malformed request with the bytes it choked on, which may be an
    Authorization header; keep the line, drop the bytes (the exception's text)."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            record.msg = f"{record.getMessage()}: {type(error).__name__} (HTTP {error.code})"
            record.args = None
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"  # the client's error
        return True


http_log.addFilter(_NoRequestEcho())


class Reviews(Protocol):
    """What `Gate` needs from the API server (`reviews.KubeReviews` in the operator)."""

    def review_token(self, token: str) -> dict[str, Any]: ...

    def review_access(self, user: User) -> dict[str, Any]: ...


class Gate:
    """Decides each request's answer from its Authorization header, reusing recent ones."""

    def __init__(
        self,
        reviews: Reviews,
        *,
        cache: VerdictCache | None = None,
        clock: Callable[[], float] = time.monotonic,
        threads: int = REVIEW_THREADS,
    ) -> None:
        self._reviews = reviews
        self._cache = cache or VerdictCache()
        self._clock = clock
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="metrics-review")
        self._pending: dict[str, asyncio.Future[Verdict]] = {}

    async def check(self, authorization: str | None) -> Verdict:
        token = bearer_token(authorization)
        if token is None:
            return NO_TOKEN
        key = token_key(token)
        cached = self._cache.get(key, self._clock())
        if cached is not None:
            return cached
        # Requests with the same token while its review runs wait for that one: a slow API
        # server then costs one review per token, not one per waiting scrape.
        pending = self._pending.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._review(token, key))
            self._pending[key] = pending
            pending.add_done_callback(lambda _: self._pending.pop(key, None))
        return await asyncio.shield(pending)

    async def _review(self, token: str, key: str) -> Verdict:
        loop = asyncio.get_running_loop()
        try:
            status = await loop.run_in_executor(self._pool, self._reviews.review_token, token)
            user = authenticated_user(status)
            allowed = False
            if user is not None:
                access = await loop.run_in_executor(self._pool, self._reviews.review_access, user)
                allowed = access_allowed(access)
        except ReviewError as err:
            # not cached: the next scrape asks again
            hint = (
                " (grant the operator the rules of files/metrics-auth-rules.yaml)"
                if err.status == 403
                else ""
            )
            log.error("metrics: could not review a request: %s%s", err, hint)
            return REVIEW_FAILED
        answer = verdict(user, allowed)
        self._cache.put(key, answer, self._clock())
        if not answer.allowed:
            log.info("metrics: refused a scrape with %d: %s", answer.status, answer.reason)
        return answer

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def make_app(registry: CollectorRegistry, gate: Gate) -> web.Application:
    """The aiohttp application: GET (and HEAD) /metrics, behind `gate`."""

    async def metrics(request: web.Request) -> web.StreamResponse:
        answer = await gate.check(request.headers.get("Authorization"))
        if not answer.allowed:
            headers = {"WWW-Authenticate": 'Bearer realm="trainyard-operator"'}
            return web.Response(
                status=answer.status,
                text=answer.reason + "\n",
                headers=headers if answer.status == 401 else None,
            )
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        response = web.Response(body=encoder(registry), headers={"Content-Type": content_type})
        response.enable_compression()  # when the scraper accepts it, as Prometheus does
        return response

    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.router.add_get(METRICS_PATH, metrics)
    return app


class SecureMetricsServer:
    """Serves `make_app` over TLS on (host, port) from a daemon thread until `close`."""

    def __init__(
        self,
        registry: CollectorRegistry,
        gate: Gate,
        context: ssl.SSLContext,
        *,
        host: str,
        port: int,
        certificate: CertificateFiles | None = None,
    ) -> None:
        self._gate = gate
        self._context = context
        self._certificate = certificate
        self._loop = asyncio.new_event_loop()
        self._runner = web.AppRunner(
            make_app(registry, gate),
            handle_signals=False,
            access_log=None,
            logger=http_log,
            keepalive_timeout=KEEPALIVE_SECONDS,
            max_headers=MAX_HEADERS,
            max_field_size=MAX_FIELD_BYTES,
        )
        # bind here, in the caller's thread: a taken port fails the operator's start
        self._loop.run_until_complete(self._runner.setup())
        try:
            site = web.TCPSite(self._runner, host, port, ssl_context=context)
            self._loop.run_until_complete(site.start())
        except BaseException:
            self._loop.run_until_complete(self._runner.cleanup())
            self._loop.close()
            raise
        self._thread = threading.Thread(target=self._run, name="metrics-server", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        if self._certificate is not None:
            self._loop.create_task(self._watch_certificate(self._certificate))
        self._loop.run_forever()

    async def _watch_certificate(self, certificate: CertificateFiles) -> None:
        # on this loop, so a reload never races a handshake using the context
        while True:
            await asyncio.sleep(CERT_CHECK_SECONDS)
            certificate.reload_if_changed(self._context)

    def close(self) -> None:
        """Stop serving and join the thread."""
        if not self._thread.is_alive():
            return
        future = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
        with contextlib.suppress(Exception):
            future.result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._gate.close()
