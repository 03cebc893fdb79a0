"""Parsing what the trainer reports: its metrics text into progress, its message into results."""

from trainyard_operator.status import progress_from_metrics, results_from_message

METRICS = """\
# HELP trainyard_trainer_stage 1 for the running stage
# TYPE trainyard_trainer_stage gauge
trainyard_trainer_stage{stage="train"} 0.0
trainyard_trainer_stage{stage="prune"} 1.0
# TYPE trainyard_trainer_epoch gauge
trainyard_trainer_epoch 1.0
# TYPE trainyard_trainer_epochs gauge
trainyard_trainer_epochs 2.0
# TYPE trainyard_trainer_progress_ratio gauge
trainyard_trainer_progress_ratio 0.875
# TYPE trainyard_trainer_eta_seconds gauge
trainyard_trainer_eta_seconds 12.6
# TYPE trainyard_trainer_loss gauge
trainyard_trainer_loss 0.25
# TYPE trainyard_trainer_accuracy gauge
trainyard_trainer_accuracy 0.96
# TYPE trainyard_trainer_samples_per_second gauge
trainyard_trainer_samples_per_second 1500.0
# TYPE trainyard_trainer_model_bytes gauge
trainyard_trainer_model_bytes{stage="train"} 2270000.0
"""


def test_progress_comes_from_the_trainer_metrics() -> None:
    progress = progress_from_metrics(METRICS)
    assert progress is not None
    assert progress.stage == "prune"
    assert (progress.epoch, progress.total_epochs, progress.percent) == (1, 2, 87)
    assert progress.loss == 0.25 and progress.accuracy == 0.96
    assert progress.samples_per_second == 1500.0 and progress.eta_seconds == 12


def test_progress_rounds_what_the_printer_columns_show() -> None:
    text = METRICS.replace(
        "trainyard_trainer_loss 0.25", "trainyard_trainer_loss 0.07357922578761575"
    )
    text = text.replace("samples_per_second 1500.0", "samples_per_second 5762.42175462886")
    progress = progress_from_metrics(text)
    assert progress is not None
    assert (progress.loss, progress.samples_per_second) == (0.0736, 5762.4)


def test_an_endpoint_without_trainer_metrics_gives_no_progress() -> None:
    assert progress_from_metrics("# TYPE other gauge\nother 1\n") is None
    assert progress_from_metrics("not { prometheus") is None


def test_results_parse_the_contract_json_and_ignore_error_lines() -> None:
    results = results_from_message(
        '{"accuracy": 0.97, "parameters": 567434, "modelBytes": 2270000,'
        ' "stages": [{"name": "quantize", "modelBytes": 600000, "sparsity": 0.5}],'
        ' "artifactPath": "/output/model-final.pt"}'
    )
    assert results is not None
    assert results.model_bytes == 2270000
    assert results.stages[0].model_bytes == 600000
    assert results.artifact_path == "/output/model-final.pt"
    assert results_from_message("error: trainer.dataPath is required") is None
    assert results_from_message("{broken") is None


def test_every_worker_page_gives_its_step_counters() -> None:
    from trainyard_operator.status.readings import trainer_reading

    page = (
        "# TYPE trainyard_trainer_steps counter\n"
        "trainyard_trainer_steps_total 120.0\n"
        "trainyard_trainer_steps_created 1.7e9\n"
        "# TYPE trainyard_trainer_step_compute_seconds counter\n"
        "trainyard_trainer_step_compute_seconds_total 6.5\n"
    )
    reading = trainer_reading(METRICS + page)
    assert reading is not None and reading.progress is not None
    assert (reading.steps, reading.compute_seconds) == (120.0, 6.5)
    # a worker other than 0 is read for its counters alone
    bare = trainer_reading(page)
    assert bare is not None and (bare.steps, bare.compute_seconds) == (120.0, 6.5)
    assert trainer_reading("not { prometheus") is None
