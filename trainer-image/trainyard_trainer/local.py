"""`trainyard-train --config job.yaml`: run a TrainingJob's built-in trainer on this machine.

It reads the manifest a user would `kubectl apply`, fills the CRD's defaults (through
config.py, which holds the same defaults), checks the config and the dataset here, so a bad
manifest exits with code 2 and one line naming the field before anything starts, and then
runs `torchrun --standalone` with spec.workers x procsPerWorker processes and the same
environment the operator would give a worker pod (docs/contracts.md), through `launch.py`
so the exit code says what happened (2 config, 143 stopped, 137 a worker killed). Artifacts go to
`--output` (default `./trainyard-output/<name>`) instead of the pod's `/output`. No
cluster is involved; for the cluster path see the operator and deploy/local.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from trainyard_trainer import launch
from trainyard_trainer.config import ConfigError, JobConfig, parse_config
from trainyard_trainer.launch import torchrun_command

EXIT_CONFIG = 2
API_VERSION = "trainyard.dev/v1alpha1"


def _fail(message: str) -> int:
    print(f"trainyard-train: config error: {message}", file=sys.stderr, flush=True)
    return EXIT_CONFIG


def read_manifest(path: Path) -> dict[str, Any]:
    """The first TrainingJob document in `path`."""
    try:
        docs = list(yaml.safe_load_all(path.read_text()))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError("--config", f"cannot read {path}: {exc}") from exc
    for doc in docs:
        if isinstance(doc, dict) and doc.get("kind") == "TrainingJob":
            if doc.get("apiVersion") != API_VERSION:
                raise ConfigError(
                    "apiVersion", f"expected {API_VERSION}, got {doc.get('apiVersion')!r}"
                )
            return doc
    raise ConfigError("kind", f"{path} holds no TrainingJob")


def _positive_int(spec: dict[str, Any], key: str, default: int) -> int:
    value = spec.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"spec.{key}", f"must be an integer >= 1, got {value!r}")
    return value


def processes(spec: dict[str, Any]) -> int:
    """spec.workers x procsPerWorker, with `auto` = GPUs per worker (1 on CPU)."""
    workers = _positive_int(spec, "workers", 1)
    per_worker = spec.get("procsPerWorker", "auto")
    if per_worker == "auto":
        gpus = (spec.get("resources") or {}).get("gpus", 0) or 0
        per_worker = gpus if isinstance(gpus, int) and gpus > 0 else 1
    else:
        per_worker = _positive_int(spec, "procsPerWorker", 1)
    return int(workers * per_worker)


def trainer_config(doc: dict[str, Any], output: Path) -> tuple[dict[str, Any], JobConfig]:
    """The TRAINYARD_CONFIG object for this manifest, and its parsed form."""
    meta = doc.get("metadata") or {}
    spec = doc.get("spec") or {}
    if not isinstance(spec, dict):
        raise ConfigError("spec", "must be an object")
    if spec.get("command"):
        raise ConfigError("spec.command", "trainyard-train runs the built-in trainer only")
    raw = {
        "job": str(meta.get("name") or "local"),
        "namespace": str(meta.get("namespace") or "default"),
        "trainer": spec.get("trainer") or {},
        "compression": spec.get("compression") or [],
        "output": {"path": str(output)},
        "checkpoint": spec.get("checkpoint") or {},
    }
    return raw, parse_config(raw)


def _extra_env(spec: dict[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in spec.get("env") or []:
        if isinstance(item, dict) and "name" in item and item.get("value") is not None:
            env[str(item["name"])] = str(item["value"])
    return env


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trainyard-train", description="Run a TrainingJob's built-in trainer locally."
    )
    parser.add_argument("--config", required=True, type=Path, help="TrainingJob manifest (YAML)")
    parser.add_argument(
        "--output", type=Path, help="artifacts directory (./trainyard-output/<name>)"
    )
    parser.add_argument("--nproc", type=int, help="processes (default workers x procsPerWorker)")
    parser.add_argument("--metrics-port", type=int, default=0, help="serve metrics (0 = off)")
    parser.add_argument("--dry-run", action="store_true", help="print TRAINYARD_CONFIG and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        doc = read_manifest(args.config)
        name = str((doc.get("metadata") or {}).get("name") or "local")
        output = (args.output or Path("trainyard-output") / name).resolve()
        raw, cfg = trainer_config(doc, output)
        nproc = args.nproc or processes(doc.get("spec") or {})
        if args.dry_run:
            print(json.dumps(raw, indent=2))
            return 0
        # Loading the dataset here too catches an empty dataPath before torchrun starts
        # (torchrun would turn the trainer's exit code 2 into its own 1).
        from trainyard_trainer.datasets import load_dataset

        load_dataset(cfg.trainer.dataset, cfg.trainer.data_path, cfg.trainer.model)
    except ConfigError as exc:
        return _fail(str(exc))

    output.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        **_extra_env(doc.get("spec") or {}),
        "TRAINYARD_JOB": cfg.job,
        "TRAINYARD_NAMESPACE": cfg.namespace,
        "TRAINYARD_CONFIG": json.dumps(raw),
        "TRAINYARD_OUTPUT_DIR": str(output),
        "TRAINYARD_METRICS_PORT": str(args.metrics_port),
        "TRAINYARD_METRICS_HOST": os.environ.get("TRAINYARD_METRICS_HOST", "127.0.0.1"),
        "TRAINYARD_TERMINATION_LOG": str(output / "termination-log"),
        "PYTHONUNBUFFERED": "1",
    }
    env.setdefault("OMP_NUM_THREADS", "1")
    # --standalone: a free rendezvous port, so several local jobs can run at once.
    command = torchrun_command(["--standalone", "--max-restarts=0"], nproc)
    print(f"trainyard-train: {cfg.job}: {nproc} process(es), output {output}", flush=True)
    code = launch.run(command, env, expected=nproc)
    if code == 0:
        results = output / "results.json"
        if results.is_file():
            data = json.loads(results.read_text())
            for stage in data.get("stages", []):
                print(
                    f"  {stage['name']:<9} accuracy {stage['accuracy']:.4f}  "
                    f"bytes {stage['modelBytes']:>9}  sparsity {stage['sparsity']:.2f}  "
                    f"latency {stage['latencyMs']:.2f}ms"
                )
            print(f"  results: {results}")
    return code


if __name__ == "__main__":
    sys.exit(main())
