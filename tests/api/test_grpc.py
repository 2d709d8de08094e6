"""gRPC: ItemsService through a grpcio stub generated from proto/items/v1/items.proto, on
an in-process grpc.aio server over the test app's container (real PostgreSQL and Redis):
the same commands, queries and errors as REST (issue 19). The real `items grpc` process
(health, reflection, drain) is tests/integration/test_grpc_process.py."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import asyncpg
import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from redis.asyncio import Redis

from app.api.app import create_app
from app.grpc.generated.items.v1 import items_pb2 as pb
from app.settings import Settings
from tests.helpers import KEY, UNKNOWN_KEY, Running, grpc_serving, running, with_keys

if TYPE_CHECKING:  # the stub's asyncio type exists only for type checkers
    from app.grpc.generated.items.v1.items_pb2_grpc import ItemsServiceAsyncStub as Stub


@pytest.fixture
async def stub(app: Running) -> AsyncIterator[Stub]:
    async with grpc_serving(app.container) as s:
        yield s


def token_of(metadata: Any) -> str:
    return str(dict(metadata)["consistency-token"])


async def create(stub: Stub, **fields: Any) -> tuple[pb.Item, str]:
    call = stub.CreateItem(
        pb.CreateItemRequest(item=pb.Item(**{"name": "thing", "price": "1", **fields}))
    )
    made = await call
    return made, token_of(await call.initial_metadata())


def read_at(token: str) -> tuple[tuple[str, str]]:
    return (("consistency-token", token),)


def details(error: grpc.aio.AioRpcError) -> dict[str, Any]:
    """The rich error details of a failed call, by kind."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "no rich status in the trailers"
    found: dict[str, Any] = {}
    for packed in status.details:
        for kind in (error_details_pb2.BadRequest, error_details_pb2.ErrorInfo):
            message = kind()
            if packed.Unpack(message):
                found[kind.__name__] = message
    return found


async def refused(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


async def test_create_then_get_with_its_token(stub: Stub) -> None:
    made, token = await create(stub, name=" Lamp ", price="9.9", tags=["b", "a"], description="x")
    assert (made.name, made.price, list(made.tags), made.version) == ("Lamp", "9.90", ["a", "b"], 1)
    assert made.etag == '"1"'
    assert made.description == "x"
    assert made.create_time.seconds > 0
    assert made.create_time == made.update_time
    got = await stub.GetItem(pb.GetItemRequest(id=made.id), metadata=read_at(token))
    assert got == made


async def test_a_list_page_and_the_next(stub: Stub) -> None:
    for n in range(3):
        _, token = await create(stub, name=f"n{n}", price=f"{n}", tags=["pg"])
    first = await stub.ListItems(
        pb.ListItemsRequest(page_size=2, order_by="-price", filter="tag=pg"),
        metadata=read_at(token),
    )
    assert [i.name for i in first.items] == ["n2", "n1"]
    assert first.total_size == 3
    assert first.next_page_token
    rest = await stub.ListItems(
        pb.ListItemsRequest(
            page_size=2, order_by="-price", filter="tag=pg", page_token=first.next_page_token
        )
    )
    assert [i.name for i in rest.items] == ["n0"]
    assert rest.next_page_token == ""


async def test_update_with_a_field_mask_and_a_stale_etag(stub: Stub) -> None:
    made, _ = await create(stub, description="old", tags=["a"])
    mask = field_mask_pb2.FieldMask(paths=["price", "description"])
    changed = await stub.UpdateItem(
        pb.UpdateItemRequest(item=pb.Item(id=made.id, price="2", etag=made.etag), update_mask=mask)
    )
    assert changed.version == 2
    assert changed.price == "2.00"
    assert not changed.HasField("description")  # in the mask and absent: cleared
    assert list(changed.tags) == ["a"]  # not in the mask: unchanged
    stale = await refused(
        stub.UpdateItem(pb.UpdateItemRequest(item=pb.Item(id=made.id, price="3", etag='"1"')))
    )
    assert stale.code() == grpc.StatusCode.ABORTED
    info = details(stale)["ErrorInfo"]
    assert info.reason == "PRECONDITION_FAILED"
    assert info.metadata["current_etag"] == '"2"'
    gone = await refused(stub.DeleteItem(pb.DeleteItemRequest(id=made.id, etag='"1"')))
    assert gone.code() == grpc.StatusCode.ABORTED


async def test_validation_errors_carry_field_violations(stub: Stub) -> None:
    bad = await refused(stub.CreateItem(pb.CreateItemRequest(item=pb.Item(name="x", price="-1"))))
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = details(bad)["BadRequest"].field_violations
    assert [v.field for v in violations] == ["price"]
    for request, field in (
        (pb.ListItemsRequest(page_size=-1), "page_size"),
        (pb.ListItemsRequest(order_by="colour"), "order_by"),
        (pb.ListItemsRequest(filter="colour=red"), "filter"),
        (pb.ListItemsRequest(filter="tag=Not-A-Tag"), "filter"),
    ):
        error = await refused(stub.ListItems(request))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, request
        assert details(error)["BadRequest"].field_violations[0].field == field
    forged = await refused(stub.ListItems(pb.ListItemsRequest(page_token="forged.token")))
    assert forged.code() == grpc.StatusCode.INVALID_ARGUMENT
    made, _ = await create(stub)
    mask = field_mask_pb2.FieldMask(paths=["version"])
    masked = await refused(stub.UpdateItem(pb.UpdateItemRequest(item=made, update_mask=mask)))
    assert details(masked)["BadRequest"].field_violations[0].field == "update_mask"
    not_uuid = await refused(stub.GetItem(pb.GetItemRequest(id="nope")))
    assert not_uuid.code() == grpc.StatusCode.INVALID_ARGUMENT
    # More than the maximum page is the maximum (AIP-158), not an error.
    assert (await stub.ListItems(pb.ListItemsRequest(page_size=1000))).total_size >= 1


async def test_not_found(stub: Stub) -> None:
    missing = await refused(stub.GetItem(pb.GetItemRequest(id=str(uuid.uuid4()))))
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    assert details(missing)["ErrorInfo"].reason == "ITEM_NOT_FOUND"
    made, _ = await create(stub)
    call = stub.DeleteItem(pb.DeleteItemRequest(id=made.id, etag=made.etag))
    await call
    token = token_of(await call.initial_metadata())
    gone = await refused(stub.GetItem(pb.GetItemRequest(id=made.id), metadata=read_at(token)))
    assert gone.code() == grpc.StatusCode.NOT_FOUND
    again = await refused(stub.DeleteItem(pb.DeleteItemRequest(id=made.id)))
    assert again.code() == grpc.StatusCode.NOT_FOUND


async def test_writes_need_the_key_as_rest_writes_do(
    settings: Settings, db: asyncpg.Connection, redis: Redis
) -> None:
    async with (
        running(create_app(with_keys(settings))) as app,
        grpc_serving(app.container) as keyed,
    ):
        request = pb.CreateItemRequest(item=pb.Item(name="a", price="1"))
        none = await refused(keyed.CreateItem(request))
        assert none.code() == grpc.StatusCode.UNAUTHENTICATED
        unknown = await refused(
            keyed.CreateItem(request, metadata=(("authorization", f"Bearer {UNKNOWN_KEY}"),))
        )
        assert unknown.code() == grpc.StatusCode.PERMISSION_DENIED
        call = keyed.CreateItem(request, metadata=(("authorization", f"Bearer {KEY}"),))
        made = await call
        token = token_of(await call.initial_metadata())
        got = await keyed.GetItem(pb.GetItemRequest(id=made.id), metadata=read_at(token))
        assert got.id == made.id  # reads stay open
