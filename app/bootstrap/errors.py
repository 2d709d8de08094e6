"""What every failure means to a client: ONE table for every entry point.

Each error the commands, the queries, the domain, the API keys or the stores raise is
one row: its problem type (REST's `urn:items:problem:<slug>`), its HTTP status, its
GraphQL `extensions.code` and its gRPC status code. app/api/problems.py, app/graphql
and app/grpc all look errors up here and only spell the answer in their protocol, so a
new error, or a rule that raises an existing one (CommandBus.add_rule), reads the same
over the three. Anything not in the table is a bug: 500, INTERNAL, INTERNAL, logged.

In the composition root because two rows need the adapters' verdict: which Redis errors
mean "unreachable" or "slot moving", and which PostgreSQL errors mean "unreachable"
(pool.unreachable) rather than "a statement refused" (a bug).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import redis.exceptions

from app import metrics
from app.commands.idempotency import KeyReused, RequestInFlight
from app.commands.unit_of_work import WriteModelBusy
from app.domain.errors import InvalidValue, ItemNotFound, VersionMismatch
from app.infrastructure.postgres import pool
from app.keys import MissingKey, UnknownKey
from app.queries.errors import ConsistencyTimeout, InvalidCursor, InvalidToken, ReadModelUnavailable
from app.quiet import Quiet

log = logging.getLogger("items.api")

Detail = Callable[[BaseException], str]


def _own(exc: BaseException) -> str:
    return str(exc)


def _fixed(text: str) -> Detail:
    return lambda _: text


@dataclass(frozen=True)
class Outcome:
    slug: str  # REST's problem type, urn:items:problem:<slug>
    http: int
    graphql: str  # extensions.code
    grpc: str  # the name of a grpc.StatusCode
    detail: Detail = _own
    retry: bool = False  # worth a retry shortly: Retry-After over REST
    store: str | None = None  # the store that failed: counted and logged (quietly)

    def message(self, exc: BaseException) -> str:
        return self.detail(exc)


VALIDATION = Outcome("validation-error", 422, "VALIDATION", "INVALID_ARGUMENT")
NOT_FOUND = Outcome("item-not-found", 404, "NOT_FOUND", "NOT_FOUND")
VERSION_CONFLICT = Outcome("precondition-failed", 412, "VERSION_CONFLICT", "ABORTED")
INTERNAL = Outcome(
    "internal",
    500,
    "INTERNAL",
    "INTERNAL",
    _fixed("an unexpected error occurred; it has been logged"),
)
WRITE_MODEL_UNREACHABLE = Outcome(
    "write-model-unreachable",
    503,
    "UNAVAILABLE",
    "UNAVAILABLE",
    _fixed("the write model (PostgreSQL) is unreachable"),
    retry=True,
    store="postgres",
)
READ_MODEL_UNREACHABLE = Outcome(
    "read-model-unreachable",
    503,
    "UNAVAILABLE",
    "UNAVAILABLE",
    _fixed("the read model (Redis) is unreachable"),
    retry=True,
    store="redis",
)

# First match wins: a subclass before its base.
TABLE: tuple[tuple[type[Exception], Outcome], ...] = (
    (InvalidValue, VALIDATION),
    (ItemNotFound, NOT_FOUND),
    (VersionMismatch, VERSION_CONFLICT),
    (MissingKey, Outcome("unauthorized", 401, "UNAUTHENTICATED", "UNAUTHENTICATED")),
    (UnknownKey, Outcome("forbidden", 403, "FORBIDDEN", "PERMISSION_DENIED")),
    (
        InvalidCursor,
        Outcome(
            "invalid-cursor",
            400,
            "VALIDATION",
            "INVALID_ARGUMENT",
            lambda e: f"invalid cursor: {e}",
        ),
    ),
    (InvalidToken, Outcome("bad-request-header", 400, "VALIDATION", "INVALID_ARGUMENT")),
    (
        KeyReused,
        Outcome(
            "idempotency-key-reused",
            422,
            "VALIDATION",
            "INVALID_ARGUMENT",
            _fixed("this Idempotency-Key was used for a different request"),
        ),
    ),
    (
        RequestInFlight,
        Outcome(
            "idempotency-key-in-flight",
            409,
            "CONFLICT",
            "ABORTED",
            _fixed(
                "a request with this Idempotency-Key is still in flight; retry after it completes"
            ),
            retry=True,
        ),
    ),
    (
        ReadModelUnavailable,
        Outcome(
            "read-model-unavailable",
            503,
            "UNAVAILABLE",
            "UNAVAILABLE",
            _fixed("the read model is being restored; try again shortly"),
            retry=True,
        ),
    ),
    (
        ConsistencyTimeout,
        Outcome(
            "consistency-timeout",
            503,
            "UNAVAILABLE",
            "UNAVAILABLE",
            _fixed("the read model has not reached the requested position yet; retry shortly"),
            retry=True,
        ),
    ),
    (
        WriteModelBusy,
        Outcome(
            "write-model-busy",
            503,
            "UNAVAILABLE",
            "UNAVAILABLE",
            _fixed(
                "the write model is busy (every PostgreSQL connection is in use); retry shortly"
            ),
            retry=True,
        ),
    ),
    # A Redis Cluster migrating a slot answers TRYAGAIN (app/infrastructure/redis/scripts.py);
    # one with a node down CLUSTERDOWN, or has no node for a slot.
    (
        redis.exceptions.TryAgainError,
        Outcome(
            "read-model-moving",
            503,
            "UNAVAILABLE",
            "UNAVAILABLE",
            _fixed(
                "a partition of the read model is moving between Redis Cluster nodes; "
                "try again shortly"
            ),
            retry=True,
            store="redis",
        ),
    ),
    (redis.exceptions.ConnectionError, READ_MODEL_UNREACHABLE),
    (redis.exceptions.TimeoutError, READ_MODEL_UNREACHABLE),
    (redis.exceptions.ClusterError, READ_MODEL_UNREACHABLE),
    (redis.exceptions.RedisClusterException, READ_MODEL_UNREACHABLE),
)

# Every class an entry point hands to `outcome` (their subclasses too): the table's, and
# what the write side's driver raises, which is unreachable (503) or a bug (500).
CLASSES: tuple[type[Exception], ...] = (*(cls for cls, _ in TABLE), *pool.ERRORS)


def outcome(exc: BaseException) -> Outcome:
    """The table's row for `exc`; INTERNAL for anything it does not name (a bug)."""
    for cls, found in TABLE:
        if isinstance(exc, cls):
            return found
    if isinstance(exc, pool.ERRORS) and pool.unreachable(exc):
        return WRITE_MODEL_UNREACHABLE
    return INTERNAL


def field_errors(exc: BaseException) -> list[tuple[str, str]]:
    """(field, message) for each invalid field an error names."""
    if isinstance(exc, InvalidValue):
        return [(exc.field, exc.message)]
    return []


_quiet = {
    "redis": Quiet(log, "reads refused"),
    "postgres": Quiet(log, "writes refused"),
}


def report(found: Outcome, exc: BaseException) -> None:
    """What every entry point does with an outcome besides answering: a store failure is
    counted (items_store_errors_total) and said once, quietly; a busy write model is a
    warning; a bug is logged with its traceback."""
    if found.store is not None:
        metrics.instance().store_errors.labels(found.store).inc()
        name = "Redis" if found.store == "redis" else "PostgreSQL"
        _quiet[found.store].say(f"{name} is unavailable ({exc})")
    elif found.slug == "write-model-busy":
        log.warning("write refused: %s", exc)
    elif found is INTERNAL:
        log.error("unhandled error", exc_info=exc)
