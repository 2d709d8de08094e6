"""ItemsService: each method is one query or one command of the handlers REST uses, on
the container of this process (convert.py translates; status.py answers errors)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf import empty_pb2

from app.bootstrap import Container
from app.commands.bus import CommandResult
from app.domain.values import parse_id
from app.grpc import convert
from app.grpc.generated.items.v1 import items_pb2 as pb
from app.grpc.generated.items.v1 import items_pb2_grpc
from app.grpc.status import abort
from app.keys import ApiKeys
from app.queries import views
from app.queries.queries import GetItem

TOKEN = "consistency-token"  # metadata: answered by writes, honoured by reads
AUTHORIZATION = "authorization"

Context = grpc.aio.ServicerContext[Any, Any]
R = TypeVar("R")


def _metadata(context: Context, key: str) -> list[str]:
    return [str(v) for k, v in (context.invocation_metadata() or ()) if k == key]


class ItemsServicer(items_pb2_grpc.ItemsServiceServicer):
    def __init__(self, container: Container) -> None:
        self._c = container
        self._keys = ApiKeys(container.settings.api_key_digests)
        self._read_requires_key = container.settings.read_requires_key

    async def _answer(self, context: Context, write: bool, work: Callable[[], Awaitable[R]]) -> R:
        """Run `work` for a caller allowed to (writes need a key, as REST's do), or end
        the call with the status of what it raised."""
        try:
            if write or self._read_requires_key:
                self._keys.check([v.encode() for v in _metadata(context, AUTHORIZATION)])
            return await work()
        except Exception as exc:
            await abort(context, exc)

    def _position(self, context: Context) -> int | None:
        tokens = _metadata(context, TOKEN)
        return self._c.tokens.position(tokens[-1]) if tokens else None

    async def GetItem(self, request: pb.GetItemRequest, context: Context) -> pb.Item:  # noqa: N802
        async def work() -> pb.Item:
            query = GetItem(parse_id(request.id), self._position(context))
            return convert.from_bytes((await self._c.queries.get_item(query)).body)

        return await self._answer(context, False, work)

    async def ListItems(  # noqa: N802
        self, request: pb.ListItemsRequest, context: Context
    ) -> pb.ListItemsResponse:
        async def work() -> pb.ListItemsResponse:
            query = convert.list_items(request, self._position(context))
            return convert.page((await self._c.queries.list_items(query)).body)

        return await self._answer(context, False, work)

    async def CreateItem(self, request: pb.CreateItemRequest, context: Context) -> pb.Item:  # noqa: N802
        async def work() -> pb.Item:
            cmd = convert.create(request)
            return await self._written(context, await self._c.command(cmd, cmd.item_id))

        return await self._answer(context, True, work)

    async def UpdateItem(self, request: pb.UpdateItemRequest, context: Context) -> pb.Item:  # noqa: N802
        async def work() -> pb.Item:
            cmd = convert.update(request)
            return await self._written(context, await self._c.command(cmd, cmd.item_id))

        return await self._answer(context, True, work)

    async def DeleteItem(  # noqa: N802
        self, request: pb.DeleteItemRequest, context: Context
    ) -> empty_pb2.Empty:
        async def work() -> empty_pb2.Empty:
            cmd = convert.delete(request)
            _, token = await self._c.command(cmd, cmd.item_id)
            await self._token(context, token)
            return empty_pb2.Empty()

        return await self._answer(context, True, work)

    async def _written(
        self, context: Context, written: tuple[CommandResult, str | None]
    ) -> pb.Item:
        result, token = written
        await self._token(context, token)
        return convert.item(views.item_view(result.item))

    @staticmethod
    async def _token(context: Context, token: str | None) -> None:
        if token is not None:
            await context.send_initial_metadata(((TOKEN, token),))
