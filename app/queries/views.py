"""The item view and the list-index entries it belongs to: the read model's schema.

A view is the item as every answer carries it, built once and stored as the exact bytes
a client gets. The write side renders its answers with the same functions, so an item
looks the same whether it came from a POST/PATCH answer or from the read model.

Each live view has one entry per sort field in the unfiltered indexes and as many again
per tag. An entry is "<sort key>\\x00<item id>": the sort key is fixed-width for times and
prices and the case-folded name for names, so entries sorted by their bytes are in page
order, ties fall to the id in the same direction, and a cursor is just the last entry
seen. Where these live in Redis (generations, hash tags, `v:`, `ver`, `cp`) is
app/infrastructure/redis/keys.py's business; what they are is this module's.
"""

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson

from app.domain.model import Item
from app.queries.queries import SORT_FIELDS

View = dict[str, Any]
ID_LENGTH = 36  # an item id in its canonical text form, the tail of every index entry


def format_price(price: Decimal) -> str:
    return f"{price:.2f}"


def format_time(moment: datetime) -> str:
    # Always six fraction digits and "Z": fixed-width, so the text sorts as the time.
    # (isoformat is several times faster than strftime, and this runs per view.)
    return moment.astimezone(UTC).isoformat(timespec="microseconds")[:-6] + "Z"


def item_view(item: Item) -> View:
    return make_view(
        item_id=str(item.id),
        name=item.name,
        description=item.description,
        price=format_price(item.price),
        tags=list(item.tags),
        version=item.version,
        created_at=format_time(item.created_at),
        updated_at=format_time(item.updated_at),
    )


def make_view(
    *,
    item_id: str,
    name: str,
    description: str | None,
    price: str,
    tags: list[str],
    version: int,
    created_at: str,
    updated_at: str,
) -> View:
    # Field order is part of the stored bytes; keep it in one place.
    return {
        "id": item_id,
        "name": name,
        "description": description,
        "price": price,
        "tags": tags,
        "version": version,
        "created_at": created_at,
        "updated_at": updated_at,
    }


def render(view: View) -> bytes:
    return orjson.dumps(view)


def parse(data: bytes) -> View:
    view = orjson.loads(data)
    if not isinstance(view, dict):
        raise ValueError("a view must be a JSON object")
    return view


# -- the list indexes ---------------------------------------------------------------------


def index_suffix(sort_field: str, tag: str | None = None) -> str:
    """The name of the list index of one sort field, for one tag or for all items."""
    return f"tx:{tag}:{sort_field}" if tag else f"ix:{sort_field}"


def is_index(name: str) -> bool:
    return name.startswith(("ix:", "tx:"))


def price_key(price: str) -> str:
    """Price text "123.45" -> 12 zero-padded digits of cents; prices are below 10^9 so this fits."""
    whole, _, cents = price.partition(".")
    return f"{int(whole) * 100 + int(cents or 0):012d}"


def sort_keys(view: dict[str, object]) -> tuple[str, str, str, str]:
    """The sort keys of a view, in SORT_FIELDS order."""
    # RFC 3339 UTC with microseconds is fixed-width, so its text sorts as its time.
    return (
        str(view["created_at"]),
        str(view["updated_at"]),
        str(view["name"]).casefold(),
        price_key(str(view["price"])),
    )


def index_members(view: dict[str, object]) -> dict[str, str]:
    """Every list-index entry a live view needs: index name -> entry."""
    tail = "\x00" + str(view["id"])
    keys = list(zip(SORT_FIELDS, sort_keys(view), strict=True))
    members = {index_suffix(f): k + tail for f, k in keys}
    tags = view["tags"]
    assert isinstance(tags, list)
    for tag in tags:
        for f, k in keys:
            members[index_suffix(f, tag)] = k + tail
    return members


def member_id(member: str) -> str:
    """The item id an index entry belongs to."""
    return member[-ID_LENGTH:]
