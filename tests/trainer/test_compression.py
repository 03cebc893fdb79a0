"""Compression stages on the digits models: each measured, each within its accuracy budget,
and the saved files really smaller (and loadable)."""

from __future__ import annotations

import pytest
import torch
from trainer_procs import DIGITS

from trainyard_trainer.artifacts import load_model
from trainyard_trainer.datasets import load_digits
from trainyard_trainer.quantization import quiet_quantized

pytestmark = pytest.mark.timeout(300)


def saved_model_accuracy(path: str) -> float:
    model = load_model(__import__("pathlib").Path(path))
    data = load_digits("")
    with torch.no_grad(), quiet_quantized():
        predicted = model(data.test_x).argmax(dim=1)
    return float((predicted == data.test_y).float().mean())


def test_prune_then_dynamic_int8(trainer) -> None:
    run = trainer(
        {
            "trainer": {**DIGITS, "epochs": 12},
            "compression": [
                {"prune": {"amount": 0.5, "method": "global-unstructured", "fineTuneEpochs": 2}},
                {"quantize": {"method": "dynamic"}},
            ],
        }
    )
    assert run.finish() == 0, run.text
    train, prune, quant = run.stage("train"), run.stage("prune"), run.stage("quantize")
    assert train["accuracy"] >= 0.95
    # prune 50% + fine-tune: within a point, and the sparse file is really smaller.
    assert prune["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert prune["accuracy"] >= train["accuracy"] - 0.01
    assert prune["modelBytes"] <= 0.65 * train["modelBytes"]
    # dynamic int8: at most 0.30 of the dense bytes, within a point.
    assert quant["modelBytes"] <= 0.30 * train["modelBytes"]
    assert quant["accuracy"] >= train["accuracy"] - 0.01
    assert quant["sparsity"] == pytest.approx(prune["sparsity"], abs=0.01)
    for stage in (train, prune, quant):
        assert stage["latencyMs"] > 0 and stage["seconds"] >= 0 and stage["parameters"] > 0
    # The files load back into runnable models with the accuracy the run reported.
    assert saved_model_accuracy(quant["artifact"]) == pytest.approx(quant["accuracy"], abs=1e-6)
    assert saved_model_accuracy(prune["artifact"]) == pytest.approx(prune["accuracy"], abs=1e-6)
    assert run.results()["artifactPath"].endswith("model-final.pt")
    assert saved_model_accuracy(run.results()["artifactPath"]) == pytest.approx(
        quant["accuracy"], abs=1e-6
    )


def test_distill_quarter_width_student(trainer) -> None:
    run = trainer(
        {
            "trainer": {**DIGITS, "epochs": 12},
            "compression": [
                {"distill": {"studentScale": 0.25, "temperature": 4.0, "alpha": 0.7, "epochs": 12}}
            ],
        }
    )
    assert run.finish() == 0, run.text
    teacher, student = run.stage("train"), run.stage("distill")
    assert student["accuracy"] >= 0.93
    assert student["parameters"] < 0.15 * teacher["parameters"]
    assert student["modelBytes"] < 0.15 * teacher["modelBytes"]


def test_static_int8_cnn_loads_and_evaluates(trainer) -> None:
    run = trainer(
        {
            "trainer": {**DIGITS, "model": "cnn", "epochs": 4},
            "compression": [{"quantize": {"method": "static", "calibrationBatches": 5}}],
        }
    )
    assert run.finish() == 0, run.text
    train, quant = run.stage("train"), run.stage("quantize")
    assert train["accuracy"] >= 0.9
    assert quant["accuracy"] >= train["accuracy"] - 0.03
    assert quant["modelBytes"] <= 0.35 * train["modelBytes"]
    assert saved_model_accuracy(quant["artifact"]) == pytest.approx(quant["accuracy"], abs=1e-6)
