"""Errors as GraphQL errors: `extensions.code` (and the field errors) from the shared
table (app/bootstrap/errors.py), never a 500.

Resolvers run inside `answered()`, which turns whatever they raise into a GraphQLError
the table names; what the table does not know is a bug, logged with its traceback and
answered INTERNAL with no detail (no stack, no SQL, no key).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from graphql import GraphQLError

from app.bootstrap import errors as table
from app.domain.errors import VersionMismatch


def graphql_error(exc: BaseException) -> GraphQLError:
    found = table.outcome(exc)
    table.report(found, exc)
    extensions: dict[str, Any] = {"code": found.graphql}
    message = found.message(exc)
    fields = table.field_errors(exc)
    if fields:
        extensions["errors"] = [{"field": f, "msg": m} for f, m in fields]
        message = "; ".join(f"{f}: {m}" for f, m in fields)
    if isinstance(exc, VersionMismatch):
        extensions["currentVersion"] = exc.current_version
    if found.retry:
        extensions["retryable"] = True
    return GraphQLError(message, extensions=extensions)


@contextlib.contextmanager
def answered() -> Iterator[None]:
    """Around a resolver's body: what it raises leaves as a GraphQLError of the table."""
    try:
        yield
    except GraphQLError:
        raise
    except Exception as exc:
        raise graphql_error(exc) from None
