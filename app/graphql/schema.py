"""The schema: queries and mutations, each one query or one command of the handlers REST
uses (the same validation, rules and errors), and the router app/api/app.py mounts.

Hostile queries are refused before they run: depth, tokens and aliases are bounded, a
page holds at most 100 items, and the body is REST's 64 KiB at most (LimitBody).
"""

from __future__ import annotations

from collections.abc import Callable
from uuid import uuid4

import strawberry
from fastapi import Request
from graphql import ASTValidationRule, GraphQLError
from starlette.types import Scope
from strawberry.extensions import AddValidationRules, MaxTokensLimiter, ParserCache, ValidationCache
from strawberry.extensions.max_aliases import create_validator as alias_limit
from strawberry.extensions.query_depth_limiter import IgnoreContext
from strawberry.extensions.query_depth_limiter import create_validator as depth_limit
from strawberry.fastapi import BaseContext, GraphQLRouter
from strawberry.types import ExecutionContext, Info

from app.bootstrap import Container
from app.commands.commands import CreateItem, DeleteItem, UpdateItem
from app.domain.values import parse_id
from app.graphql.errors import answered
from app.graphql.types import (
    CreateItemInput,
    DeletedItem,
    Item,
    ItemConnection,
    ItemEdge,
    PageInfo,
    UpdateItemInput,
)
from app.keys import ApiKeys
from app.queries.queries import GetItem, list_query
from app.settings import Settings

MAX_DEPTH = 6  # items { edges { node { id } } } is 4 deep
MAX_TOKENS = 2000  # GraphiQL's introspection query is about 300
MAX_ALIASES = 20
CACHED_DOCUMENTS = 256


class Context(BaseContext):
    """What a resolver needs: the container, and who is asking (their credentials)."""

    def __init__(
        self, container: Container, keys: ApiKeys, read_requires_key: bool, auth: list[bytes]
    ) -> None:
        super().__init__()
        self.container = container
        self._keys = keys
        self._read_requires_key = read_requires_key
        self._auth = auth

    def reader(self) -> Container:
        if self._read_requires_key:
            self._keys.check(self._auth)
        return self.container

    def writer(self) -> Container:
        """Mutations need a key exactly as REST writes do (with API_KEYS set)."""
        self._keys.check(self._auth)
        return self.container

    def position(self, token: str | None) -> int | None:
        return None if token is None else self.container.tokens.position(token)


Resolved = Info[Context, None]


@strawberry.type
class Query:
    @strawberry.field
    async def item(
        self, info: Resolved, id: strawberry.ID, consistency_token: str | None = None
    ) -> Item | None:
        with answered():
            c = info.context.reader()
            query = GetItem(parse_id(id), info.context.position(consistency_token))
            return Item.of_bytes((await c.queries.get_item(query)).body)

    @strawberry.field
    async def items(
        self,
        info: Resolved,
        first: int | None = None,
        after: str | None = None,
        sort: str | None = None,
        tag: str | None = None,
        consistency_token: str | None = None,
    ) -> ItemConnection | None:
        with answered():
            c = info.context.reader()
            query = list_query(
                limit=first,
                sort=sort,
                tag=tag,
                cursor=after,
                min_position=info.context.position(consistency_token),
                names={"limit": "first", "cursor": "after"},
            )
            page = await c.queries.page(query)
            edges = [ItemEdge(cursor=cur, node=Item.of_bytes(view)) for cur, view in page.entries]
            end = edges[-1].cursor if edges else None
            info_ = PageInfo(has_next_page=page.has_next, end_cursor=end)
            return ItemConnection(edges=edges, page_info=info_, total_count=page.total)


@strawberry.type
class Mutation:
    @strawberry.mutation
    async def create_item(self, info: Resolved, input: CreateItemInput) -> Item | None:
        with answered():
            c = info.context.writer()
            cmd = CreateItem(
                item_id=uuid4(),
                name=input.name,
                description=input.description,
                price=input.price,
                tags=tuple(input.tags or ()),
            )
            result, token = await c.command(cmd, cmd.item_id)
            return Item.of_item(result.item, token)

    @strawberry.mutation
    async def update_item(
        self,
        info: Resolved,
        id: strawberry.ID,
        input: UpdateItemInput,
        if_version: int | None = None,
    ) -> Item | None:
        with answered():
            c = info.context.writer()
            item_id = parse_id(id)
            expected = None if if_version is None else frozenset({if_version})
            cmd = UpdateItem(item_id=item_id, changes=input.changes(), expected_versions=expected)
            result, token = await c.command(cmd, item_id)
            return Item.of_item(result.item, token)

    @strawberry.mutation
    async def delete_item(
        self, info: Resolved, id: strawberry.ID, if_version: int | None = None
    ) -> DeletedItem | None:
        with answered():
            c = info.context.writer()
            item_id = parse_id(id)
            expected = None if if_version is None else frozenset({if_version})
            _, token = await c.command(
                DeleteItem(item_id=item_id, expected_versions=expected), item_id
            )
            return DeletedItem(id=strawberry.ID(str(item_id)), consistency_token=token)


def _introspection(context: IgnoreContext) -> bool:
    # GraphiQL's introspection query nests `ofType` deeper than any query of the schema.
    return context.field_name.startswith("__")


# The depth and alias limits as validation rules made once: the validation cache is keyed
# by the rules too, and QueryDepthLimiter / MaxAliasesLimiter make new ones per request.
_RULES: list[type[ASTValidationRule]] = [
    depth_limit(MAX_DEPTH, _introspection),
    alias_limit(MAX_ALIASES),
]


def _limits() -> AddValidationRules:
    return AddValidationRules(_RULES)


def _parser_cache() -> ParserCache:
    return ParserCache(maxsize=CACHED_DOCUMENTS)


def _validation_cache() -> ValidationCache:
    return ValidationCache(maxsize=CACHED_DOCUMENTS)


class ItemsSchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """Strawberry logs every error with its stack; here an error is the client's (a
        bad query, a refused command: nothing to log) or a bug that answered() logged
        already. Only one that escaped it is logged."""
        unexpected = [e for e in errors if e.original_error is not None]
        if unexpected:
            super().process_errors(unexpected, execution_context)


SCHEMA = ItemsSchema(
    query=Query,
    mutation=Mutation,
    # Factories: a fresh extension per request (an instance would be shared by all).
    extensions=[
        lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
        _limits,
        # Validating a document was 72% of a trivial item(id) query's time (cProfile,
        # 5.8 ms an execution); clients send the same few documents again and again,
        # so parse and validation results are kept, per document, bounded.
        _parser_cache,
        _validation_cache,
    ],
)


def router(
    settings: Settings, container_of: Callable[[Scope], Container], path: str = ""
) -> GraphQLRouter[Context, None]:
    """The GraphQL routes (GET and POST on `path`), on the API's container. GraphiQL
    only with GRAPHIQL=true; out of the OpenAPI document, which is REST's."""
    keys = ApiKeys(settings.api_key_digests)
    read_requires_key = settings.read_requires_key

    async def context(request: Request) -> Context:
        auth = [v.encode("latin-1") for v in request.headers.getlist("authorization")]
        return Context(container_of(request.scope), keys, read_requires_key, auth)

    return GraphQLRouter(
        SCHEMA,
        path=path,
        context_getter=context,
        graphql_ide="graphiql" if settings.graphiql else None,
        include_in_schema=False,
    )
