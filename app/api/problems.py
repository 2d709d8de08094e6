"""Every error answer is RFC 9457 problem+json; this module is the one place where
exceptions become HTTP answers."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import asyncpg
import orjson
import redis.exceptions
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from app.api import methods
from app.api.preconditions import InvalidEntityTags, InvalidIdempotencyKey
from app.commands.idempotency import KeyReused, RequestInFlight
from app.commands.unit_of_work import WriteModelBusy
from app.domain.errors import InvalidValue, ItemNotFound, VersionMismatch
from app.queries.errors import (
    ConsistencyTimeout,
    InvalidCursor,
    InvalidToken,
    ReadModelUnavailable,
)
from app.quiet import Quiet

log = logging.getLogger("items.api")

PROBLEM = "application/problem+json"
RETRY_AFTER = "1"
# A 64 KiB body can hold tens of thousands of invalid values; the answer names the
# first few rather than growing to megabytes.
MAX_LISTED_ERRORS = 20


def unreachable(exc: BaseException) -> bool:
    """PostgreSQL cannot be reached or is going away: the request may be retried later
    (503), as opposed to a statement PostgreSQL refused (a bug: 500)."""
    return isinstance(
        exc,
        OSError  # refused, reset, and TimeoutError (connect and command timeouts)
        | asyncpg.InterfaceError  # "connection is closed", a pool closing
        | asyncpg.PostgresConnectionError  # 08xxx, among them ConnectionDoesNotExistError
        | asyncpg.exceptions.OperatorInterventionError  # 57xxx: shutdown, cancel
        | asyncpg.exceptions.InsufficientResourcesError,  # 53xxx: too many connections
    )


def problem(
    status: int,
    detail: str,
    *,
    slug: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    phrase = HTTPStatus(status).phrase
    body = {
        # A type per kind of problem; "about:blank" when the status says it all.
        "type": f"urn:items:problem:{slug}" if slug else "about:blank",
        "title": phrase,
        "status": status,
        "detail": detail,
        **extra,
    }
    return Response(orjson.dumps(body), status_code=status, media_type=PROBLEM, headers=headers)


def unavailable(detail: str, slug: str) -> Response:
    return problem(503, detail, slug=slug, headers={"Retry-After": RETRY_AFTER})


def _field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    errors = []
    for err in exc.errors():
        message = str(err.get("msg", "invalid"))
        message = message.removeprefix("Value error, ")
        loc = [str(part) for part in err.get("loc", ())]
        errors.append({"loc": loc, "field": ".".join(loc[1:]) or loc[0], "msg": message})
    return errors


async def on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    json_errors = [e for e in exc.errors() if e.get("type") == "json_invalid"]
    if json_errors:
        reason = json_errors[0].get("ctx", {}).get("error", "invalid JSON")
        return problem(400, f"the body is not valid JSON: {reason}", slug="malformed-json")
    errors = _field_errors(exc)
    listed = errors[:MAX_LISTED_ERRORS]
    more = f"; and {len(errors) - len(listed)} more" if len(errors) > len(listed) else ""
    return problem(
        422,
        f"{len(errors)} invalid field{'s' if len(errors) != 1 else ''}: "
        + "; ".join(f"{e['field']}: {e['msg']}" for e in listed)
        + more,
        slug="validation-error",
        errors=listed,
    )


async def on_invalid_value(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, InvalidValue)
    error = {"loc": ["body", exc.field], "field": exc.field, "msg": exc.message}
    return problem(422, f"{exc.field}: {exc.message}", slug="validation-error", errors=[error])


async def on_not_found(request: Request, exc: Exception) -> Response:
    return problem(404, str(exc), slug="item-not-found")


async def on_invalid_cursor(request: Request, exc: Exception) -> Response:
    return problem(400, f"invalid cursor: {exc}", slug="invalid-cursor")


async def on_read_model_unavailable(request: Request, exc: Exception) -> Response:
    return unavailable(
        "the read model is being restored; try again shortly", "read-model-unavailable"
    )


async def on_version_mismatch(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, VersionMismatch)
    return problem(
        412,
        f"If-Match does not name the current version ({exc.current_version}); nothing changed",
        slug="precondition-failed",
        headers={"ETag": f'"{exc.current_version}"'},
    )


async def on_in_flight(request: Request, exc: Exception) -> Response:
    return problem(
        409,
        "a request with this Idempotency-Key is still in flight; retry after it completes",
        slug="idempotency-key-in-flight",
        headers={"Retry-After": RETRY_AFTER},
    )


async def on_key_reused(request: Request, exc: Exception) -> Response:
    return problem(
        422,
        "this Idempotency-Key was used for a different request",
        slug="idempotency-key-reused",
    )


async def on_bad_request(request: Request, exc: Exception) -> Response:
    return problem(400, str(exc), slug="bad-request-header")


async def on_consistency_timeout(request: Request, exc: Exception) -> Response:
    return unavailable(
        "the read model has not reached the requested position yet; retry shortly",
        "consistency-timeout",
    )


_redis_down = Quiet(log, "reads refused")
_postgres_down = Quiet(log, "writes refused")


async def on_slot_moving(request: Request, exc: Exception) -> Response:
    _redis_down.say(f"a Redis Cluster slot is moving ({exc})")
    return unavailable(
        "a partition of the read model is moving between Redis Cluster nodes; try again shortly",
        "read-model-moving",
    )


async def on_redis_error(request: Request, exc: Exception) -> Response:
    _redis_down.say(f"Redis is unavailable ({exc})")
    return unavailable("the read model (Redis) is unreachable", "read-model-unreachable")


async def on_database_error(request: Request, exc: Exception) -> Response:
    # A statement PostgreSQL refused is a bug (500); one that never got an answer, or a
    # server going away, is worth a retry (503).
    if not unreachable(exc):
        return await on_unexpected(request, exc)
    _postgres_down.say(f"PostgreSQL is unavailable ({exc})")
    return unavailable("the write model (PostgreSQL) is unreachable", "write-model-unreachable")


async def on_write_model_busy(request: Request, exc: Exception) -> Response:
    log.warning("write refused: %s", exc)
    return unavailable(
        "the write model is busy (every PostgreSQL connection is in use); retry shortly",
        "write-model-busy",
    )


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    cause = exc.__cause__
    if exc.status_code == 400 and isinstance(cause, RecursionError | ValueError):
        # FastAPI's JSON parsing failed with something other than a syntax error: deep
        # nesting, or an integer of thousands of digits.
        reason = (
            "it is nested too deeply"
            if isinstance(cause, RecursionError)
            else "a value is too large"
        )
        return problem(400, f"the body is not valid JSON: {reason}", slug="malformed-json")
    headers = dict(exc.headers) if exc.headers else None
    allow = methods.allowed(request.scope) if exc.status_code == 405 else None
    if allow is not None:
        # Every method the path serves, not only those of the route that matched first.
        headers = {"Allow": allow}
    return problem(exc.status_code, str(exc.detail), headers=headers)


async def on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(500, "an unexpected error occurred; it has been logged", slug="internal")


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(InvalidValue, on_invalid_value)
    app.add_exception_handler(ItemNotFound, on_not_found)
    app.add_exception_handler(InvalidCursor, on_invalid_cursor)
    app.add_exception_handler(ReadModelUnavailable, on_read_model_unavailable)
    app.add_exception_handler(VersionMismatch, on_version_mismatch)
    app.add_exception_handler(RequestInFlight, on_in_flight)
    app.add_exception_handler(KeyReused, on_key_reused)
    app.add_exception_handler(InvalidToken, on_bad_request)
    app.add_exception_handler(InvalidIdempotencyKey, on_bad_request)
    app.add_exception_handler(InvalidEntityTags, on_bad_request)
    app.add_exception_handler(ConsistencyTimeout, on_consistency_timeout)
    app.add_exception_handler(redis.exceptions.ConnectionError, on_redis_error)
    app.add_exception_handler(redis.exceptions.TimeoutError, on_redis_error)
    # A Redis Cluster with a node down answers CLUSTERDOWN, or has no node for a slot;
    # one migrating a slot, TRYAGAIN (app/infrastructure/redis/scripts.py).
    app.add_exception_handler(redis.exceptions.TryAgainError, on_slot_moving)
    app.add_exception_handler(redis.exceptions.ClusterError, on_redis_error)
    app.add_exception_handler(redis.exceptions.RedisClusterException, on_redis_error)
    app.add_exception_handler(WriteModelBusy, on_write_model_busy)
    app.add_exception_handler(asyncpg.PostgresError, on_database_error)
    app.add_exception_handler(asyncpg.InterfaceError, on_database_error)
    app.add_exception_handler(OSError, on_database_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
