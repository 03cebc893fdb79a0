"""The base model every API type derives from: camelCase on the wire, snake_case in Python.

`crdgen` reads the JSON schema pydantic produces from these models (by alias), so a field's
description, default and bounds are written once, here; `cel` and `validations` attach the
CEL rules the API server checks at admission to the model or field they are about.
"""

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict


class ApiModel(BaseModel):
    """Base of every spec and status type (camelCase aliases, unknown fields rejected)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=True,
    )

    def to_wire(self) -> dict[str, object]:
        """The object as the API server stores it: camelCase keys, None omitted."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def cel(
    rule: str,
    message: str,
    *,
    field_path: str | None = None,
    reason: str | None = None,
    message_expression: str | None = None,
) -> dict[str, str]:
    """One CRD validation rule (`x-kubernetes-validations` item) evaluated by the API server.

    `message` names the field it is about, so `kubectl apply` tells the user what to fix;
    `field_path` (relative, e.g. ".dataPath") makes the server report the error at that field.
    """
    out = {"rule": rule, "message": message}
    if message_expression is not None:
        out["messageExpression"] = message_expression
    if field_path is not None:
        out["fieldPath"] = field_path
    if reason is not None:
        out["reason"] = reason
    return out


def validations(*rules: dict[str, str]) -> JsonDict:
    """`json_schema_extra` carrying CEL rules; `crdgen` copies them into the CRD verbatim."""
    return {"x-kubernetes-validations": [dict(r) for r in rules]}
