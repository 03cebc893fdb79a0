"""The node agent's kubelet-style log endpoint, so that `kubectl logs` works on the local cluster.

Dev/test tooling, like the agent itself. kube-apiserver answers `kubectl logs` by calling the
pod's node at `https://<InternalIP>:<status.daemonEndpoints.kubeletEndpoint.Port>` with
`GET /containerLogs/<namespace>/<pod>/<container>?follow=…&tailLines=…&limitBytes=…`; the
agent reports its own port there and serves the files the process runner writes
(`<pod dir>/<container>.log`, stdout and stderr together).

What it honours: `follow` (streams until the pod has finished, then ends as a kubelet does
when the container exits), `tailLines`, `limitBytes`, and — from the per-line arrival times
the runner keeps (`container_log.py`) — `timestamps` (each line prefixed with its RFC 3339
time and a space) and `sinceSeconds` / `sinceTime` (lines that arrived at or after it;
`tailLines` counts among those). With either of the last two only whole lines are sent, a
line still being written once it ends. `previous` is answered 400 because containers here
are never restarted in place (a gang restart makes new pods). Pods of the fake runner have
no output: their logs are empty.

Only kube-apiserver may ask: TLS with the cluster's serving certificate, and a client
certificate signed by the cluster CA whose common name is the API server's kubelet client
(`pki.CLIENTS["kubelet-client"]`).
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from trainyard_local.container_log import parse_stamp, timed_lines
from trainyard_local.pki import CLIENTS, Pki

log = logging.getLogger("trainyard_local.log_server")

#: How often a followed log is checked for new output.
FOLLOW_POLL_SECONDS = 0.2
CHUNK = 64 * 1024


@dataclass(frozen=True)
class LogTarget:
    """Where one container's output is, and whether more may still come."""

    path: Path
    running: Callable[[], bool]


#: (namespace, pod, container) -> the target, or None when no such pod runs on our nodes.
Lookup = Callable[[str, str, str], LogTarget | None]


def tail(data: bytes, lines: int) -> bytes:
    """The last `lines` lines of data (a final line without a newline counts as one)."""
    if lines <= 0:
        return b""
    parts = data.splitlines(keepends=True)
    return b"".join(parts[-lines:])


class _Handler(BaseHTTPRequestHandler):
    server: LogServer

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.client_address[0], *args)

    def setup(self) -> None:
        # the handshake was deferred at accept (see LogServer); do it here, in this thread
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(30)
            self.request.do_handshake()
        super().setup()

    def do_GET(self) -> None:
        if not self._authorized():
            self._error(403, "only kube-apiserver's kubelet client certificate may read logs")
            return
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.split("/") if p]
        if len(parts) != 4 or parts[0] != "containerLogs":
            self._error(404, f"not found: {url.path}")
            return
        _, namespace, pod, container = parts
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if query.get("previous") == "true":
            self._error(
                400,
                f'previous terminated container "{container}" in pod "{pod}" not found '
                "(containers are never restarted in place here)",
            )
            return
        target = self.server.lookup(namespace, pod, container)
        if target is None:
            self._error(404, f"pod {namespace}/{pod} (container {container}) is not on this node")
            return
        try:
            tail_lines = int(query["tailLines"]) if "tailLines" in query else None
            limit = int(query["limitBytes"]) if "limitBytes" in query else None
            since = _since(query)
        except ValueError as error:
            self._error(400, f"bad query parameter: {error}")
            return
        follow = query.get("follow") == "true"
        timestamps = query.get("timestamps") == "true"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        # the reader may go away (kubectl interrupted): nothing to do then
        with contextlib.suppress(BrokenPipeError, ConnectionResetError, ssl.SSLError):
            if timestamps or since is not None:
                self._stream_lines(target, tail_lines, limit, since, timestamps, follow=follow)
            else:
                self._stream(target, tail_lines, limit, follow=follow)

    def _stream(
        self, target: LogTarget, tail_lines: int | None, limit: int | None, *, follow: bool
    ) -> None:
        """The log's bytes as written (a line still being written is sent as it comes)."""
        remaining = limit if limit is not None else -1
        data = _read_from(target.path, 0, size=-1)
        offset = len(data)  # what follow continues from, whatever tail leaves out
        if tail_lines is not None:
            data = tail(data, tail_lines)
        remaining = self._send(data, remaining)
        while follow and remaining != 0 and not self.server.stopping.is_set():
            # the state is read before the file, so the output written just before the
            # container finished is still sent
            alive = target.running()
            chunk = _read_from(target.path, offset)
            offset += len(chunk)
            remaining = self._send(chunk, remaining)
            if not chunk:
                if not alive:
                    return
                time.sleep(FOLLOW_POLL_SECONDS)

    def _stream_lines(
        self,
        target: LogTarget,
        tail_lines: int | None,
        limit: int | None,
        since: float | None,
        timestamps: bool,
        *,
        follow: bool,
    ) -> None:
        """Whole lines with their arrival times: filtered by `since`, stamped if asked."""

        def kept(lines: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
            return [(w, line) for w, line in lines if since is None or parse_stamp(w) >= since]

        def render(lines: list[tuple[str, bytes]]) -> bytes:
            return b"".join((f"{w} ".encode() if timestamps else b"") + line for w, line in lines)

        remaining = limit if limit is not None else -1
        alive = target.running()
        lines, offset, row = timed_lines(target.path, ended=not alive)
        lines = kept(lines)
        if tail_lines is not None:
            lines = lines[-tail_lines:] if tail_lines > 0 else []
        remaining = self._send(render(lines), remaining)
        while follow and remaining != 0 and not self.server.stopping.is_set():
            alive = target.running()  # before the read, as in _stream
            lines, offset, row = timed_lines(target.path, offset, row, ended=not alive)
            remaining = self._send(render(kept(lines)), remaining)
            if not lines:
                if not alive:
                    return
                time.sleep(FOLLOW_POLL_SECONDS)

    def _send(self, data: bytes, remaining: int) -> int:
        """Write data within limitBytes; returns what the limit still allows (-1: no limit)."""
        if remaining >= 0:
            data = data[:remaining]
            remaining -= len(data)
        if data:
            self.wfile.write(data)
            self.wfile.flush()
        return remaining

    def _authorized(self) -> bool:
        connection = self.connection
        if not isinstance(connection, ssl.SSLSocket):
            return False
        subject = (connection.getpeercert() or {}).get("subject", ())
        names = [pair[1] for rdn in subject for pair in rdn if pair[0] == "commonName"]
        return CLIENTS["kubelet-client"][0] in names

    def _error(self, code: int, message: str) -> None:
        body = (message + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _since(query: dict[str, str]) -> float | None:
    """The earliest line time asked for (sinceSeconds or sinceTime), in epoch seconds."""
    if "sinceSeconds" in query:
        return time.time() - int(query["sinceSeconds"])
    if "sinceTime" in query:
        return parse_stamp(query["sinceTime"])
    return None


def _read_from(path: Path, offset: int, size: int = CHUNK) -> bytes:
    """Up to `size` bytes (-1: all) from offset; nothing when the file is not there (yet)."""
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            return handle.read(size)
    except FileNotFoundError:
        return b""


class LogServer(ThreadingHTTPServer):
    """Serves container logs over TLS on 127.0.0.1:port, one thread per request."""

    daemon_threads = True

    def __init__(self, port: int, pki: Pki, lookup: Lookup) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.lookup = lookup
        self.stopping = threading.Event()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pki.serving_cert, pki.serving_key)
        context.load_verify_locations(pki.ca_cert)
        context.verify_mode = ssl.CERT_REQUIRED
        # the handshake runs in the request's thread, so a slow client never holds up accept
        self.socket = context.wrap_socket(
            self.socket, server_side=True, do_handshake_on_connect=False
        )

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that failed the TLS handshake (no certificate, another CA) or went away
        log.debug("log request from %s failed", client_address, exc_info=True)

    def start(self) -> threading.Thread:
        """Serve in a daemon thread."""
        thread = threading.Thread(target=self.serve_forever, name="log-server", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self.stopping.set()
        self.shutdown()
        self.server_close()
