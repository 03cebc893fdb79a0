"""The small decoder-only transformer learns the embedded English text in a short run."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.timeout(300)


def test_text_loss_falls_to_six_tenths_of_its_first_value(trainer) -> None:
    run = trainer(
        {
            "trainer": {
                "model": "transformer",
                "dataset": "text",
                "epochs": 1,
                "batchSize": 32,
                "learningRate": 0.002,
            }
        },
        nproc=2,
    )
    assert run.finish() == 0, run.text
    results = run.results()
    first = results["firstLoss"]
    assert first > 4.0  # about ln(256): the untrained model guesses bytes uniformly
    assert results["history"][-1]["loss"] <= 0.6 * first
    assert results["history"][-1]["valLoss"] <= 0.6 * first
    assert results["accuracy"] > 0.25  # next-byte accuracy, far above 1/256
