"""Shared behaviour lives once (issue 19): a rule registered on the command bus, here only
inside this test (a name that is all digits is refused), holds for REST, GraphQL and gRPC
alike, with no line of theirs changed, and each answers it as its own validation error."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from app.commands.commands import CreateItem, UpdateItem
from app.domain.errors import InvalidValue
from app.domain.model import Item
from app.grpc.generated.items.v1 import items_pb2 as pb
from tests.helpers import Running, assert_problem, create, grpc_serving

CREATE = 'mutation ($n: String!) { createItem(input: {name: $n, price: "1"}) { id } }'
RENAME = "mutation ($id: ID!, $n: String!) { updateItem(id: $id, input: {name: $n}) { id } }"


def no_digits_only(cmd: Any, item: Item) -> None:
    if item.name.isdigit():
        raise InvalidValue("name", "name must not be all digits")


async def test_a_rule_on_the_bus_holds_for_every_entry_point(app: Running) -> None:
    bus = app.container.bus
    bus.add_rule(CreateItem, no_digits_only)
    bus.add_rule(UpdateItem, no_digits_only)
    async with app.client() as client, grpc_serving(app.container) as stub:
        # REST
        problem = assert_problem(
            await client.post("/api/v1/items", json={"name": "12345", "price": "1"}), 422
        )
        assert problem["errors"] == [
            {"loc": ["body", "name"], "field": "name", "msg": "name must not be all digits"}
        ]
        item = await create(client, name="lamp")
        renamed = await client.patch(f"/api/v1/items/{item['id']}", json={"name": "42"})
        assert_problem(renamed, 422)

        # GraphQL
        for query, variables in ((CREATE, {"n": "12345"}), (RENAME, {"id": item["id"], "n": "7"})):
            body = (
                await client.post("/graphql", json={"query": query, "variables": variables})
            ).json()
            error = body["errors"][0]["extensions"]
            assert error["code"] == "VALIDATION"
            assert error["errors"] == [{"field": "name", "msg": "name must not be all digits"}]

        # gRPC
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.CreateItem(pb.CreateItemRequest(item=pb.Item(name="12345", price="1")))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        status = rpc_status.from_call(caught.value)  # type: ignore[arg-type]
        violations = []
        for packed in status.details:
            bad = error_details_pb2.BadRequest()
            if packed.Unpack(bad):
                violations += [(v.field, v.description) for v in bad.field_violations]
        assert violations == [("name", "name must not be all digits")]

        # Nothing was written by any of them; a name the rule accepts still is.
        assert (await client.get(f"/api/v1/items/{item['id']}")).json()["name"] == "lamp"
        assert (await client.get("/api/v1/items")).json()["total"] == 1
        made = await stub.CreateItem(pb.CreateItemRequest(item=pb.Item(name="12a", price="1")))
        assert made.name == "12a"
