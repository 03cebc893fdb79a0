"""Bad configs stop before training: exit code 2 and one line that names the field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from trainer_procs import trainer_env

from trainyard_trainer.config import ConfigError, parse_config

pytestmark = pytest.mark.timeout(120)

BAD = [
    ({"trainer": {"model": "resnet"}}, "trainer.model"),
    ({"trainer": {"epochs": -1}}, "trainer.epochs"),
    (
        {"compression": [{"quantize": {}}, {"prune": {}}]},
        "compression[0].quantize",
    ),
    ({"trainer": {"dataset": "mnist"}}, "trainer.dataPath"),
    # it names the TensorBoard folder under the output volume: no way out of it
    ({"job": "../elsewhere"}, "config.job"),
]


@pytest.mark.parametrize(("config", "field"), BAD, ids=[f for _, f in BAD])
def test_trainer_process_exits_2_naming_the_field(tmp_path: Path, config, field) -> None:
    output = tmp_path / "output"
    proc = subprocess.run(
        [sys.executable, "-m", "trainyard_trainer"],
        env=trainer_env(config, output),
        capture_output=True,
        check=False,
        text=True,
        timeout=90,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert f"{field}:" in lines[0]
    assert "epoch" not in proc.stdout  # nothing trained
    assert not (output / "checkpoints").exists()
    assert (tmp_path / "termination-log").read_text().startswith(f"error: {field}:")


def test_data_path_without_data_is_a_config_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "trainyard_trainer"],
        env=trainer_env(
            {"trainer": {"dataset": "imagefolder", "dataPath": str(empty)}}, tmp_path / "out"
        ),
        capture_output=True,
        check=False,
        text=True,
        timeout=90,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"trainyard-trainer: config error: trainer.dataPath: {empty} holds no data "
        "(expected <class>/<image> folders, optionally under train/ and test/)"
    ]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"trainer": {"batchSize": 0}}, "trainer.batchSize: must be >= 1, got 0"),
        ({"trainer": {"learningRate": 0}}, "trainer.learningRate: must be in (0, 10], got 0"),
        ({"trainer": {"epochs": "ten"}}, "trainer.epochs: must be an integer, got 'ten'"),
        ({"trainer": {"optimiser": "adam"}}, "trainer.optimiser: unknown field"),
        ({"trainer": {"model": "transformer"}}, "trainer.model: transformer needs a token"),
        ({"trainer": {"dataset": "text"}}, "trainer.model: mlp needs an image dataset"),
        ({"compression": [{"prune": {"amount": 1.5}}]}, "compression[0].prune.amount: must be in"),
        ({"compression": [{"prune": {}, "distill": {}}]}, "compression[0]: must set exactly one"),
        ({"compression": [{"quantize": {"method": "static"}}]}, "compression[0].quantize.method"),
        ({"compression": [{"prune": {}}, {"prune": {}}]}, "compression[1]: stage prune appears"),
        ({"checkpoint": {"keep": 0}}, "checkpoint.keep: must be >= 1"),
    ],
)
def test_validation_messages_name_the_field(config, message) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(config)
    assert str(err.value).startswith(message)


def test_operator_shaped_config_parses_with_nulls_and_defaults() -> None:
    cfg = parse_config(
        {
            "job": "digits-ddp",
            "namespace": "team-a",
            "trainer": {"model": "cnn", "epochs": 3},
            "compression": [
                {"prune": {"amount": 0.3}, "distill": None, "quantize": None},
                {"quantize": {"method": "static", "dtype": "int8", "calibrationBatches": 4}},
            ],
            "output": {"path": "/output", "volumeClaimName": ""},
            "checkpoint": {"everyEpochs": 2, "keep": 3},
        }
    )
    assert cfg.trainer.model == "cnn" and cfg.trainer.batch_size == 64
    assert [s.name for s in cfg.compression] == ["prune", "quantize"]
    assert cfg.total_epochs() == 3 + 2  # training plus the prune stage's fine-tuning
    assert cfg.checkpoint.keep == 3


def test_config_error_is_a_value_error_with_the_field() -> None:
    err = ConfigError("trainer.seed", "must be >= 0")
    assert isinstance(err, ValueError) and err.field_path == "trainer.seed"
