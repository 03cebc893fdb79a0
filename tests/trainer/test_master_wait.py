"""The bounded wait for the rendezvous master: a clear error instead of a silent hang."""

from __future__ import annotations

import socket
import threading

import pytest

from trainyard_trainer.distributed import MasterUnreachableError, wait_for_master


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_master_raises_naming_it() -> None:
    port = closed_port()
    with pytest.raises(MasterUnreachableError, match=rf"master 127\.0\.0\.1:{port} not reachable"):
        wait_for_master("127.0.0.1", port, timeout_s=1.0)


def test_master_that_comes_up_late_is_waited_for() -> None:
    port = closed_port()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)

    def open_later() -> None:
        listener.bind(("127.0.0.1", port))
        listener.listen()

    timer = threading.Timer(1.0, open_later)
    timer.start()
    try:
        wait_for_master("127.0.0.1", port, timeout_s=20.0)
    finally:
        timer.join()
        listener.close()
