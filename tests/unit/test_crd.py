"""The generated CRD: in sync with the models, structural, and carrying what users see.

`crdgen` turns the pydantic models into `crds/` and the chart's copy; these tests fail when
either is stale (run `make crds`) and check the parts of the schema a user meets through
`kubectl` -- the server-side behaviour itself is tested in tests/integration/test_admission.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from trainyard_operator.api import crdgen
from trainyard_operator.api.spec import TrainingJobSpec

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "trainyard"


def _nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from _nodes(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from _nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _nodes(schema["additionalProperties"], f"{path}.*")


def _schema() -> dict[str, Any]:
    doc = yaml.safe_load((REPO / "crds" / crdgen.CRD_FILE).read_text())
    schema: dict[str, Any] = doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def test_checked_in_crds_match_the_models() -> None:
    args = ["--out", str(REPO / "crds"), "--chart", str(CHART), "--docs", str(REPO / "docs/api.md")]
    assert crdgen.main([*args, "--check"]) == 0, (
        "crds/, the chart's copy or docs/api.md is stale: run `make crds`"
    )


def test_check_mode_reports_a_stale_or_missing_file(tmp_path: Path) -> None:
    out, chart = tmp_path / "crds", tmp_path / "chart"
    assert crdgen.main(["--out", str(out), "--chart", str(chart), "--check"]) == 1
    assert crdgen.main(["--out", str(out), "--chart", str(chart)]) == 0
    assert crdgen.main(["--out", str(out), "--chart", str(chart), "--check"]) == 0
    crd_file = out / crdgen.CRD_FILE
    crd_file.write_text(crd_file.read_text().replace("maximum: 1024", "maximum: 2048"))
    assert crdgen.stale(out, chart) == [crd_file]
    assert crdgen.main(["--out", str(out), "--chart", str(chart), "--check"]) == 1


def test_schema_is_structural() -> None:
    """Every node has a type (or a Kubernetes extension in its place); no JSON-schema leftovers."""
    for path, node in _nodes(_schema()):
        for key in ("anyOf", "oneOf", "allOf", "$ref", "title", "const", "$defs"):
            assert key not in node, f"{path} has {key}"
        assert node.get("additionalProperties") is not False, path
        typed = "type" in node or node.get("x-kubernetes-int-or-string")
        assert typed, f"{path} has no type"
        if node.get("type") == "object" and path.startswith(".spec"):
            free = node.get("x-kubernetes-preserve-unknown-fields")
            assert "properties" in node or "additionalProperties" in node or free, path


def test_every_spec_field_is_described_for_kubectl_explain() -> None:
    spec = _schema()["properties"]["spec"]
    for path, node in _nodes(spec, ".spec"):
        if path.endswith(("[]", ".*")) and "properties" not in node:
            continue  # a list's or map's scalar values: the field itself is described
        assert node.get("description"), f"{path} has no description"


def test_free_form_core_types_keep_their_fields() -> None:
    spec = _schema()["properties"]["spec"]["properties"]
    assert spec["procsPerWorker"]["x-kubernetes-int-or-string"] is True
    assert spec["podTemplate"]["properties"]["spec"]["x-kubernetes-preserve-unknown-fields"]
    scheduling = spec["scheduling"]["properties"]
    assert scheduling["affinity"]["x-kubernetes-preserve-unknown-fields"]
    assert scheduling["tolerations"]["items"]["x-kubernetes-preserve-unknown-fields"]
    env_item = spec["env"]["items"]["properties"]
    assert env_item["valueFrom"]["x-kubernetes-preserve-unknown-fields"]


def test_defaults_match_the_pydantic_models() -> None:
    """The server fills in exactly what the operator would assume for an empty spec."""
    spec = _schema()["properties"]["spec"]
    assert spec["default"] == TrainingJobSpec().to_wire()


def test_optional_stage_members_have_no_default() -> None:
    # A default on prune/distill/quantize would make every stage all three at once.
    stage = _schema()["properties"]["spec"]["properties"]["compression"]["items"]
    for kind in ("prune", "distill", "quantize"):
        assert "default" not in stage["properties"][kind]


def test_every_cel_rule_has_a_message_naming_a_field() -> None:
    rules = [
        (path, rule)
        for path, node in _nodes(_schema())
        for rule in node.get("x-kubernetes-validations", [])
    ]
    assert len(rules) >= 20
    for path, rule in rules:
        assert "spec." in rule["message"] or "metadata.name" in rule["message"], (path, rule)


def test_conditions_are_a_list_map_keyed_by_type() -> None:
    conditions = _schema()["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert "type" in conditions["items"]["required"]


def test_api_reference_lists_every_field_and_rule() -> None:
    page = (REPO / "docs" / "api.md").read_text()
    for path, node in _nodes(_schema()["properties"]["spec"], "spec"):
        if path != "spec" and not path.endswith(("[]", ".*")):
            assert f"| `{path}`" in page, path
        for rule in node.get("x-kubernetes-validations", []):
            assert rule["message"] in page


def test_names_columns_and_status_subresource() -> None:
    doc = crdgen.crd()
    names = doc["spec"]["names"]
    assert names["shortNames"] == ["tj"]
    assert names["categories"] == ["trainyard"]
    version = doc["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    assert list(columns) == [
        "Phase",
        "Workers",
        "Stage",
        "Progress%",
        "Restarts",
        "Age",
        "Loss",
        "Accuracy",
    ]
    assert columns["Workers"]["jsonPath"] == ".status.workers.summary"
    assert columns["Loss"]["priority"] == 1
    assert columns["Accuracy"]["priority"] == 1


def test_chart_copy_is_the_same_crd_behind_its_values() -> None:
    text = (CHART / crdgen.CHART_CRD_FILE).read_text()
    lines = text.splitlines()
    assert lines[0] == "{{- if .Values.crds.enabled }}"
    assert lines[-1] == "{{- end }}"
    keep = "    {{- if .Values.crds.keep }}\n    helm.sh/resource-policy: keep\n    {{- end }}\n"
    assert keep in text
    # What Helm renders with crds.enabled and crds.keep both true:
    rendered = yaml.safe_load(
        "\n".join(line for line in lines if not line.strip().startswith("{{"))
    )
    expected = crdgen.crd()
    expected["metadata"]["annotations"]["helm.sh/resource-policy"] = "keep"
    assert rendered == expected


@pytest.mark.parametrize("status", [{}, {"workers": {"ready": 1, "desired": 2}}])
def test_status_round_trips_through_the_models(status: dict[str, Any]) -> None:
    """The Workers column's text is derived, so a parsed status always carries it."""
    from trainyard_operator.api import TrainingJobStatus

    parsed = TrainingJobStatus.model_validate(status)
    workers = status.get("workers", {})
    assert parsed.workers.summary == f"{workers.get('ready', 0)}/{workers.get('desired', 0)}"


def _convert(model: type[Any]) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True)
    return crdgen._convert(schema, schema.get("$defs", {}), defaults=True, where=model.__name__)


def test_converter_maps_json_schema_to_the_crd_dialect() -> None:
    from typing import Annotated, Literal

    from pydantic import Field

    from trainyard_operator.api.base import ApiModel

    class Inner(ApiModel):
        """Inner."""

        rate: Annotated[float, Field(gt=0, lt=1)] = 0.5
        """A rate."""

    class Outer(ApiModel):
        """Outer."""

        count: int | Literal["auto"] = "auto"
        """Count."""
        inner: Inner = Field(default_factory=Inner)
        """Nested, defaulted."""
        maybe: Inner | None = None
        """Optional, absent unless set."""
        free: dict[str, Any] = Field(default_factory=dict)
        """Free-form."""
        kind: Literal["only"] = "only"
        """A constant."""

    out = _convert(Outer)["properties"]
    assert out["count"] == {
        "description": "Count.",
        "x-kubernetes-int-or-string": True,
        "default": "auto",
    }
    rate = out["inner"]["properties"]["rate"]
    assert (rate["minimum"], rate["exclusiveMinimum"]) == (0, True)
    assert (rate["maximum"], rate["exclusiveMaximum"]) == (1, True)
    assert out["inner"]["default"] == {"rate": 0.5}
    assert out["inner"]["description"] == "Nested, defaulted."
    assert "default" not in out["maybe"]
    assert out["free"]["x-kubernetes-preserve-unknown-fields"] is True
    assert out["kind"]["enum"] == ["only"]


def test_converter_refuses_what_a_structural_schema_cannot_say() -> None:
    from pydantic import Field

    from trainyard_operator.api.base import ApiModel

    class Union(ApiModel):
        """A union the API server has no structural form for."""

        value: int | list[str] = 0
        """Either."""

    class Extra(ApiModel):
        """A keyword with no CRD equivalent."""

        items: list[int] = Field(default_factory=list, json_schema_extra={"uniqueItems": True})
        """Unique items."""

    with pytest.raises(crdgen.CrdGenError, match=r"Union\.value"):
        _convert(Union)
    with pytest.raises(crdgen.CrdGenError, match="uniqueItems"):
        _convert(Extra)
