"""/api/v1/items: each route turns HTTP into one command or one query, and back."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID, uuid4

from fastapi import APIRouter, Query
from starlette.responses import Response

from app.api.deps import ContainerDep
from app.api.schemas import ItemCreate, ItemOut, ItemPageOut, ItemPatch, ProblemOut
from app.commands.bus import CommandResult
from app.commands.commands import CreateItem, DeleteItem, UpdateItem
from app.infrastructure.views import item_view, render
from app.queries.handlers import GetItem, ListItems

JSON = "application/json"
SortParam = Annotated[
    str,
    Query(
        pattern=r"^-?(created_at|updated_at|name|price)$",
        description="created_at, updated_at, name or price; prefix '-' for descending.",
    ),
]
TagParam = Annotated[
    str | None, Query(pattern=r"^[a-z0-9-]{1,50}$", description="Only items with this tag.")
]

_problems: dict[int | str, dict[str, Any]] = {
    code: {"model": ProblemOut, "content": {"application/problem+json": {}}}
    for code in (400, 404, 413, 422, 503)
}

router = APIRouter(prefix="/api/v1/items", tags=["items"])


def _item_response(result: CommandResult, status: int) -> Response:
    return Response(render(item_view(result.item)), status_code=status, media_type=JSON)


@router.post("", status_code=201, response_model=ItemOut, responses=_problems)
async def create_item(body: ItemCreate, c: ContainerDep) -> Response:
    result = await c.bus.handle(
        CreateItem(
            item_id=uuid4(),
            name=body.name,
            description=body.description,
            price=body.price,
            tags=tuple(body.tags),
        )
    )
    response = _item_response(result, 201)
    response.headers["Location"] = f"/api/v1/items/{result.item.id}"
    return response


@router.get("/{item_id}", response_model=ItemOut, responses=_problems)
async def get_item(item_id: UUID, c: ContainerDep) -> Response:
    answer = await c.queries.get_item(GetItem(item_id))
    return Response(answer.body, media_type=JSON)


@router.get("", response_model=ItemPageOut, responses=_problems)
async def list_items(
    c: ContainerDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
    sort: SortParam = "-created_at",
    tag: TagParam = None,
) -> Response:
    answer = await c.queries.list_items(ListItems(limit=limit, sort=sort, tag=tag, cursor=cursor))
    return Response(answer.body, media_type=JSON)


@router.patch("/{item_id}", response_model=ItemOut, responses=_problems)
async def update_item(item_id: UUID, body: ItemPatch, c: ContainerDep) -> Response:
    result = await c.bus.handle(UpdateItem(item_id=item_id, changes=body.changes()))
    return _item_response(result, 200)


@router.delete("/{item_id}", status_code=204, responses=_problems)
async def delete_item(item_id: UUID, c: ContainerDep) -> Response:
    await c.bus.handle(DeleteItem(item_id=item_id))
    return Response(status_code=204)
