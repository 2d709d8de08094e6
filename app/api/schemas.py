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

Name = Annotated[
    str,
    AfterValidator(values.normalize_name),
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 200, "examples": ["Desk lamp"]}),
]
Description = Annotated[
    str | None,
    AfterValidator(values.normalize_description),
    WithJsonSchema({"anyOf": [{"type": "string", "maxLength": 2000}, {"type": "null"}]}),
]
Price = Annotated[
    Decimal,
    PlainValidator(values.parse_price),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0, "exclusiveMaximum": 1_000_000_000},
                {"type": "string", "pattern": r"^(\d+(\.\d*)?|\.\d+)$"},
            ],
            "description": "Not negative, below 1,000,000,000, at most 2 decimal places.",
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
            "items": {"type": "string", "pattern": "^[a-z0-9-]{1,50}$"},
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


class ProblemOut(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    errors: list[dict[str, Any]] | None = None
