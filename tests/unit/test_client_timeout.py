"""Every API request the operator makes is bounded in time: an API server that accepts the
connection and never answers (cut off mid-request) fails the call instead of holding a
client thread, and the job it serves, forever. A real socket that never answers."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest
from kubernetes import client

from trainyard_operator.clients import KubeClient
from trainyard_operator.metrics import OperatorMetrics


def test_a_request_to_a_silent_server_fails_after_the_timeout() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:  # accept and say nothing, like a server that hung
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    configuration = client.Configuration()
    configuration.host = f"http://127.0.0.1:{listener.getsockname()[1]}"
    configuration.retries = False
    kube = KubeClient(client.ApiClient(configuration), OperatorMetrics(), 2, timeout=0.5)
    began = time.monotonic()
    try:
        with pytest.raises(Exception) as raised:
            asyncio.run(kube.get_job("ns", "job"))
    finally:
        kube.close()
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()
    assert (
        "timed out" in str(raised.value).lower() or "timeout" in type(raised.value).__name__.lower()
    )
    assert accepted, "the request never reached the server"
    # bounded by the timeout, not by the test's own limit (generous: the machine may be busy)
    assert time.monotonic() - began < 60
