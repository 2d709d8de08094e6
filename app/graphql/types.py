"""The schema's object and input types, and how an item's view becomes an `Item`.

The fields are REST's (`price` a decimal string, times RFC 3339 UTC) in GraphQL's
camelCase; an `Item` is built from the very view a REST answer sends (app/queries/
views.py), so the two cannot disagree about an item.
"""

from __future__ import annotations

from typing import Any

import strawberry

from app.domain.errors import InvalidValue
from app.domain.model import Item as DomainItem
from app.queries import views


@strawberry.type(description="An item, as the read model (or the write that made it) shows it.")
class Item:
    id: strawberry.ID
    name: str
    description: str | None
    price: str = strawberry.field(description="A decimal string with two decimals.")
    tags: list[str]
    version: int
    created_at: str
    updated_at: str
    consistency_token: str | None = strawberry.field(
        default=None,
        description="The token of the write that produced this item (null on reads): a "
        "query sending it waits until the read model shows that write.",
    )

    @classmethod
    def of_view(cls, view: dict[str, Any], token: str | None = None) -> Item:
        return cls(
            id=strawberry.ID(str(view["id"])),
            name=view["name"],
            description=view["description"],
            price=view["price"],
            tags=list(view["tags"]),
            version=int(view["version"]),
            created_at=view["created_at"],
            updated_at=view["updated_at"],
            consistency_token=token,
        )

    @classmethod
    def of_bytes(cls, body: bytes) -> Item:
        return cls.of_view(views.parse(body))

    @classmethod
    def of_item(cls, item: DomainItem, token: str | None) -> Item:
        return cls.of_view(views.item_view(item), token)


@strawberry.type
class ItemEdge:
    cursor: str
    node: Item


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type(description="A page of items, Relay style.")
class ItemConnection:
    edges: list[ItemEdge]
    page_info: PageInfo
    total_count: int


@strawberry.type
class DeletedItem:
    id: strawberry.ID
    consistency_token: str | None


@strawberry.input
class CreateItemInput:
    name: str
    price: str = strawberry.field(description="A plain decimal string, like 9.99.")
    description: str | None = None
    tags: list[str] | None = None


@strawberry.input(description="Only the fields given change; description: null clears it.")
class UpdateItemInput:
    name: str | None = strawberry.UNSET
    description: str | None = strawberry.UNSET
    price: str | None = strawberry.UNSET
    tags: list[str] | None = strawberry.UNSET

    def changes(self) -> dict[str, Any]:
        """The fields given, as UpdateItem takes them; null only clears a description
        (the domain refuses a null name, price or tags as REST's PATCH does)."""
        given = {
            name: getattr(self, name)
            for name in ("name", "description", "price", "tags")
            if getattr(self, name) is not strawberry.UNSET
        }
        for name in ("name", "price", "tags"):
            if name in given and given[name] is None:
                raise InvalidValue(name, f"{name} cannot be null")
        if "tags" in given:
            given["tags"] = tuple(given["tags"])
        return given
