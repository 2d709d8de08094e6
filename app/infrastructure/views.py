"""The item representation, built once and stored as the exact bytes a client gets.

The write side renders its answers with the same functions, so an item looks the same
whether it came from a POST/PATCH answer or from the Redis view.
"""

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson

from app.domain.model import Item

View = dict[str, Any]


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
