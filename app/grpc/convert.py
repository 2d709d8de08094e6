"""Messages to commands and queries, and views to messages: nothing but translation
(every rule is the domain's or the query side's, raised as InvalidValue and answered
INVALID_ARGUMENT with its field)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from uuid import uuid4

from google.protobuf.timestamp_pb2 import Timestamp

from app.commands.commands import CreateItem, DeleteItem, UpdateItem
from app.domain.errors import InvalidValue
from app.domain.model import UPDATABLE_FIELDS
from app.domain.values import parse_id
from app.grpc.generated.items.v1 import items_pb2 as pb
from app.queries import views
from app.queries.queries import MAX_LIMIT, ListItems, item_etag, list_query

_ETAG = re.compile(r'\s*"?([0-9]+)"?\s*')
_FILTER = re.compile(r'\s*tag\s*=\s*"?([^"\s]*)"?\s*')
_NAMES = {"limit": "page_size", "sort": "order_by", "tag": "filter", "cursor": "page_token"}


def item(view: dict[str, Any]) -> pb.Item:
    """An Item message from a view (the bytes REST sends, parsed)."""
    message = pb.Item(
        id=view["id"],
        name=view["name"],
        price=view["price"],
        tags=view["tags"],
        version=view["version"],
        etag=item_etag(view["version"]),
    )
    if view["description"] is not None:
        message.description = view["description"]
    _set_time(message.create_time, view["created_at"])
    _set_time(message.update_time, view["updated_at"])
    return message


def _set_time(stamp: Timestamp, text: str) -> None:
    """A view's time (RFC 3339, UTC, microseconds) into a Timestamp. Not FromJsonString:
    its strptime was 60% of a GetItem's time in the servicer (cProfile); fromisoformat
    is C, and the views' times are always of this one form."""
    moment = datetime.fromisoformat(text)
    stamp.seconds = int(moment.replace(microsecond=0).timestamp())
    stamp.nanos = moment.microsecond * 1000


def from_bytes(body: bytes) -> pb.Item:
    return item(views.parse(body))


def versions(etag: str, field: str = "etag") -> frozenset[int] | None:
    """The version an etag names ('"3"', as REST's ETag, or 3); None when empty."""
    if not etag:
        return None
    found = _ETAG.fullmatch(etag)
    if found is None:
        raise InvalidValue(field, f'{field} must be an entity tag like "3"')
    return frozenset({int(found[1])})


def create(request: pb.CreateItemRequest) -> CreateItem:
    given = request.item
    return CreateItem(
        item_id=uuid4(),
        name=given.name,
        price=given.price,
        description=given.description if given.HasField("description") else None,
        tags=tuple(given.tags),
    )


def update(request: pb.UpdateItemRequest) -> UpdateItem:
    given = request.item
    paths = list(request.update_mask.paths)
    if not paths:
        # AIP-134: no mask means every field that is set.
        paths = [f for f in ("name", "price") if getattr(given, f)]
        paths += ["tags"] if given.tags else []
        paths += ["description"] if given.HasField("description") else []
    changes: dict[str, Any] = {}
    for path in paths:
        if path not in UPDATABLE_FIELDS:
            raise InvalidValue("update_mask", f"{path!r} cannot be updated")
        if path == "description":
            changes[path] = given.description if given.HasField("description") else None
        elif path == "tags":
            changes[path] = tuple(given.tags)
        else:
            changes[path] = getattr(given, path)
    return UpdateItem(
        item_id=parse_id(given.id, "item.id"),
        changes=changes,
        expected_versions=versions(given.etag, "item.etag"),
    )


def delete(request: pb.DeleteItemRequest) -> DeleteItem:
    return DeleteItem(item_id=parse_id(request.id), expected_versions=versions(request.etag))


def list_items(request: pb.ListItemsRequest, min_position: int | None) -> ListItems:
    if request.page_size < 0:
        raise InvalidValue("page_size", "page_size must not be negative")
    tag = None
    if request.filter:
        found = _FILTER.fullmatch(request.filter)
        if found is None:
            raise InvalidValue("filter", 'filter must be "tag=<tag>"')
        tag = found[1]
    return list_query(
        # AIP-158: 0 is the default, and more than the maximum is the maximum.
        limit=min(request.page_size, MAX_LIMIT) or None,
        sort=request.order_by.strip() or None,
        tag=tag,
        cursor=request.page_token or None,
        min_position=min_position,
        names=_NAMES,
    )


def page(body: bytes) -> pb.ListItemsResponse:
    """A ListItemsResponse from a list answer's bytes (REST's page)."""
    data = views.parse(body)
    return pb.ListItemsResponse(
        items=[item(view) for view in data["items"]],
        next_page_token=data["next_cursor"] or "",
        total_size=data["total"],
    )
