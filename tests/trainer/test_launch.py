"""How the launcher turns torchrun's catch-all exit 1 into codes the restart policy can use."""

from __future__ import annotations

from trainyard_trainer.launch import PEER_LOST, resolve


def test_success_and_config_errors() -> None:
    assert resolve(0, terminated=False, codes=[0, 0], expected=2) == 0
    assert resolve(1, terminated=False, codes=[2, 2], expected=2) == 2


def test_a_real_failure_stays_permanent_even_when_others_were_stopped() -> None:
    assert resolve(1, terminated=False, codes=[1, 143], expected=2) == 1


def test_killed_worker_and_sigterm_are_retryable() -> None:
    # One worker SIGKILLed (no code left), the other lost its peer or was stopped.
    assert resolve(1, terminated=False, codes=[PEER_LOST], expected=2) == 137
    # torchrun's SIGTERM may reach the survivor before its collective fails: still a kill.
    assert resolve(1, terminated=False, codes=[143], expected=2) == 137
    # Every worker stopped from outside, the launcher not told: a stop.
    assert resolve(1, terminated=False, codes=[143, 143], expected=2) == 143
    assert resolve(1, terminated=False, codes=[], expected=2) == 137
    # The launcher itself got SIGTERM and forwarded it.
    assert resolve(1, terminated=True, codes=[143, 143], expected=2) == 143
