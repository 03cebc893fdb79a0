"""/healthz for a replica standing by for the Lease, so its liveness probe passes.

kopf serves /healthz only once it runs, and a standby runs no kopf: without this the kubelet
would restart every standby. The server is closed before kopf binds the same port.
"""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        ok = self.path.split("?", 1)[0] == "/healthz"
        body = b"standing by for the leader lease\n" if ok else b"not found\n"
        self.send_response(200 if ok else 404)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Probes every few seconds are not worth a log line."""


class _Server(ThreadingHTTPServer):
    allow_reuse_address = True  # kopf binds the same port right after `close`
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class StandbyHealth:
    """Serves /healthz from a daemon thread until `close`."""

    def __init__(self, host: str, port: int) -> None:
        server = _Server6 if ":" in host else _Server
        self._server = server((host, port), _Health)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="standby-health", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
