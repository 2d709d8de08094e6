"""Request and response shapes. Request fields run the domain's own rules
(app/domain/values.py), so the API and the aggregate agree on what is valid."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    PlainValidator,
    WithJsonSchema,
)

from app.domain import values

# The domain's rules spelled as JSON Schema, so that the OpenAPI document promises
# exactly what the service accepts (the fuzz test in tests/api/test_schemathesis.py
# holds the two together): white space as str.strip() removes it, control characters
# (Unicode Cc) as the rules refuse them, plain decimals as parse_price reads them.
_SPACE = "\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_CONTROL = "\x00-\x1f\x7f-\x9f"
_SHOWN = f"[^{_CONTROL}{_SPACE}]"  # what can start and end a trimmed name
NAME_PATTERN = (
    f"^[{_SPACE}]*{_SHOWN}([^{_CONTROL}]{{0,{values.NAME_MAX - 2}}}{_SHOWN})?[{_SPACE}]*$"
)
DESCRIPTION_PATTERN = "^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$"  # tabs and line breaks pass
PRICE_PATTERN = r"^(0*[0-9]{1,9}(\.[0-9]{0,2}0*)?|\.[0-9]{1,2}0*|-(0+(\.0*)?|\.0+))$"
TAG_PATTERN = f"^[a-z0-9-]{{1,{values.TAG_MAX}}}$"

Name = Annotated[
    str,
    AfterValidator(values.normalize_name),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": NAME_PATTERN,
            "description": "Trimmed, then 1..200 characters; no control characters.",
            "examples": ["Desk lamp"],
        }
    ),
]
Description = Annotated[
    str | None,
    AfterValidator(values.normalize_description),
    WithJsonSchema(
        {
            "anyOf": [
                {
                    "type": "string",
                    "maxLength": values.DESCRIPTION_MAX,
                    "pattern": DESCRIPTION_PATTERN,
                },
                {"type": "null"},
            ],
            "description": "At most 2000 characters; no control characters but tab and line "
            "breaks. null clears it.",
        }
    ),
]
Price = Annotated[
    Decimal,
    PlainValidator(values.parse_price),
    WithJsonSchema(
        {
            "anyOf": [
                {
                    "type": "number",
                    "minimum": 0,
                    "exclusiveMaximum": 1_000_000_000,
                    "multipleOf": 0.01,
                },
                {"type": "string", "pattern": PRICE_PATTERN},
            ],
            "description": "Not negative, below 1,000,000,000, at most 2 decimal places once "
            "trailing zeros are dropped; a JSON number or a plain decimal string.",
            "examples": ["9.99"],
        }
    ),
]
Tags = Annotated[
    list[str],
    AfterValidator(values.normalize_tags),
    WithJsonSchema(
        {
            "type": "array",
            "items": {"type": "string", "pattern": TAG_PATTERN},
            "maxItems": values.TAGS_MAX,
            "description": "Duplicates are collapsed; at most 20 distinct tags.",
            "examples": [["office", "lighting"]],
        }
    ),
]

_CREATE_EXAMPLE: dict[str, JsonValue] = {
    "name": "Desk lamp",
    "description": "Warm light, 40 cm arm",
    "price": "24.90",
    "tags": ["office", "lighting"],
}


class ItemCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_CREATE_EXAMPLE]})

    name: Name
    description: Description = None
    price: Price
    tags: Tags = Field(default_factory=list)


class ItemPatch(BaseModel):
    """Any subset of the fields; `description: null` clears the description, while
    name, price and tags cannot be null."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"price": "19.90", "description": None}]}
    )

    name: Name = None  # type: ignore[assignment]  # omitted = unchanged; null is refused
    description: Description = None
    price: Price = None  # type: ignore[assignment]
    tags: Tags = None  # type: ignore[assignment]

    def changes(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.model_fields_set}


class ItemOut(BaseModel):
    """The item as every answer carries it (documentation only: answers are sent as
    stored bytes)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "0b5c7a3e-4d8f-4c1a-9e7b-2f6d8a1c3e5b",
                    "version": 1,
                    "created_at": "2026-11-28T09:30:00.123456Z",
                    "updated_at": "2026-11-28T09:30:00.123456Z",
                    **_CREATE_EXAMPLE,
                    "tags": ["lighting", "office"],
                }
            ]
        }
    )

    id: str = Field(json_schema_extra={"format": "uuid"})
    name: str
    description: str | None
    price: str = Field(pattern=r"^\d+\.\d{2}$")
    tags: list[str]
    version: int = Field(ge=1)
    created_at: str = Field(json_schema_extra={"format": "date-time"})
    updated_at: str = Field(json_schema_extra={"format": "date-time"})


class ItemPageOut(BaseModel):
    items: list[ItemOut]
    next_cursor: str | None
    total: int = Field(ge=0)


class FieldError(BaseModel):
    """One invalid field or parameter of a 422 answer."""

    loc: list[str] = Field(examples=[["body", "price"]])
    field: str = Field(examples=["price"])
    msg: str = Field(examples=["price must not be negative"])


class Problem(BaseModel):
    """RFC 9457 problem details: the body of every 4xx/5xx answer, sent as
    application/problem+json. A problem may carry more members than these."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(examples=["urn:items:problem:validation-error"])
    title: str = Field(examples=["Unprocessable Entity"])
    status: int = Field(ge=400, le=599)
    detail: str = Field(examples=["1 invalid field: price: price must not be negative"])
    errors: list[FieldError] | None = Field(
        default=None, description="422 only: each invalid field or parameter (the first 20)."
    )
    checks: dict[str, str] | None = Field(
        default=None, description="/readyz only: each readiness check and what it found."
    )
    request_id: str | None = Field(
        default=None,
        description="The request's id, as in its X-Request-ID header and the log lines.",
        examples=["5f3a9c1e0b7d4a21"],
    )
