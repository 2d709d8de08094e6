"""GraphQL at /graphql, through httpx on the ASGI app, real PostgreSQL and Redis: the same
commands, queries and errors as REST (issue 19)."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
from redis.asyncio import Redis

from app.settings import Settings
from tests.helpers import KEY, UNKNOWN_KEY, bearer, client_of, with_keys

ITEM_FIELDS = "id name description price tags version createdAt updatedAt consistencyToken"
CREATE = f"""
mutation ($input: CreateItemInput!) {{ createItem(input: $input) {{ {ITEM_FIELDS} }} }}
"""
GET = f"""
query ($id: ID!, $token: String) {{
  item(id: $id, consistencyToken: $token) {{ {ITEM_FIELDS} }}
}}
"""
UPDATE = """
mutation ($id: ID!, $input: UpdateItemInput!, $v: Int) {
  updateItem(id: $id, input: $input, ifVersion: $v) {
    id version price description consistencyToken
  }
}
"""
DELETE = (
    "mutation ($id: ID!, $v: Int) { deleteItem(id: $id, ifVersion: $v) { id consistencyToken } }"
)
LIST = """
query ($first: Int, $after: String, $sort: String, $tag: String) {
  items(first: $first, after: $after, sort: $sort, tag: $tag) {
    edges { cursor node { id name price } }
    pageInfo { hasNextPage endCursor }
    totalCount
  }
}
"""


async def gql(
    client: httpx.AsyncClient, query: str, headers: dict[str, str] | None = None, **variables: Any
) -> dict[str, Any]:
    response = await client.post(
        "/graphql", json={"query": query, "variables": variables}, headers=headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def code(body: dict[str, Any]) -> str:
    assert body.get("errors"), body
    found: str = body["errors"][0]["extensions"]["code"]
    return found


async def create(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = await gql(client, CREATE, input={"name": "thing", "price": "1.00", **fields})
    assert "errors" not in body, body
    item: dict[str, Any] = body["data"]["createItem"]
    return item


async def test_create_then_read_it_back_with_its_token(client: httpx.AsyncClient) -> None:
    item = await create(client, name="  Lamp ", price="9.9", tags=["b", "a"], description="x")
    assert item["name"] == "Lamp"
    assert item["price"] == "9.90"
    assert item["tags"] == ["a", "b"]
    assert item["version"] == 1
    assert item["consistencyToken"]
    read = await gql(client, GET, id=item["id"], token=item["consistencyToken"])
    assert read["data"]["item"] == {**item, "consistencyToken": None}
    # The same item REST serves, field for field.
    rest = (await client.get(f"/api/v1/items/{item['id']}")).json()
    assert rest["created_at"] == item["createdAt"]
    assert rest["price"] == item["price"]


async def test_a_list_page_is_a_relay_connection(client: httpx.AsyncClient) -> None:
    for n in range(3):
        last = await create(client, name=f"n{n}", price=f"{n}.00", tags=["pg"])
    await gql(client, GET, id=last["id"], token=last["consistencyToken"])
    first = await gql(client, LIST, first=2, sort="price", tag="pg")
    page = first["data"]["items"]
    assert [e["node"]["name"] for e in page["edges"]] == ["n0", "n1"]
    assert page["totalCount"] == 3
    assert page["pageInfo"] == {"hasNextPage": True, "endCursor": page["edges"][-1]["cursor"]}
    rest = await gql(
        client, LIST, first=2, sort="price", tag="pg", after=page["pageInfo"]["endCursor"]
    )
    tail = rest["data"]["items"]
    assert [e["node"]["name"] for e in tail["edges"]] == ["n2"]
    assert tail["pageInfo"]["hasNextPage"] is False
    # Any edge's cursor continues after that edge.
    mid = await gql(client, LIST, first=5, sort="price", tag="pg", after=page["edges"][0]["cursor"])
    assert [e["node"]["name"] for e in mid["data"]["items"]["edges"]] == ["n1", "n2"]


async def test_update_with_a_stale_version_is_a_version_conflict(client: httpx.AsyncClient) -> None:
    item = await create(client, description="old")
    done = await gql(client, UPDATE, id=item["id"], input={"price": "2", "description": None}, v=1)
    assert done["data"]["updateItem"]["version"] == 2
    assert done["data"]["updateItem"]["description"] is None
    stale = await gql(client, UPDATE, id=item["id"], input={"price": "3"}, v=1)
    assert code(stale) == "VERSION_CONFLICT"
    assert stale["errors"][0]["extensions"]["currentVersion"] == 2
    assert stale["data"]["updateItem"] is None
    read = await gql(
        client, GET, id=item["id"], token=done["data"]["updateItem"]["consistencyToken"]
    )
    assert read["data"]["item"]["price"] == "2.00"


async def test_validation_errors_name_the_field(client: httpx.AsyncClient) -> None:
    bad = await gql(client, CREATE, input={"name": "x", "price": "-1"})
    assert code(bad) == "VALIDATION"
    assert bad["errors"][0]["extensions"]["errors"][0]["field"] == "price"
    for variables, field in (
        ({"first": 0}, "first"),
        ({"first": 101}, "first"),
        ({"sort": "colour"}, "sort"),
        ({"tag": "Not A Tag"}, "tag"),
        ({"after": "forged.cursor"}, None),
    ):
        refused = await gql(client, LIST, **variables)
        assert code(refused) == "VALIDATION", variables
        if field:
            assert refused["errors"][0]["extensions"]["errors"][0]["field"] == field
    item = await create(client)
    null_name = await gql(client, UPDATE, id=item["id"], input={"name": None})
    assert code(null_name) == "VALIDATION"
    assert code(await gql(client, GET, id="not-a-uuid")) == "VALIDATION"
    assert code(await gql(client, GET, id=item["id"], token="forged")) == "VALIDATION"


async def test_not_found_and_deleted(client: httpx.AsyncClient) -> None:
    missing = await gql(client, GET, id=str(uuid.uuid4()))
    assert code(missing) == "NOT_FOUND"
    assert missing["data"] == {"item": None}
    item = await create(client)
    gone = await gql(client, DELETE, id=item["id"], v=1)
    assert gone["data"]["deleteItem"]["id"] == item["id"]
    token = gone["data"]["deleteItem"]["consistencyToken"]
    assert code(await gql(client, GET, id=item["id"], token=token)) == "NOT_FOUND"
    assert code(await gql(client, DELETE, id=item["id"])) == "NOT_FOUND"


async def test_hostile_queries_are_refused_without_a_500(client: httpx.AsyncClient) -> None:
    deep = "query { items { edges { node { id } } pageInfo { endCursor } } }"
    assert "errors" not in await gql(client, deep)
    nested = "{ __typename " + "".join(f"a{n}: items {{ totalCount }} " for n in range(30)) + "}"
    assert "errors" in await gql(client, nested)  # too many aliases
    for query in ("{ items { edges { node { nope } } } }", "{ items(", "mutation { nope }"):
        response = await client.post("/graphql", json={"query": query})
        assert response.status_code in (200, 400), response.text
        assert response.json()["errors"]
    introspection = "{ __schema { types { name fields { name type { name ofType { name ofType { name ofType { name } } } } } } } }"  # noqa: E501
    assert "errors" not in await gql(client, introspection)


async def test_graphiql_is_off_unless_asked(
    client: httpx.AsyncClient, settings: Settings, db: asyncpg.Connection, redis: Redis
) -> None:
    page = await client.get("/graphql", headers={"accept": "text/html"})
    assert "graphiql" not in page.text.lower()
    options = await client.options("/graphql")
    assert options.status_code == 204
    assert options.headers["allow"] == "GET, OPTIONS, POST"
    async with client_of(settings.model_copy(update={"graphiql": True})) as ide:
        shown = await ide.get("/graphql", headers={"accept": "text/html"})
        assert shown.status_code == 200
        assert "graphiql" in shown.text.lower()


async def test_mutations_need_the_key_as_rest_writes_do(
    settings: Settings, db: asyncpg.Connection, redis: Redis
) -> None:
    async with client_of(with_keys(settings)) as keyed:
        body = {"input": {"name": "a", "price": "1"}}
        assert code(await gql(keyed, CREATE, **body)) == "UNAUTHENTICATED"
        unknown = await gql(keyed, CREATE, headers=bearer(UNKNOWN_KEY), **body)
        assert code(unknown) == "FORBIDDEN"
        made = await gql(keyed, CREATE, headers=bearer(KEY), **body)
        item = made["data"]["createItem"]
        # Reads stay open, as REST's do.
        read = await gql(keyed, GET, id=item["id"], token=item["consistencyToken"])
        assert read["data"]["item"]["id"] == item["id"]
