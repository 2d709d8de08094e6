"""Every error answer is RFC 9457 problem+json; this module is the one place where
exceptions become HTTP answers. Which status and problem type an error gets is the
shared table's (app/bootstrap/errors.py, the same for GraphQL and gRPC); this module
spells it in HTTP."""

from __future__ import annotations

import inspect
import logging
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from app import logs
from app.api import methods
from app.api.preconditions import InvalidEntityTags, InvalidIdempotencyKey
from app.bootstrap import errors as table
from app.domain.errors import VersionMismatch

log = logging.getLogger("items.api")

PROBLEM = "application/problem+json"
RETRY_AFTER = "1"
# A 64 KiB body can hold tens of thousands of invalid values; the answer names the
# first few rather than growing to megabytes.
MAX_LISTED_ERRORS = 20


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
    rid = logs.request_id.get()
    if rid is not None:  # the same id as the X-Request-ID header and the log lines
        body["request_id"] = rid
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


async def on_known(request: Request, exc: Exception) -> Response:
    """Every error of the shared table (app/bootstrap/errors.py), as problem+json."""
    found = table.outcome(exc)
    if found is table.INTERNAL:
        return await on_unexpected(request, exc)
    table.report(found, exc)
    headers = {"Retry-After": RETRY_AFTER} if found.retry else {}
    extra: dict[str, Any] = {}
    detail = found.message(exc)
    if isinstance(exc, VersionMismatch):
        # REST's own wording and header: the precondition was If-Match, and the answer
        # names the current ETag.
        detail = (
            f"If-Match does not name the current version ({exc.current_version}); nothing changed"
        )
        headers["ETag"] = f'"{exc.current_version}"'
    fields = table.field_errors(exc)
    if fields:
        extra["errors"] = [{"loc": ["body", f], "field": f, "msg": m} for f, m in fields]
        detail = "; ".join(f"{f}: {m}" for f, m in fields)
    return problem(found.http, detail, slug=found.slug, headers=headers or None, **extra)


async def on_bad_request(request: Request, exc: Exception) -> Response:
    return problem(400, str(exc), slug="bad-request-header")


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


async def answer(scope: Scope, receive: Receive, send: Send, exc: Exception) -> None:
    """For the paths below the router (fast_reads.py, fast_writes.py): the answer the
    app's own exception handler gives for `exc` (looked up by MRO, as Starlette does);
    with no handler, the exception propagates as it would."""
    handlers = scope["app"].exception_handlers
    handler = next((handlers[c] for c in type(exc).__mro__ if c in handlers), None)
    if handler is None:
        raise exc
    request = Request(scope, receive)
    if inspect.iscoroutinefunction(handler):
        response = await handler(request, exc)
    else:
        response = await run_in_threadpool(handler, request, exc)
    await response(scope, receive, send)


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, on_validation_error)
    # REST's own: malformed conditional and idempotency headers.
    app.add_exception_handler(InvalidIdempotencyKey, on_bad_request)
    app.add_exception_handler(InvalidEntityTags, on_bad_request)
    for cls in table.CLASSES:
        app.add_exception_handler(cls, on_known)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
