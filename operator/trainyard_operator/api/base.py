"""The base model every API type derives from: camelCase on the wire, snake_case in Python.

`crdgen` reads the JSON schema pydantic produces from these models (by alias), so a field's
description, default and bounds are written once, here.
"""

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


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
