"""Admission fuzz campaign: does the API server refuse every bad TrainingJob with a message that
names the field, and can the operator read and reconcile every TrainingJob it admits?

COUNT manifests (default 5000) are generated from SEED, each from its own `random.Random`, so a
run is reproducible and any one manifest can be regenerated alone (`generate_case(seed, i)`):

- drawn from the CRD's OpenAPI v3 schema (crds/trainyard.dev_trainingjobs.yaml): every property
  the schema has, values inside their bounds and patterns, optional fields left out at random;
  most of them are then made to satisfy the cross-field CEL rules so that plenty are admitted;
- or one of examples/*.yaml, mutated one to four times: numbers out of range (and at their
  bounds), negative durations, wrong JSON types, nulls, unknown fields, huge strings, bad enum
  values, pattern violations, removed (required) fields, lists over maxItems, duplicate list-map
  keys, tricky quantities, broken metadata.name, the CEL rules' edge cases, pod-level powers
  and garbage in `spec.podTemplate.spec` (which the schema leaves open).

Only the TrainingJob's own content is fuzzed (metadata and spec): `apiVersion`, `kind` and the
namespace stay those of the request URL, as kubectl sends them, since the API server checks
them while decoding the request, before the CRD's schema or our policy is involved.

Each manifest is sent through server-side dry run (`dryRun=All` on create, fieldValidation
Strict as kubectl uses, sometimes Warn) to a real kube-apiserver with the CRD and the chart's
ValidatingAdmissionPolicy (templates/admission-policy.yaml), either as admin (who may create
pods) or as a user holding only the chart's edit role for TrainingJobs (who may not, so the
policy refuses pod-level powers). Counted and printed:

- manifests sent, admitted, refused;
- refusals that name a field path, and those that do not (target 0), see `names_field_path`;
- for every admitted manifest, the object the server returned (defaults applied, unknown fields
  pruned) goes through the operator's pure code as a reconcile pass runs it
  (`check_operator`): `TrainingJob.from_object`, `implied_events`, `reconcile` over a few pod
  sets and times (no pods; all Running; worker 0 Failed with exit 137 or 1; all Succeeded;
  Pending too long; a refused creation; a lost worker; now and a century later), the status
  each pass writes read back, and the pods, Service, NetworkPolicy and PodGroups the plan
  asks for built. Exceptions (a pydantic ValidationError included) are failures (target 0);
- server errors (5xx, timeouts; target 0).

Run: `.venv/bin/python bench/admission_fuzz.py --count 5000 [--seed 1] [--threads 8]`. It
starts its own embedded cluster (trainyard_local.LocalCluster, fake node agent) and stops it
at the end; it exits 1 when any target count is not 0. tests/integration/test_admission_fuzz.py
runs the same campaign, smaller, against the test session's cluster.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import itertools
import json
import math
import random
import re
import string
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any, Literal, ParamSpec, TypeVar

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from rich.console import Console
from rich.table import Table
from urllib3.exceptions import HTTPError

from trainyard_operator.api.constants import (
    API_VERSION,
    GROUP,
    KIND,
    LABEL_JOB_NAME,
    LABEL_RESTART,
    LABEL_WORKER_INDEX,
    PLURAL,
    RESERVED_ENV,
    VERSION,
)
from trainyard_operator.api.job import TrainingJob
from trainyard_operator.api.spec import FILE_DATASETS
from trainyard_operator.api.status import Progress
from trainyard_operator.builders.networkpolicy import network_policy
from trainyard_operator.builders.podgroup import pod_group
from trainyard_operator.builders.pods import worker_pod
from trainyard_operator.builders.service import headless_service
from trainyard_operator.builders.settings import (
    BuildSettings,
    NetworkPolicySettings,
    PodGroupFlavor,
)
from trainyard_operator.settings import DEFAULT_TRAINER_IMAGE
from trainyard_operator.status import (
    CreateFailure,
    Plan,
    PodView,
    checkpoints_lost_on_restart,
    format_time,
    implied_events,
    parse_time,
    reconcile,
)
from trainyard_operator.status.gpus import GpuCapacity, NodeView, QuotaView, Taint
from trainyard_operator.status.ownership import sort_by_owner

ROOT = Path(__file__).resolve().parents[1]
CRD_PATH = ROOT / "crds" / "trainyard.dev_trainingjobs.yaml"
EXAMPLES_DIR = ROOT / "examples"
CHART = ROOT / "deploy" / "helm" / "trainyard"
# Its own release name, so the policy and roles it applies never clash with (or delete) those
# of a `helm install trainyard` in the same cluster.
RELEASE = "trainyard-fuzz"
POLICY = f"{RELEASE}-pod-powers"
EDIT_ROLE = f"{RELEASE}-edit"
#: Impersonated user bound to the chart's edit role only: it may create TrainingJobs but not
#: pods, so the policy refuses it every pod-level power.
EDITOR = "fuzz-editor"

Requester = Literal["admin", "editor"]
JSON = Any
PathT = tuple[str | int, ...]
P = ParamSpec("P")
T = TypeVar("T")


# --- the manifests ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One generated manifest and how it is sent."""

    index: int
    source: str
    """"schema", "schema+rules" (made to satisfy the CEL rules) or "example:<file>"."""
    mutations: tuple[str, ...]
    """What was done to it: "<kind>@<path>" each."""
    requester: Requester
    field_validation: Literal["Strict", "Warn"]
    manifest: dict[str, Any]


@cache
def crd_schema() -> dict[str, Any]:
    """The CRD's openAPIV3Schema (the one version it serves)."""
    crd = yaml.safe_load(CRD_PATH.read_text())
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


@cache
def examples() -> tuple[tuple[str, dict[str, Any]], ...]:
    """(file name, manifest) of every example, all valid TrainingJobs."""
    return tuple(
        (path.name, yaml.safe_load(path.read_text()))
        for path in sorted(EXAMPLES_DIR.glob("*.yaml"))
    )


# metadata is `type: object` in the CRD; the API server's ObjectMeta rules and the CRD's root
# CEL rules about the name are what applies, written here so mutations can aim at them.
METADATA_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 48, "pattern": r"^[a-z]([-a-z0-9]*[a-z0-9])?$"},
        "labels": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 63}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}

NAME_ALPHABET = string.ascii_lowercase + string.digits + "-"
LOWER = string.ascii_lowercase + string.digits
WORDS = ("train", "job", "mnist", "a", "x1", "team-a", "gpu", "fsdp", "demo", "z")
VALID_QUANTITIES = tuple(
    [
        "1",
        "2",
        "100m",
        "250m",
        "500m",
        "0.5",
        "1.5",
        "64Mi",
        "512Mi",
        "2Gi",
        "16Gi",
        "1Ti",
        "1k",
        "1M",
        "1e3",
        "1E3",
        "1m",
        "1n",
        "0.001",
        "1Ei",
        "1P",
    ]
)
TRICKY_QUANTITIES = (
    "0",
    "0m",
    "0Gi",
    "-1",
    "-0",
    "-500m",
    "abc",
    "1 ",
    " 1",
    "1.",
    ".5",
    "+1",
    "1e-3",
    "1e",
    "e3",
    "1e+3",
    "1Ki",
    "1ki",
    "1KI",
    "1Mi1",
    "0x10",
    "NaN",
    "Inf",
    "1_000",
    "\u0661",  # an Arabic-Indic digit one
    "9223372036854775807",
    "9223372036854775808",
    "99999999999999999999999999Ei",
    "1.0000000000000000001",
    "0.0000000001",
    "0.0001m",
    "12345678901234567890m",
    "1E",
    "1e3Mi",
    "2Gi ",
    "",
)
BAD_NUMBERS = (-1, 0, -(2**31), 2**31, 2**32, 2**53 + 1, 2**63 - 1, -(2**63), 2**64, 1e300, -1e300)
UNICODE = "éßΩ中文😀\u200b\u00a0"


def dns_label(rng: random.Random, max_length: int = 48) -> str:
    """A DNS-1035 label: a lowercase letter, then letters, digits and inner dashes."""
    length = rng.choice([1, 2, 5, 10, rng.randint(1, max_length), max_length])
    text = rng.choice(string.ascii_lowercase) + "".join(
        rng.choice(NAME_ALPHABET) for _ in range(length - 1)
    )
    return text.rstrip("-") or "a"


def _candidate(rng: random.Random, max_length: int) -> str:
    """A string from one of a few alphabets; the pattern sampler filters them."""
    length = min(max_length, rng.choice([0, 1, 3, 8, 20, rng.randint(0, 64)]))
    pool = rng.choice(
        [
            LOWER + "-.",
            string.ascii_letters + string.digits + "-_.",
            "".join(chr(c) for c in range(0x20, 0x7F)),
            string.ascii_lowercase + "/-_",
        ]
    )
    text = "".join(rng.choice(pool) for _ in range(length))
    if pool.startswith(string.ascii_lowercase + "/") and rng.random() < 0.8:
        text = "/" + text[1:] if text else "/"
    return text


def sample_string(rng: random.Random, node: dict[str, Any]) -> str:
    """A string valid for the schema node (pattern and maxLength), by rejection sampling."""
    max_length = int(node.get("maxLength", 64))
    pattern = node.get("pattern")
    if pattern is None:
        return _candidate(rng, max_length)
    # RE2's `$` is the end of the text; Python's also matches before a final newline.
    compiled = re.compile(pattern.replace("$", r"\Z"))
    for _ in range(64):
        text = _candidate(rng, max_length)
        if compiled.search(text):
            return text
    return "" if compiled.search("") else "/" + dns_label(rng)


def random_json(rng: random.Random, depth: int = 0, max_depth: int = 4) -> JSON:
    """Any JSON value: nested objects and lists over scalars of every type."""
    if depth < max_depth and rng.random() < 0.45:
        size = rng.randint(0, 4)
        if rng.random() < 0.5:
            return [random_json(rng, depth + 1, max_depth) for _ in range(size)]
        return {_key(rng): random_json(rng, depth + 1, max_depth) for _ in range(size)}
    return rng.choice(
        [
            None,
            True,
            False,
            rng.randint(-5, 5),
            rng.choice(BAD_NUMBERS),
            rng.uniform(-1e6, 1e6),
            "",
            rng.choice(WORDS),
            "".join(rng.choice(UNICODE) for _ in range(rng.randint(1, 6))),
        ]
    )


def _key(rng: random.Random) -> str:
    return rng.choice([*WORDS, "name", "image", "env", "spec", "x-y", "a.b", "A", "🔑", ""])


def _number_in(rng: random.Random, node: dict[str, Any], *, integer: bool) -> float | int:
    low = node.get("minimum", -1000 if integer else -1e3)
    high = node.get("maximum", 1000 if integer else 1e3)
    if integer:
        return int(
            rng.choice([low, high, rng.randint(low, min(high, low + 10)), rng.randint(low, high)])
        )
    value = rng.choice([low, high, rng.uniform(low, high), low + (high - low) * 1e-6])
    # exclusive bounds: step inside by the smallest float
    if node.get("exclusiveMinimum") and value <= low:
        value = math.nextafter(low, math.inf)
    if node.get("exclusiveMaximum") and value >= high:
        value = math.nextafter(high, -math.inf)
    return float(value)


def _is_quantity(node: dict[str, Any]) -> bool:
    return any("isQuantity" in r.get("rule", "") for r in node.get("x-kubernetes-validations", []))


def from_schema(rng: random.Random, node: dict[str, Any], depth: int = 0) -> JSON:
    """A value valid for one schema node taken alone (cross-field CEL rules aside)."""
    if "enum" in node:
        return rng.choice(node["enum"])
    if node.get("x-kubernetes-int-or-string"):
        return rng.choice(["auto", rng.randint(1, 8), rng.randint(1, 64)])
    kind = node.get("type")
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "integer":
        return _number_in(rng, node, integer=True)
    if kind == "number":
        return _number_in(rng, node, integer=False)
    if kind == "string":
        if _is_quantity(node):
            return rng.choice(VALID_QUANTITIES)
        return sample_string(rng, node)
    if kind == "array":
        size = rng.randint(0, min(int(node.get("maxItems", 4)), 4))
        return [from_schema(rng, node.get("items", {}), depth + 1) for _ in range(size)]
    if kind == "object":
        props: dict[str, Any] = node.get("properties") or {}
        required = set(node.get("required") or [])
        if props:
            return {
                key: from_schema(rng, sub, depth + 1)
                for key, sub in props.items()
                if key in required or rng.random() < 0.5
            }
        if "additionalProperties" in node:
            size = rng.randint(0, min(int(node.get("maxProperties", 3)), 3))
            value_node = node["additionalProperties"]
            return {
                f"{dns_label(rng, 20)}.io/{dns_label(rng, 20)}": from_schema(rng, value_node)
                for _ in range(size)
            }
        if node.get("x-kubernetes-preserve-unknown-fields"):
            return {_key(rng): random_json(rng, depth) for _ in range(rng.randint(0, 3))}
    return {}


def satisfy_rules(rng: random.Random, spec: dict[str, Any]) -> None:
    """Make a schema-drawn spec meet the CRD's cross-field CEL rules, so that it is admitted.

    Only rules the schema alone cannot express are repaired; each mirrors one rule in
    operator/trainyard_operator/api/spec.py.
    """
    trainer = spec.get("trainer")
    if isinstance(trainer, dict):
        if trainer.get("model") == "transformer" and trainer.get("dataset") not in (
            "text",
            "synthetic",
        ):
            trainer["dataset"] = rng.choice(["text", "synthetic"])
        if trainer.get("dataset") == "text":
            trainer["model"] = "transformer"
        if trainer.get("dataset") in FILE_DATASETS and not trainer.get("dataPath"):
            trainer["dataPath"] = "/data"
    gpus = (spec.get("resources") or {}).get("gpus", 0)
    # "auto" may choose 0 GPUs, so fp16 needs an integer; an integer procsPerWorker beyond an
    # integer gpus has no GPU per process ("auto" chooses within it)
    exact = gpus if isinstance(gpus, int) else 0
    if isinstance(trainer, dict) and trainer.get("precision") == "fp16" and not exact:
        trainer["precision"] = "bf16"
    procs = spec.get("procsPerWorker")
    if exact and isinstance(procs, int) and procs > exact:
        spec["procsPerWorker"] = exact
    if "compression" in spec:
        stages: list[dict[str, Any]] = []
        for stage in spec["compression"]:
            kinds = [k for k in ("prune", "distill") if k in stage]
            if kinds and kinds[0] not in {next(iter(s)) for s in stages}:
                stages.append({kinds[0]: stage[kinds[0]]})
        quantize = next((s["quantize"] for s in spec["compression"] if "quantize" in s), None)
        if quantize is not None:
            model = trainer.get("model", "mlp") if isinstance(trainer, dict) else "mlp"
            if model != "cnn" and quantize.get("method") == "static":
                quantize["method"] = "dynamic"
            stages.append({"quantize": quantize})
        spec["compression"] = stages
    output = spec.get("output")
    if isinstance(output, dict) and "path" in output:
        path = output["path"]
        if path == "/" or any(
            path == p or path.startswith(p + "/") for p in ("/dev", "/proc", "/sys")
        ):
            output["path"] = "/output"
    if "env" in spec:
        seen: set[str] = set()
        env = []
        for var in spec["env"]:
            name = var["name"]
            if name in seen or name in RESERVED_ENV or name.startswith(("PET_", "TRAINYARD_")):
                continue
            seen.add(name)
            if "value" in var and "valueFrom" in var:
                del var["valueFrom"]
            env.append(var)
        spec["env"] = env


def manifest_from_schema(rng: random.Random, *, rules: bool) -> dict[str, Any]:
    spec = from_schema(rng, crd_schema()["properties"]["spec"])
    if rules:
        satisfy_rules(rng, spec)
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": dns_label(rng)},
        "spec": spec,
    }


# --- mutations --------------------------------------------------------------------------------


def schema_of(path: PathT) -> dict[str, Any]:
    """The schema node a manifest path points at ({} where the schema says nothing)."""
    if not path:
        return {}
    node: dict[str, Any] = (
        METADATA_SCHEMA if path[0] == "metadata" else crd_schema()["properties"].get(path[0], {})
    )
    for step in path[1:]:
        if isinstance(step, int):
            node = node.get("items", {})
        else:
            props = node.get("properties") or {}
            node = props.get(step) or node.get("additionalProperties") or {}
        if not isinstance(node, dict):
            return {}
    return node


def nodes(value: JSON, path: PathT) -> Iterator[tuple[PathT, JSON]]:
    """Every (path, value) in a manifest subtree, the subtree itself first."""
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from nodes(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from nodes(item, (*path, i))


def absent_fields(manifest: dict[str, Any]) -> list[PathT]:
    """Schema properties that a manifest's existing objects leave out (places to add a field)."""
    out: list[PathT] = []
    for path, value in nodes({k: manifest[k] for k in ("metadata", "spec")}, ()):
        if path and isinstance(value, dict):
            props = schema_of(path).get("properties") or {}
            out += [(*path, key) for key in props if key not in value]
    return out


def get_at(root: JSON, path: PathT) -> JSON:
    for step in path:
        root = root[step]
    return root


def set_at(root: dict[str, Any], path: PathT, value: JSON) -> None:
    """Set a value, creating the objects on the way (lists get the item appended)."""
    node: Any = root
    for step, following in itertools.pairwise(path):
        if isinstance(node, dict):
            if not isinstance(node.get(step), dict | list):
                node[step] = [] if isinstance(following, int) else {}
            node = node[step]
        else:
            node = node[step]
    last = path[-1]
    if isinstance(node, list) and isinstance(last, int) and last >= len(node):
        node.append(value)
    else:
        node[last] = value


def delete_at(root: dict[str, Any], path: PathT) -> None:
    parent = get_at(root, path[:-1])
    del parent[path[-1]]


def dotted(path: PathT) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


def _same_type(value: JSON, kind: str | None) -> bool:
    """Whether the API server would take `value` as the schema type `kind`."""
    if isinstance(value, bool):
        return kind == "boolean"
    if isinstance(value, int):
        return kind in ("integer", "number")
    if isinstance(value, float):
        # 2.0 is an integer to the API server
        return kind == "number" or (kind == "integer" and value.is_integer())
    if isinstance(value, str):
        return kind == "string"
    if isinstance(value, list):
        return kind == "array"
    return kind == "object"


def wrong_type(rng: random.Random, node: dict[str, Any]) -> JSON:
    """A value of another JSON type than the node's."""
    choices: list[JSON] = ["12", "true", "abc", 12, -3, 1.5, 2.0, True, [], [1, "a"], {}, {"a": 1}]
    return rng.choice([c for c in choices if not _same_type(c, node.get("type"))])


def huge_string(rng: random.Random, node: dict[str, Any]) -> str:
    """A long string: at maxLength, one past it, or far past it (bodies stay under 3 MiB)."""
    limit = node.get("maxLength")
    char = rng.choice(["x", "x", "é", "😀", "\x00", "\n"])
    sizes = [4096, 65536] + ([1 << 20] if char == "x" else [])
    if limit is not None:
        sizes += [int(limit), int(limit) + 1, int(limit) + 1]
    return char * min(rng.choice(sizes), 1 << 20 if char == "x" else 1 << 16)


def bad_enum(rng: random.Random, node: dict[str, Any]) -> str:
    value = str(rng.choice(node["enum"]))
    return (
        rng.choice(
            [
                value.upper(),
                value.lower(),
                value.capitalize(),
                f" {value}",
                f"{value} ",
                "",
                "none",
                value + "x",
            ]
        )
        if value.upper() != value.lower()
        else rng.choice(["", "x", value + "x"])
    )


def pattern_violation(rng: random.Random, node: dict[str, Any]) -> str:
    base = sample_string(rng, node) or "a"
    return rng.choice(
        [
            base.upper() + "A",
            f" {base}",
            f"{base}\n",
            f"-{base}",
            f"{base}-",
            f"{base}=x",
            "é" + base,
            "=",
            "a b",
            "relative/path",
            "..",
            "/",
        ]
    )


def mutate_value(rng: random.Random, path: PathT, value: JSON) -> tuple[str, JSON]:
    """One mutation of the value at `path`, chosen by what its schema node allows."""
    node = schema_of(path)
    kind = node.get("type")
    options: list[str] = ["wrong-type", "null"]
    if kind in ("integer", "number"):
        options += ["out-of-range", "out-of-range", "bound"]
    if kind == "integer":
        options += ["integral-float"]
        if str(path[-1]).endswith("Seconds"):
            options += ["negative-duration", "negative-duration"]
    if kind == "string":
        options += ["huge-string", "unicode", "empty"]
        if "enum" in node:
            options += ["bad-enum", "bad-enum"]
        if "pattern" in node:
            options += ["pattern", "pattern"]
        if _is_quantity(node):
            options += ["quantity", "quantity", "quantity"]
    if node.get("x-kubernetes-int-or-string"):
        options += ["int-or-string", "int-or-string"]
    if kind == "array":
        options += ["over-max-items", "duplicate-item", "empty"]
    if kind == "object" or isinstance(value, dict):
        options += ["unknown-field", "random-json"]
        if "maxProperties" in node:
            options += ["over-max-properties"]
    if node.get("x-kubernetes-preserve-unknown-fields"):
        options += ["random-json", "random-json"]
    choice = rng.choice(options)
    out: JSON
    if choice == "wrong-type":
        out = wrong_type(rng, node)
    elif choice == "null":
        out = None
    elif choice == "out-of-range":
        low, high = node.get("minimum"), node.get("maximum")
        picks: list[JSON] = list(BAD_NUMBERS)
        if low is not None:
            picks += [low - 1, low - 1, low - 0.5 if kind == "number" else low - 2]
        if high is not None:
            picks += [high + 1, high + 1, high + 0.5 if kind == "number" else high * 2]
        out = rng.choice(picks)
    elif choice == "integral-float":
        # 3.0 for 3: JSON has one number type, and the API server takes it as an integer
        out = float(value) if isinstance(value, int) else rng.choice([1.0, 1e3, 64.0])
    elif choice == "bound":
        out = node.get(rng.choice(["minimum", "maximum"]), 0)
    elif choice == "negative-duration":
        out = rng.choice([-1, -60, -3600, -(2**31), 0])
    elif choice == "huge-string":
        out = huge_string(rng, node)
    elif choice == "unicode":
        out = "".join(rng.choice(UNICODE) for _ in range(rng.randint(1, 40)))
    elif choice == "empty":
        out = "" if kind == "string" else []
    elif choice == "bad-enum":
        out = bad_enum(rng, node)
    elif choice == "pattern":
        out = pattern_violation(rng, node)
    elif choice == "quantity":
        out = rng.choice(TRICKY_QUANTITIES + VALID_QUANTITIES)
    elif choice == "int-or-string":
        out = rng.choice(["auto", "AUTO", "Auto", "", "2", 0, -1, 1, 64, 65, 2.5, 2.0, 3, None])
    elif choice == "over-max-items":
        count = int(node.get("maxItems", 64)) + 1
        item = (
            value[0]
            if isinstance(value, list) and value
            else from_schema(rng, node.get("items", {}))
        )
        out = [copy.deepcopy(item) for _ in range(count)]
    elif choice == "duplicate-item":
        items = list(value) if isinstance(value, list) else []
        if not items:
            items = [from_schema(rng, node.get("items", {}))]
        out = [*items, copy.deepcopy(rng.choice(items))]
    elif choice == "over-max-properties":
        out = {f"k{i}.io/x": "v" for i in range(int(node["maxProperties"]) + 1)}
    elif choice == "unknown-field":
        out = dict(value) if isinstance(value, dict) else {}
        out[rng.choice(["foo", "Workers", "replicas", "extra", "x-y", "spec"])] = random_json(rng)
    else:  # random-json
        out = random_json(rng, 0, rng.choice([2, 4, 6]))
        if node.get("type") == "object" and rng.random() < 0.7:
            out = {_key(rng): out}
    return choice, out


# Semantic mutations: the cases a schema walk rarely hits. Each edits the manifest in place
# and returns its tag.


def _spec(manifest: dict[str, Any]) -> dict[str, Any]:
    spec = manifest.setdefault("spec", {})
    if not isinstance(spec, dict):
        manifest["spec"] = spec = {}
    return spec


def _sub(spec: dict[str, Any], key: str) -> dict[str, Any]:
    node = spec.get(key)
    if not isinstance(node, dict):
        node = spec[key] = {}
    return node


def m_name(rng: random.Random, manifest: dict[str, Any]) -> str:
    meta = manifest["metadata"]
    meta["name"] = rng.choice(
        [
            "a" * 48,
            "a" * 49,
            "a" * 63,
            "a" * 64,
            "a" * 254,
            "Upper",
            "9lives",
            "a.b",
            "a_b",
            "a-",
            "-a",
            "",
            "é",
            "a b",
            dns_label(rng),
        ]
    )
    if rng.random() < 0.1:
        del meta["name"]
        meta["generateName"] = rng.choice(["job-", "x" * 60, "UP-", ""])
    return "metadata-name"


def m_labels(rng: random.Random, manifest: dict[str, Any]) -> str:
    meta = manifest["metadata"]
    where = rng.choice(["labels", "annotations"])
    key = rng.choice(
        [
            "app",
            "a/b",
            "trainyard.dev/job-name",
            "x" * 64,
            "a b",
            "",
            "é",
            "example.com/" + "y" * 63,
        ]
    )
    value: JSON = rng.choice(["v", "", "x" * 64, "a b", "é", 5, None, True, "x" * 300000])
    meta[where] = {key: value}
    return f"metadata-{where}"


def m_cel_edges(rng: random.Random, manifest: dict[str, Any]) -> str:
    """The CRD's cross-field rules, on both sides of each edge."""
    spec = _spec(manifest)
    trainer = _sub(spec, "trainer")
    resources = _sub(spec, "resources")
    edge = rng.choice(
        [
            "fp16",
            "procs",
            "static",
            "transformer",
            "text",
            "data-path",
            "compression",
            "output",
            "env",
        ]
    )
    if edge == "fp16":
        trainer["precision"] = "fp16"
        resources["gpus"] = rng.choice([0, 1, 8, "auto"])
    elif edge == "procs":
        resources["gpus"] = rng.choice([0, 1, 2, 8, "auto"])
        spec["procsPerWorker"] = rng.choice([1, 2, 3, 8, 9, 64, "auto"])
    elif edge == "static":
        trainer["model"] = rng.choice(["mlp", "cnn", "transformer"])
        spec["compression"] = [{"quantize": {"method": "static"}}]
    elif edge == "transformer":
        trainer["model"] = "transformer"
        trainer["dataset"] = rng.choice(["text", "synthetic", "digits", "mnist"])
    elif edge == "text":
        trainer["dataset"] = "text"
        trainer["model"] = rng.choice(["mlp", "cnn", "transformer"])
    elif edge == "data-path":
        trainer["dataset"] = rng.choice(["mnist", "fashion-mnist", "cifar10", "imagefolder"])
        trainer["dataPath"] = rng.choice(["", "/data", "relative"])
    elif edge == "compression":
        stages: list[JSON] = [
            {"prune": {}},
            {"distill": {}},
            {"quantize": {}},
            {},
            {"prune": {}, "quantize": {}},
        ]
        spec["compression"] = [rng.choice(stages) for _ in range(rng.randint(0, 4))]
    elif edge == "output":
        _sub(spec, "output")["path"] = rng.choice(
            [
                "/",
                "/dev",
                "/dev/x",
                "/devices",
                "/proc",
                "/proc/1",
                "/sys",
                "/sysx",
                "/output",
                "//",
                "/dev/",
            ]
        )
    else:
        name = rng.choice([*RESERVED_ENV, "PET_X", "TRAINYARD_X", "rank", "PETS", "A", "A=B", " "])
        var: dict[str, Any] = {"name": name}
        if rng.random() < 0.7:
            var["value"] = "1"
        if rng.random() < 0.4:
            var["valueFrom"] = {"fieldRef": {"fieldPath": "metadata.name"}}
        spec["env"] = [var]
    return f"cel-{edge}"


POD_POWERS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("service-account", {"serviceAccountName": "deployer"}),
    ("service-account-old", {"serviceAccount": "deployer"}),
    ("service-account-default", {"serviceAccountName": "default"}),
    ("host-path", {"volumes": [{"name": "root", "hostPath": {"path": "/"}}]}),
    ("secret-volume", {"volumes": [{"name": "s", "secret": {"secretName": "s"}}]}),
    (
        "projected-secret",
        {"volumes": [{"name": "p", "projected": {"sources": [{"secret": {"name": "s"}}]}}]},
    ),
    ("node-name", {"nodeName": "node-1"}),
    ("host-network", {"hostNetwork": True}),
    ("host-pid", {"hostPID": True}),
    ("host-ipc", {"hostIPC": True}),
    ("privileged", {"containers": [{"name": "trainer", "securityContext": {"privileged": True}}]}),
    (
        "capabilities",
        {
            "initContainers": [
                {"name": "i", "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}}
            ]
        },
    ),
    (
        "env-from-secret",
        {"containers": [{"name": "side", "envFrom": [{"secretRef": {"name": "s"}}]}]},
    ),
    (
        "container-secret-env",
        {
            "containers": [
                {
                    "name": "trainer",
                    "env": [
                        {"name": "T", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}
                    ],
                }
            ]
        },
    ),
    ("config-map-volume", {"volumes": [{"name": "c", "configMap": {"name": "c"}}]}),
)

# What `spec.podTemplate.spec` (x-kubernetes-preserve-unknown-fields) lets through: the
# operator merges it into every worker pod.
POD_TEMPLATE_GARBAGE: tuple[dict[str, Any], ...] = (
    {"containers": "abc"},
    {"containers": 5},
    {"containers": [5]},
    {"containers": ["trainer"]},
    {"containers": [None]},
    {"containers": {"name": "trainer"}},
    {"containers": [{"name": "trainer", "env": "X=1"}]},
    {"containers": [{"name": "trainer", "env": [5, {"name": "A", "value": "1"}]}]},
    {"containers": [{"name": "trainer", "env": [{"value": "no name"}]}]},
    {"containers": [{"name": "trainer", "env": [{"name": "RANK", "value": "9"}]}]},
    {"containers": [{"name": "trainer", "volumeMounts": "x"}]},
    {"containers": [{"name": "side", "image": "busybox", "securityContext": "x"}]},
    {"containers": [{"name": "side", "image": "busybox", "securityContext": None}]},
    {"containers": [{"name": "side", "image": "busybox"}, {"image": "busybox"}]},
    {"containers": [{"image": "no-name-first"}]},
    {"containers": [{"name": 5}]},
    {"initContainers": "x"},
    {"initContainers": [5]},
    {"initContainers": [{"name": "i", "image": "busybox", "securityContext": "x"}]},
    {"initContainers": [{"name": "i", "image": "busybox"}]},
    {"volumes": "x"},
    {"volumes": [5]},
    {"volumes": {"name": "v"}},
    {"volumes": [{"name": "output", "emptyDir": {}}]},
    {"tolerations": "x"},
    {"tolerations": {"key": "k"}},
    {"securityContext": "x"},
    {"securityContext": {"runAsUser": 0}},
    {"hostname": "x", "subdomain": 5, "restartPolicy": "Always"},
    {"nodeSelector": "x"},
    {"affinity": [1]},
    {"env": "x"},
    {"": None},
)


def m_pod_template(rng: random.Random, manifest: dict[str, Any]) -> str:
    spec = _spec(manifest)
    template = _sub(spec, "podTemplate")
    roll = rng.random()
    if roll < 0.4:
        tag, pod = rng.choice(POD_POWERS)
        tag = f"power-{tag}"
    elif roll < 0.8:
        pod, tag = copy.deepcopy(rng.choice(POD_TEMPLATE_GARBAGE)), "pod-template-garbage"
    else:
        depth = rng.choice([3, 8, 40])
        pod, tag = {_key(rng): random_json(rng, 0, depth)}, "pod-template-random"
    template["spec"] = copy.deepcopy(pod)
    if rng.random() < 0.2:
        template["metadata"] = rng.choice(
            [
                {"labels": {"a b": "c d", "trainyard.dev/job-name": "other"}},
                {"annotations": {"x": "y" * 1000}},
                {"labels": "x"},
                {"labels": {"k": 5}},
                {"unknown": 1},
            ]
        )
    return tag


def m_secret_env(rng: random.Random, manifest: dict[str, Any]) -> str:
    spec = _spec(manifest)
    source = rng.choice(
        [
            {"secretKeyRef": {"name": "s", "key": "k"}},
            {"configMapKeyRef": {"name": "c", "key": "k"}},
            {"fieldRef": {"fieldPath": "status.podIP"}},
            {"secretKeyRef": "x"},
            {"nonsense": [1, 2]},
        ]
    )
    spec["env"] = [{"name": "FROM", "valueFrom": source}]
    return "env-value-from"


def m_scheduling(rng: random.Random, manifest: dict[str, Any]) -> str:
    scheduling = _sub(_spec(manifest), "scheduling")
    which = rng.choice(["tolerations", "affinity", "nodeSelector", "queueName"])
    if which == "tolerations":
        scheduling["tolerations"] = rng.choice(
            [
                [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                [random_json(rng, 1, 3) if rng.random() < 0.5 else {}],
                [{"operator": "Bogus"}],
            ]
        )
    elif which == "affinity":
        scheduling["affinity"] = {"nodeAffinity": random_json(rng, 0, 4)}
    elif which == "nodeSelector":
        scheduling["nodeSelector"] = rng.choice(
            [{"a": "b"}, {"a b": "c"}, {"k": ""}, {f"k{i}": "v" for i in range(65)}]
        )
    else:
        scheduling["queueName"] = rng.choice(["team-a", "a" * 63, "a" * 64, "-a", "a_b", "A.B", ""])
    return f"scheduling-{which}"


def m_remove(rng: random.Random, manifest: dict[str, Any]) -> str:
    """Remove a field: a required one (env[].name, metadata.name, spec) or any."""
    spec = _spec(manifest)
    which = rng.choice(["env-name", "metadata-name", "spec", "any"])
    if which == "env-name":
        spec["env"] = [{"value": "x"}]
    elif which == "metadata-name":
        manifest["metadata"].pop("name", None)
    elif which == "spec":
        manifest.pop("spec", None)
    else:
        paths = [p for p, _ in nodes(spec, ("spec",)) if len(p) > 1]
        if paths:
            path = rng.choice(paths)
            delete_at(manifest, path)
            return f"remove@{dotted(path)}"
    return f"remove-{which}"


def m_status(rng: random.Random, manifest: dict[str, Any]) -> str:
    """A status in the create body: the status subresource makes the server drop it."""
    manifest["status"] = rng.choice(
        [
            {"phase": "Succeeded", "restarts": -1},
            {"phase": "Bogus"},
            {"conditions": "x"},
            random_json(rng, 0, 3),
        ]
    )
    return "status-in-body"


SEMANTIC: tuple[tuple[Callable[[random.Random, dict[str, Any]], str], int], ...] = (
    (m_name, 2),
    (m_labels, 1),
    (m_cel_edges, 4),
    (m_pod_template, 4),
    (m_secret_env, 1),
    (m_scheduling, 2),
    (m_remove, 2),
    (m_status, 1),
)


def mutate(rng: random.Random, manifest: dict[str, Any]) -> str:
    """One mutation: a schema-directed change to one field (most), or a semantic one."""
    if rng.random() < 0.35:
        functions, weights = zip(*SEMANTIC, strict=True)
        tag: str = rng.choices(functions, weights=weights)[0](rng, manifest)
        return tag
    if not isinstance(manifest.get("spec"), dict):
        manifest["spec"] = {}
    existing = [
        p for p, _ in nodes({k: manifest[k] for k in ("metadata", "spec")}, ()) if len(p) > 1
    ]
    absent = absent_fields(manifest)
    if absent and (not existing or rng.random() < 0.3):
        path = rng.choice(absent)
        current: JSON = None
    else:
        path = rng.choice(existing)
        current = get_at(manifest, path)
    kind, value = mutate_value(rng, path, current)
    set_at(manifest, path, value)
    return f"{kind}@{dotted(path)}"


def generate_case(seed: int, index: int) -> Case:
    """Manifest `index` of the campaign with this seed (independent of every other one)."""
    rng = random.Random(f"admission-fuzz/{seed}/{index}")
    roll = rng.random()
    mutations: list[str] = []
    if roll < 0.35:
        rules = rng.random() < 0.7
        manifest = manifest_from_schema(rng, rules=rules)
        source = "schema+rules" if rules else "schema"
        # a few of them get a mutation on top
        if rng.random() < 0.3:
            mutations.append(mutate(rng, manifest))
    else:
        name, example = rng.choice(examples())
        manifest = copy.deepcopy(example)
        manifest["metadata"]["name"] = dns_label(rng)
        source = f"example:{name}"
        count = rng.choices([0, 1, 2, 3, 4], weights=[1, 6, 3, 2, 1])[0]
        mutations += [mutate(rng, manifest) for _ in range(count)]
    requester: Requester = "editor" if rng.random() < 0.5 else "admin"
    validation: Literal["Strict", "Warn"] = "Warn" if rng.random() < 0.15 else "Strict"
    return Case(index, source, tuple(mutations), requester, validation, manifest)


# --- refusals -----------------------------------------------------------------------------------

# The API server adds this note to other errors when it skips CEL rules on an invalid object;
# it is not an error of its own.
NOT_CHECKED = "some validation rules were not checked"
# A StatusCause's `field`: a path into the object (spec.env[0].name, metadata.name, kind).
FIELD = re.compile(r"(?:spec|metadata|status)(?:\.[A-Za-z_][\w-]*|\[\d*\])*|apiVersion|kind")
# A path in a message: spec, metadata or status and at least one step below it. Not preceded by
# a word character or a CEL `?` (so a quoted expression's `object.spec.?env` does not count).
PATH_IN_TEXT = re.compile(r"(?<![\w?])(?:spec|metadata|status)(?:\.[A-Za-z_][\w-]*|\[\d*\])+")


def refusal_errors(status: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, message) of each error a refusal reports: its causes, else its message."""
    causes = (status.get("details") or {}).get("causes") or []
    errors = [
        (str(c.get("field") or ""), str(c.get("message") or ""))
        for c in causes
        if NOT_CHECKED not in str(c.get("message") or "")
    ]
    return errors or [("", str(status.get("message") or ""))]


# ObjectMeta is decoded by encoding/json before any schema applies; its type errors name the
# field the Go way: "cannot unmarshal number into Go struct field ObjectMeta.labels of type
# string" is about metadata.labels.
GO_METADATA = re.compile(r"Go struct field ObjectMeta\.([A-Za-z_]\w*)")


def error_path(field_name: str, message: str) -> str | None:
    """The field path an error names, or None."""
    if FIELD.fullmatch(field_name):
        return field_name
    found = PATH_IN_TEXT.search(message)
    if found:
        return found.group(0)
    go = GO_METADATA.search(message)
    return f"metadata.{go.group(1)}" if go else None


def names_field_path(status: dict[str, Any]) -> bool:
    """Does the refusal tell the user which field to fix?

    The rule: every error the refusal reports (each `details.causes[]` entry, leaving out the
    server's "some validation rules were not checked" note; the Status `message` when there are
    no causes) names a path into the object. An error names one when its `field` is such a
    path (`spec.workers`, `spec.env[1]`, `metadata.name`, `spec`, `kind`), or, where the
    server gives no field (`<nil>` from a CEL rule without fieldPath, a policy denial, a strict
    decoding error), when its message contains `spec`, `metadata` or `status` followed by at
    least one step (`.name` or `[i]`): `spec.podTemplate.spec.nodeName: ...`, `unknown field
    "spec.foo"`, `metadata.name may have at most 48 characters`; a metadata field that is not
    even of its JSON type counts by its Go name (`Go struct field ObjectMeta.labels`).
    """
    return all(error_path(f, m) is not None for f, m in refusal_errors(status))


# --- the operator's side ------------------------------------------------------------------------

SETTINGS = BuildSettings(trainer_image=DEFAULT_TRAINER_IMAGE)
# the chart's values, for the per-job NetworkPolicy (TRAINYARD_NETWORK_POLICY)
FENCED = dataclasses.replace(
    SETTINGS,
    network_policy=NetworkPolicySettings(
        operator_namespace="trainyard-system",
        operator_pods={"matchLabels": {"app.kubernetes.io/name": "trainyard"}},
        monitoring_namespaces={"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
    ),
)
FLAVORS: tuple[PodGroupFlavor, ...] = ("scheduler-plugins", "volcano")
FAR = timedelta(days=36525)  # a century: every deadline, timeout and TTL has passed
RESULTS = json.dumps(
    {"accuracy": 0.97, "parameters": 10, "modelBytes": 100, "stages": [{"name": "train"}]}
)


@dataclass(frozen=True)
class Failure:
    """The operator's code raised on an admitted object."""

    stage: str
    """What ran, and in which pass: "reconcile, lifecycle #2 (running)"."""
    error: str
    where: str = ""
    """The innermost frame of the operator's code in the traceback."""

    @property
    def family(self) -> str:
        """The stage without the pass: "reconcile", "build worker pod", "parse"."""
        return re.split(r"[,(]", self.stage)[0].strip()

    @property
    def signature(self) -> str:
        """What tells one bug from another: the stage, the place and the exception's type."""
        return f"{self.family}: {self.error.split(':')[0]} at {self.where or '?'}"


@dataclass(frozen=True)
class Step:
    """One reconcile pass of a scenario: which pods exist, and when."""

    pods: str
    after: timedelta
    progress: bool = False
    refused: bool = False


# Each scenario is a sequence of passes; each pass sees the status the previous one wrote.
SCENARIOS: dict[str, tuple[Step, ...]] = {
    "lifecycle": (
        Step("none", timedelta(0)),
        Step("running", timedelta(seconds=30), progress=True),
        Step("failed-137", timedelta(seconds=60)),
        Step("none", timedelta(seconds=90)),
        Step("running", timedelta(seconds=120)),
        Step("succeeded", timedelta(seconds=150)),
        Step("succeeded", FAR),
    ),
    "permanent": (
        Step("none", timedelta(0)),
        Step("running", timedelta(seconds=30)),
        Step("failed-1", timedelta(seconds=60)),
        Step("failed-1", FAR),
    ),
    "hang": (
        Step("none", timedelta(0)),
        Step("running", timedelta(seconds=30), progress=True),
        Step("running", FAR, progress=True),
    ),
    "lost": (
        Step("none", timedelta(0)),
        Step("running", timedelta(seconds=30)),
        Step("disrupted", timedelta(seconds=60)),
        Step("none", FAR),
    ),
    "unschedulable": (Step("none", timedelta(0)), Step("unschedulable", FAR)),
    "image-pull": (Step("none", timedelta(0)), Step("image-pull", timedelta(minutes=5))),
    "refused": (
        Step("none", timedelta(0), refused=True),
        Step("none", timedelta(seconds=10), refused=True),
        Step("none", FAR, refused=True),
    ),
    "never-seen": (Step("none", FAR),),
}


def _innermost(err: BaseException) -> str:
    """The innermost frame of the operator's own code in the traceback ("" if none)."""
    frames = [
        f for f in traceback.extract_tb(err.__traceback__) if "/trainyard_operator/" in f.filename
    ]
    if not frames:
        return ""
    frame = frames[-1]
    where = frame.filename[frame.filename.index("trainyard_operator/") :]
    return f"{where}:{frame.lineno} {frame.name}"


class _Checker:
    """Runs the operator's pure code on one admitted object and collects what raises."""

    def __init__(self) -> None:
        self.failures: list[Failure] = []

    def attempt(
        self, stage: str, call: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T | None:
        try:
            return call(*args, **kwargs)
        except Exception as err:
            self.failures.append(Failure(stage, f"{type(err).__name__}: {err}", _innermost(err)))
            return None


def _pod_status(kind: str, now: datetime) -> dict[str, Any]:
    """A worker pod's status (and deletion) for one kind of pod set."""
    trainer: dict[str, Any] = {"name": "trainer", "ready": kind == "running"}
    status: dict[str, Any] = {"podIP": "10.0.0.1", "containerStatuses": [trainer]}
    if kind in ("running", "disrupted"):
        status["phase"] = "Running"
        trainer["state"] = {"running": {"startedAt": format_time(now)}}
        status["conditions"] = [{"type": "Ready", "status": "True"}]
        if kind == "disrupted":
            status["conditions"].append(
                {"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI"}
            )
    elif kind == "succeeded":
        status["phase"] = "Succeeded"
        trainer["state"] = {"terminated": {"exitCode": 0, "message": RESULTS}}
    elif kind.startswith("failed-"):
        status["phase"] = "Failed"
        code = int(kind.removeprefix("failed-"))
        trainer["state"] = {"terminated": {"exitCode": code, "message": "Traceback\nKilled"}}
    elif kind == "unschedulable":
        status["phase"] = "Pending"
        status["conditions"] = [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/3 nodes",
            }
        ]
    else:  # image-pull
        status["phase"] = "Pending"
        trainer["state"] = {"waiting": {"reason": "ImagePullBackOff"}}
    return status


def _sample(indexes: list[int]) -> list[int]:
    """The workers whose pods are built in full (the rest differ only by index)."""
    return sorted({indexes[0], indexes[-1], indexes[len(indexes) // 2]}) if indexes else []


def pods_for(check: _Checker, job: TrainingJob, kind: str, now: datetime) -> list[PodView]:
    """The job's current gang as the pod watch would deliver it, built by the operator's own
    builder (worker 0, the middle one and the last in full; the others by index)."""
    if kind == "none":
        return []
    gang = job.status.restarts
    workers = list(range(job.spec.workers))
    created = now - timedelta(seconds=10)
    views: dict[int, PodView] = {}
    for index in _sample(workers):
        body = check.attempt(f"build worker pod ({kind})", worker_pod, job, index, gang, SETTINGS)
        if body is None:  # reported; reconcile still gets a pod to look at
            body = {
                "metadata": {
                    "name": f"{job.name}-worker-{index}",
                    "labels": {
                        LABEL_JOB_NAME: job.name,
                        LABEL_WORKER_INDEX: str(index),
                        LABEL_RESTART: str(gang),
                    },
                    "ownerReferences": [{"uid": job.uid, "controller": True}],
                }
            }
        body["metadata"]["uid"] = f"pod-{gang}-{index}"
        body["metadata"]["creationTimestamp"] = format_time(created)
        body["metadata"]["resourceVersion"] = "1"
        body["status"] = _pod_status(kind, now)
        if kind == "disrupted" and index == 0:
            body["metadata"]["deletionTimestamp"] = format_time(now + timedelta(seconds=30))
        view = check.attempt(f"pod view ({kind})", PodView.from_object, body)
        if view is None:
            check.failures.append(
                Failure(f"pod view ({kind})", "the operator does not recognize its own worker pod")
            )
            return []
        views[index] = view
    template = views[_sample(workers)[-1]]
    pods = [
        views.get(i)
        or dataclasses.replace(
            template, name=f"{job.name}-worker-{i}", uid=f"pod-{gang}-{i}", index=i
        )
        for i in workers
    ]
    own = sort_by_owner(pods, job.uid, frozenset()).own
    if len(own) != len(pods):
        check.failures.append(
            Failure(f"ownership ({kind})", "the job's own worker pods are taken for strays")
        )
    return own


def build_children(check: _Checker, job: TrainingJob, plan: Plan) -> None:
    """What the handlers build from a plan: the Service, the NetworkPolicy, the PodGroups and
    the planned workers."""
    current = job.model_copy(update={"status": plan.status})
    if plan.ensure_children:
        check.attempt("build service", headless_service, job)
        check.attempt("build network policy", network_policy, job, FENCED)
        for flavor in FLAVORS:
            check.attempt(f"build podgroup ({flavor})", pod_group, job, flavor)
    for index in _sample(list(plan.create_workers)):
        check.attempt("build worker pod", worker_pod, current, index, plan.gang, SETTINGS)
        for flavor in FLAVORS:
            settings = dataclasses.replace(SETTINGS, pod_group_flavor=flavor)
            check.attempt(
                f"build worker pod ({flavor})", worker_pod, current, index, plan.gang, settings
            )


def _implied(job: TrainingJob, now: datetime) -> object:
    """What a worker's first pass posts from the stored status (handlers/worker.py)."""
    return implied_events(job.status, now, warn_checkpoints=checkpoints_lost_on_restart(job))


def run_scenario(check: _Checker, body: dict[str, Any], name: str, start: datetime) -> None:
    job = check.attempt("parse", TrainingJob.from_object, body)
    for number, step in enumerate(SCENARIOS[name], 1):
        if job is None:
            return
        where = f"{name} #{number} ({step.pods})"
        now = start + step.after
        check.attempt(f"implied events, {where}", _implied, job, now)
        pods = pods_for(check, job, step.pods, now)
        progress = (
            Progress(
                stage="train", epoch=1, total_epochs=job.spec.trainer.epochs, percent=10, loss=0.5
            )
            if step.progress
            else None
        )
        refusal = (
            CreateFailure(job.status.restarts, start, "pods is forbidden: exceeded quota")
            if step.refused
            else None
        )
        plan = check.attempt(f"reconcile, {where}", reconcile, job, pods, now, progress, refusal)
        if plan is not None and plan.needs_capacity:
            # a `gpus: auto` gang is due: the handlers read the cluster and decide again
            plan = check.attempt(
                f"reconcile with GPU capacity, {where}",
                reconcile,
                job,
                pods,
                now,
                progress,
                refusal,
                capacity=FUZZ_GPU_CAPACITY,
            )
        if plan is None:
            return
        build_children(check, job, plan)
        # The status write, then the object read back as the next pass (or a restarted
        # operator) sees it.
        stored = {**body, "status": plan.status.to_wire()}
        job = check.attempt(f"status read back, {where}", TrainingJob.from_object, stored)
        body = stored


#: What `gpus: auto` jobs choose from: a GPU node of 8, a cordoned one of 4 and a quota.
FUZZ_GPU_CAPACITY = GpuCapacity(
    nodes=(
        NodeView("gpu-0", 8, {"pool": "gpu"}, (Taint("nvidia.com/gpu", "present", "NoSchedule"),)),
        NodeView("gpu-1", 4, {"pool": "gpu"}, unschedulable=True),
    ),
    quotas=(QuotaView("gpus", 16),),
)


def check_operator(body: dict[str, Any]) -> list[Failure]:
    """Everything the operator's pure code raises on an admitted object (empty: it copes)."""
    check = _Checker()
    created = body.get("metadata", {}).get("creationTimestamp")
    start = parse_time(created) if created else datetime(2026, 1, 1, tzinfo=UTC)
    for name in SCENARIOS:
        run_scenario(check, body, name, start)
    unique: dict[tuple[str, str], Failure] = {}
    for failure in check.failures:
        unique.setdefault((failure.family, failure.error), failure)
    return list(unique.values())


# --- the campaign (I/O) -------------------------------------------------------------------------


@dataclass
class Outcome:
    case: Case
    code: int
    """HTTP status; 0 when no answer came (connection error, timeout)."""
    body: dict[str, Any] | None
    """The admitted object, or the refusal's Status."""
    text: str = ""
    seconds: float = 0.0


@dataclass
class Tally:
    sent: int = 0
    admitted: int = 0
    refused: int = 0
    with_path: int = 0
    checked: int = 0
    by_code: Counter[str] = field(default_factory=Counter)
    unpathed: list[Outcome] = field(default_factory=list)
    server_errors: list[Outcome] = field(default_factory=list)
    failures: list[tuple[Outcome, list[Failure]]] = field(default_factory=list)
    failure_kinds: Counter[str] = field(default_factory=Counter)
    """Admitted manifests per distinct failure (Failure.signature)."""
    refusal_kinds: Counter[str] = field(default_factory=Counter)
    """Refusals without a path per kind of message (`message_kind`)."""
    by_kind: dict[str, Counter[str]] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not (self.unpathed or self.failures or self.server_errors)

    def add(self, outcome: Outcome) -> None:
        """Count one answer, and run the operator's code on an admitted object."""
        self.sent += 1
        case = outcome.case
        kinds = {m.split("@")[0] for m in case.mutations} or {
            f"unmutated {case.source.split(':')[0]}"
        }
        if outcome.code == 0 or outcome.code >= 500 or outcome.code == 429 or outcome.body is None:
            self.server_errors.append(outcome)
            self.by_code[
                f"{outcome.code} (no answer)" if outcome.code == 0 else str(outcome.code)
            ] += 1
            self._kinds(kinds, "error")
            return
        if outcome.code < 300:
            self.admitted += 1
            self.checked += 1
            self.by_code[f"{outcome.code} admitted"] += 1
            self._kinds(kinds, "admitted")
            failures = check_operator(outcome.body)
            if failures:
                self.failures.append((outcome, failures))
                self.failure_kinds.update({f.signature for f in failures})
                self._kinds(kinds, "operator failures")
            return
        self.refused += 1
        self.by_code[f"{outcome.code} {outcome.body.get('reason', '')}"] += 1
        self._kinds(kinds, "refused")
        if names_field_path(outcome.body):
            self.with_path += 1
        else:
            self.unpathed.append(outcome)
            self.refusal_kinds[message_kind(outcome)] += 1
            self._kinds(kinds, "refused without path")

    def _kinds(self, kinds: set[str], what: str) -> None:
        for kind in kinds:
            self.by_kind.setdefault(kind, Counter())[what] += 1


def send(api: client.ApiClient, namespace: str, case: Case, timeout: float = 60.0) -> Outcome:
    """POST the manifest with dryRun=All; retries answers that say "try again"."""
    custom = client.CustomObjectsApi(api)
    began = time.monotonic()
    for attempt in range(4):
        try:
            response: Any = custom.create_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                case.manifest,
                dry_run="All",
                field_validation=case.field_validation,
                _preload_content=False,
                _request_timeout=timeout,
            )
            return Outcome(
                case, response.status, json.loads(response.data), seconds=time.monotonic() - began
            )
        except ApiException as err:
            text = err.body.decode() if isinstance(err.body, bytes) else str(err.body or err.reason)
            if err.status in (429, 503) and attempt < 3:
                time.sleep(0.5 * (attempt + 1))
                continue
            try:
                body = json.loads(text)
            except ValueError:
                body = None
            return Outcome(case, err.status or 0, body, text, time.monotonic() - began)
        except (HTTPError, OSError) as err:
            if attempt < 3:
                time.sleep(0.5 * (attempt + 1))
                continue
            return Outcome(case, 0, None, f"{type(err).__name__}: {err}", time.monotonic() - began)
    raise AssertionError("unreachable")


def run_campaign(
    clients: dict[Requester, client.ApiClient],
    namespace: str,
    *,
    count: int,
    seed: int,
    threads: int = 8,
    progress: Callable[[Tally], None] | None = None,
) -> Tally:
    """Generate, send (`threads` at a time) and count `count` manifests."""
    tally = Tally()
    began = time.monotonic()

    def one(index: int) -> Outcome:
        case = generate_case(seed, index)
        return send(clients[case.requester], namespace, case)

    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="fuzz") as pool:
        futures = [pool.submit(one, i) for i in range(count)]
        for future in as_completed(futures):
            # The operator's checks run here, on this thread, while the others wait on the server.
            tally.add(future.result())
            if progress is not None:
                progress(tally)
    tally.seconds = time.monotonic() - began
    for outcomes in (tally.unpathed, tally.server_errors):
        outcomes.sort(key=lambda o: o.case.index)
    tally.failures.sort(key=lambda f: f[0].case.index)
    return tally


def make_clients(
    configuration: client.Configuration, threads: int
) -> dict[Requester, client.ApiClient]:
    """An admin client and one that impersonates EDITOR, each with a pool of `threads`."""
    out: dict[Requester, client.ApiClient] = {}
    for requester in ("admin", "editor"):
        config = copy.copy(configuration)
        config.connection_pool_maxsize = threads
        api = client.ApiClient(config)
        if requester == "editor":
            api.set_default_header("Impersonate-User", EDITOR)  # type: ignore[no-untyped-call]
        out[requester] = api
    return out


def _tools() -> tuple[str, str, str]:
    from trainyard_local import binaries

    return str(binaries.binary("kubectl")), str(binaries.binary("helm")), binaries.kube_version()


def render_policy() -> str:
    """The chart's admission policy and edit role, as `helm template` renders them."""
    _, helm, kube_version = _tools()
    return subprocess.run(
        [
            helm,
            "template",
            RELEASE,
            str(CHART),
            f"--kube-version={kube_version}",
            "--show-only=templates/admission-policy.yaml",
            "--show-only=templates/aggregated-roles.yaml",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> None:
    done = subprocess.run(
        [_tools()[0], f"--kubeconfig={kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {done.stderr.strip()}")


def _probe(api: client.ApiClient, namespace: str, spec: dict[str, Any]) -> Outcome:
    manifest = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": "probe"},
        "spec": spec,
    }
    return send(api, namespace, Case(-1, "probe", (), "editor", "Strict", manifest), timeout=10)


def prepare(
    kubeconfig: Path,
    clients: dict[Requester, client.ApiClient],
    namespace: str,
    timeout: float = 120,
) -> str:
    """Apply the chart's policy and edit role, bind EDITOR to it in `namespace`, and wait until
    the API server enforces both (its policy and RBAC caches fill asynchronously). Returns the
    rendered objects, for `cleanup`. The CRD must be installed."""
    rendered = render_policy()
    kubectl(kubeconfig, "apply", "-f", "-", stdin=rendered)
    kubectl(
        kubeconfig,
        "create",
        "rolebinding",
        f"{EDITOR}-jobs",
        f"--clusterrole={EDIT_ROLE}",
        f"--user={EDITOR}",
        "-n",
        namespace,
    )
    deadline = time.monotonic() + timeout
    editor = clients["editor"]
    power = {"podTemplate": {"spec": {"serviceAccountName": "deployer"}}}
    while True:
        plain, powered = _probe(editor, namespace, {}), _probe(editor, namespace, power)
        # the chart's policy (this copy, or the same rules from a release already installed)
        said = powered.text + str(powered.body)
        if plain.code == 201 and powered.code == 403 and "pod-powers" in said:
            return rendered
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"the policy is not enforced after {timeout:.0f} s: a plain job got {plain.code}, "
                f"one with a ServiceAccount {powered.code} {powered.text[:300]}"
            )
        time.sleep(0.5)


def cleanup(kubeconfig: Path, rendered: str) -> None:
    kubectl(kubeconfig, "delete", "--ignore-not-found", "-f", "-", stdin=rendered)


# --- report -----------------------------------------------------------------------------------


def shorten(value: JSON, limit: int = 120) -> JSON:
    """A manifest fit to print: long strings and lists cut, managedFields dropped."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:40]}…(+{len(value) - 40} chars)"
    if isinstance(value, list):
        items = [shorten(v, limit) for v in value[:8]]
        return items + ([f"…(+{len(value) - 8} items)"] if len(value) > 8 else [])
    if isinstance(value, dict):
        return {k: shorten(v, limit) for k, v in value.items() if k != "managedFields"}
    return value


def describe(case: Case) -> str:
    mutations = ", ".join(case.mutations) or "none"
    return (
        f"#{case.index} {case.source}, as {case.requester}, "
        f"fieldValidation {case.field_validation}, mutations: {mutations}"
    )


def message_kind(outcome: Outcome) -> str:
    """A refusal's message with the parts that vary per manifest (names, numbers, a policy's
    quoted CEL) blanked, to tell kinds of refusal apart."""
    message = str((outcome.body or {}).get("message") or outcome.text)
    # what follows the object's name and the policy's is what tells the kinds apart
    message = re.split(r" is invalid: | denied request: ", message, maxsplit=1)[-1]
    text = re.sub(
        r"expression '.*?' resulted in error",
        "expression '…' resulted in error",
        message,
        flags=re.S,
    )
    text = re.sub(r'"[^"]*"', '"…"', text)
    return f"{outcome.code} " + re.sub(r"\d+", "N", text)[:200]


def _print_refusal(console: Console, outcome: Outcome) -> None:
    console.print(describe(outcome.case), markup=False)
    message = (outcome.body or {}).get("message", outcome.text)
    console.print(
        f"  {outcome.code} {(outcome.body or {}).get('reason', '')}: {message}", markup=False
    )
    console.print(f"  sent: {json.dumps(shorten(outcome.case.manifest))}", markup=False)


def _print_failure(console: Console, outcome: Outcome, failures: list[Failure]) -> None:
    console.print(describe(outcome.case), markup=False)
    for failure in failures[:4]:
        console.print(f"  {failure.stage}: {failure.error[:600]}", markup=False)
        if failure.where:
            console.print(f"    at {failure.where}", markup=False)
    console.print(f"  sent: {json.dumps(shorten(outcome.case.manifest))}", markup=False)
    spec = (outcome.body or {}).get("spec")
    console.print(f"  admitted spec: {json.dumps(shorten(spec))}", markup=False)


def _counts(title: str, counts: Counter[str]) -> Table:
    table = Table(title=title)
    table.add_column("manifests", justify="right")
    table.add_column("kind")
    for kind, n in counts.most_common():
        table.add_row(str(n), kind)
    return table


def report(console: Console, tally: Tally, *, show: int = 5) -> None:
    """Examples of every problem found (the first of each kind, then the first `show` in
    order), the counts by mutation kind, and the summary with the targets."""
    if tally.unpathed:
        console.rule("refusals without a field path: the first of each kind")
        firsts = {message_kind(o): o for o in reversed(tally.unpathed)}
        for outcome in sorted(firsts.values(), key=lambda o: o.case.index):
            _print_refusal(console, outcome)
        shown = {o.case.index for o in firsts.values()}
        rest = [o for o in tally.unpathed[:show] if o.case.index not in shown]
        if rest:
            console.rule(f"refusals without a field path: more of the first {show}")
        for outcome in rest:
            _print_refusal(console, outcome)
        console.print(_counts("refusals without a field path, by message", tally.refusal_kinds))
    if tally.failures:
        console.rule("admitted objects the operator cannot handle: the first of each kind")
        seen: set[str] = set()
        printed: set[int] = set()
        for outcome, failures in tally.failures:
            new = [f for f in failures if f.signature not in seen]
            if new:
                seen.update(f.signature for f in failures)
                printed.add(outcome.case.index)
                _print_failure(console, outcome, new)
        more = [(o, f) for o, f in tally.failures[:show] if o.case.index not in printed]
        if more:
            console.rule(f"admitted objects the operator cannot handle: more of the first {show}")
        for outcome, failures in more:
            _print_failure(console, outcome, failures)
        console.print(
            _counts("operator failures, by stage, exception and place", tally.failure_kinds)
        )
    if tally.server_errors:
        console.rule(f"server errors (first {min(show, len(tally.server_errors))})")
        for outcome in tally.server_errors[:show]:
            console.print(
                f"{describe(outcome.case)}\n  {outcome.code}: {outcome.text[:500]}", markup=False
            )

    kinds = Table(title="by mutation kind (a manifest counts once per kind it carries)")
    columns = ("admitted", "refused", "refused without path", "operator failures", "error")
    kinds.add_column("kind")
    for column in columns:
        kinds.add_column(column, justify="right")
    for kind, counts in sorted(tally.by_kind.items(), key=lambda kv: -sum(kv[1].values())):
        kinds.add_row(kind, *(str(counts[c]) for c in columns))
    console.print(kinds)

    codes = ", ".join(f"{code}: {n}" for code, n in sorted(tally.by_code.items()))
    summary = Table(title=f"admission fuzz: {tally.sent} manifests in {tally.seconds:.0f} s")
    summary.add_column("count")
    summary.add_column("value", justify="right")
    summary.add_column("target", justify="right")
    rows = [
        ("manifests sent", tally.sent, ""),
        ("admitted", tally.admitted, ""),
        ("refused", tally.refused, ""),
        ("refusals naming a field path", tally.with_path, ""),
        ("refusals without a field path", len(tally.unpathed), "0"),
        ("admitted objects run through the operator's code", tally.checked, ""),
        ("... that made it raise (or not read its own pods)", len(tally.failures), "0"),
        ("server errors (5xx, 429, no answer)", len(tally.server_errors), "0"),
    ]
    for name, value, target in rows:
        style = "red" if target and value else None
        summary.add_row(name, str(value), target, style=style)
    console.print(summary)
    console.print(f"answers: {codes}", markup=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=5000, help="manifests to send (5000)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the generator (1)")
    parser.add_argument("--threads", type=int, default=8, help="requests in flight (8)")
    parser.add_argument("--show", type=int, default=5, help="examples printed per problem (5)")
    args = parser.parse_args(argv)
    # wide enough for the tables and messages when the output goes to a file
    console = Console() if sys.stdout.isatty() else Console(width=160)

    from kubernetes import config

    from trainyard_local.cluster import LocalCluster
    from trainyard_local.pytest_plugin import wait_for_service_account

    with tempfile.TemporaryDirectory() as tmp:
        cluster = LocalCluster("fuzz", Path(tmp) / "cluster", cpu_nodes=1, tie_to_parent=True)
        with cluster:
            console.print(f"cluster up in {cluster.startup_seconds:.1f} s")
            admin: client.ApiClient = config.new_client_from_config(
                config_file=str(cluster.kubeconfig)
            )  # type: ignore[no-untyped-call]
            clients = make_clients(admin.configuration, args.threads)
            try:
                kubectl(cluster.kubeconfig, "apply", "--server-side", "-f", str(CRD_PATH))
                kubectl(
                    cluster.kubeconfig,
                    "wait",
                    "--for=condition=Established",
                    "--timeout=60s",
                    "crd/trainingjobs.trainyard.dev",
                )
                client.CoreV1Api(admin).create_namespace(
                    client.V1Namespace(metadata=client.V1ObjectMeta(name="fuzz"))
                )
                wait_for_service_account(client.CoreV1Api(admin), "fuzz")
                prepare(cluster.kubeconfig, clients, "fuzz")
                console.print(
                    f"CRD and policy {POLICY} enforced; sending {args.count} manifests "
                    f"(seed {args.seed}, {args.threads} at a time)"
                )
                lock = threading.Lock()

                def progress(tally: Tally) -> None:
                    if tally.sent % 500 == 0:
                        with lock:
                            console.print(
                                f"  {tally.sent} sent, {tally.admitted} admitted, "
                                f"{len(tally.unpathed)} refusals without a path, "
                                f"{len(tally.failures)} operator failures"
                            )

                tally = run_campaign(
                    clients,
                    "fuzz",
                    count=args.count,
                    seed=args.seed,
                    threads=args.threads,
                    progress=progress,
                )
            finally:
                for api in (*clients.values(), admin):
                    api.close()  # type: ignore[no-untyped-call]
    report(console, tally, show=args.show)
    return 0 if tally.ok else 1


if __name__ == "__main__":
    sys.exit(main())
