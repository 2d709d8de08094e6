"""The OpenAPI document: what FastAPI infers from the routes, completed with what it
cannot infer, so that a generated client gets every answer right.

- One `Problem` schema (and its `FieldError`) as named components, referenced by every
  error answer, instead of a copy inlined per operation (a client generator then makes
  one model, not one per operation).
- Every status an operation can answer, with its headers (`responses`); the header
  parameters with their formats; OPTIONS on every path (app/api/methods.py).
- Links from the item a POST creates to the operations on it, for stateful testing.
- With API keys, the bearer scheme and the 401/403 of every operation that needs one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import FastAPI, Header
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import WithJsonSchema

from app.api.auth import needs_key
from app.api.preconditions import ENTITY_TAGS
from app.api.problems import PROBLEM
from app.api.schemas import Problem
from app.keys import SCHEME
from app.settings import Settings

# Header parameters: documented without "null" (a header is absent, never null) and
# with the shapes the service accepts; the values themselves are checked where used.
KEY_PATTERN = r"^[!-~]([ -~]{0,253}[!-~])?$"  # 1..255 printable ASCII, no edge spaces
TOKEN_PATTERN = r"^[A-Za-z0-9_-]{27}$"
ETAGS_PATTERN = f"^{ENTITY_TAGS.pattern}$"  # `*`, or entity tags, comma-separated
IdempotencyKey = Annotated[
    str | None,
    WithJsonSchema({"type": "string", "pattern": KEY_PATTERN}),
    Header(
        alias="Idempotency-Key",
        description="Makes a retry safe: the same key and request get the first answer again.",
    ),
]
IfMatch = Annotated[
    str | None,
    WithJsonSchema({"type": "string", "pattern": ETAGS_PATTERN}),
    Header(alias="If-Match", description="Apply only at this version (its ETag)."),
]


def _header(name: str, description: str, pattern: str | None = None) -> dict[str, Any]:
    schema = {"type": "string"} if pattern is None else {"type": "string", "pattern": pattern}
    return {
        "name": name,
        "in": "header",
        "required": False,
        "schema": schema,
        "description": description,
    }


# The reads take their headers straight from the request (the router's dependency
# machinery costs more than the Redis round trip), the writes their Prefer header:
# documented here instead.
READ_HEADERS = [
    _header("If-None-Match", "304 while an ETag named here is the current one.", ETAGS_PATTERN),
    _header(
        "Consistency-Token",
        "From a write's answer: wait until the read model includes that write.",
        TOKEN_PATTERN,
    ),
]
WRITE_HEADERS = [
    _header(
        "Prefer",
        "`respond-async`: answer at commit, without waiting for the read model (RFC 7240); "
        "other preferences are ignored.",
    )
]


def _answer_header(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "schema": schema}


_STRING = {"type": "string"}
HEADERS: dict[str, dict[str, Any]] = {
    "ETag": _answer_header("The item's version (a page's digest).", _STRING),
    "Location": _answer_header("The new item.", _STRING),
    "Consistency-Token": _answer_header(
        "Send it with a read to wait until the read model includes this write.",
        {"type": "string", "pattern": TOKEN_PATTERN},
    ),
    "Consistency-Pending": _answer_header(
        "`true`: committed, but the read model did not show it within "
        "WRITE_VISIBLE_WAIT_MS; a read with the Consistency-Token waits for it.",
        {"type": "string", "enum": ["true"]},
    ),
    "Preference-Applied": _answer_header(
        "`respond-async`: answered at commit, as the Prefer header asked.",
        {"type": "string", "enum": ["respond-async"]},
    ),
    "Idempotent-Replayed": _answer_header(
        "`true`: the stored answer of an earlier request with this Idempotency-Key.",
        {"type": "string", "enum": ["true"]},
    ),
    "X-Projection-Position": _answer_header(
        "The projection position this answer reflects.",
        {"type": "string", "pattern": "^[0-9]+$"},
    ),
    "Retry-After": _answer_header("Seconds to wait before trying again.", _STRING),
}
WRITE_ANSWER = ("ETag", "Consistency-Token", "Consistency-Pending", "Preference-Applied",
                "Idempotent-Replayed")  # fmt: skip
READ_ANSWER = ("ETag", "X-Projection-Position")

_WHY = {
    200: "The item, or the page.",
    201: "The new item.",
    204: "Done; no body.",
    304: "Not modified: If-None-Match names the current ETag. No body.",
    400: "Malformed JSON, or a cursor, Consistency-Token or Idempotency-Key that is not valid.",
    404: "No item with this id (never created, or deleted).",
    409: "A request with this Idempotency-Key is still in flight.",
    412: "If-Match does not name the current version; nothing changed.",
    413: "The body is larger than 64 KiB.",
    415: "The body is not JSON: send `Content-Type: application/json`.",
    422: "Invalid fields or parameters, each listed in `errors`; or an Idempotency-Key "
    "used before for a different request.",
    503: "PostgreSQL or Redis is unreachable, the read model is being restored, or a "
    "Consistency-Token wait timed out. Retry after `Retry-After` seconds.",
}
_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
_ERROR_HEADERS = {409: ("Retry-After",), 412: ("ETag",), 503: ("Retry-After",)}


def responses(*codes: int, success: tuple[int, tuple[str, ...]] | None = None
              ) -> dict[int | str, dict[str, Any]]:  # fmt: skip
    """One operation's answers besides its model: `success` (its status and headers)
    and the errors `codes`, each documented as problem+json with its headers."""
    documented: dict[int | str, dict[str, Any]] = {}
    if success is not None:
        status, headers = success
        documented[status] = {"headers": {h: HEADERS[h] for h in headers}}
    for code in codes:
        answer: dict[str, Any] = {"description": _WHY[code]}
        if code == 304:
            answer["headers"] = {h: HEADERS[h] for h in READ_ANSWER}
        else:
            answer["content"] = {PROBLEM: {"schema": _PROBLEM_REF}}
            if code in _ERROR_HEADERS:
                answer["headers"] = {h: HEADERS[h] for h in _ERROR_HEADERS[code]}
        documented[code] = answer
    return documented


# The operations a created item leads to (OpenAPI links), for stateful clients and tests.
_ON_THE_ITEM = ("get_item", "update_item", "delete_item")
LINKS = {
    ("create_item", "201"): {
        op: {"operationId": op, "parameters": {"item_id": "$response.body#/id"}}
        for op in _ON_THE_ITEM
    },
    ("update_item", "200"): {
        op: {"operationId": op, "parameters": {"item_id": "$response.body#/id"}}
        for op in _ON_THE_ITEM
    },
}


def operation_id(route: APIRoute) -> str:
    """Operation ids that read well in a generated client: the route's own name."""
    return route.name


def install(app: FastAPI, settings: Settings) -> None:
    """Build the document once, on first request (FastAPI's documented way to extend it:
    replacing app.openapi)."""
    app.openapi = _builder(app, settings)  # type: ignore[method-assign]


def _builder(app: FastAPI, settings: Settings) -> Callable[[], dict[str, Any]]:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            _add_problem(schema)
            _add_links(schema)
            if settings.api_key_digests:
                _add_security(schema, settings.read_requires_key)
            app.openapi_schema = schema
        return app.openapi_schema

    return openapi


def _add_problem(schema: dict[str, Any]) -> None:
    problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(problem.pop("$defs", {}))
    components["Problem"] = problem


def _add_links(schema: dict[str, Any]) -> None:
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            for status, answer in operation.get("responses", {}).items():
                links = LINKS.get((operation.get("operationId"), status))
                if links:
                    answer["links"] = links


def _add_security(schema: dict[str, Any], read_requires_key: bool) -> None:
    schema.setdefault("components", {}).setdefault("securitySchemes", {})[SCHEME] = {
        "type": "http",
        "scheme": "bearer",
        "description": "One of the keys in API_KEYS.",
    }
    refusals = {
        "401": "No `Authorization: Bearer <key>` header, or a malformed one.",
        "403": "The key is not one of the configured keys.",
    }
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            if not needs_key(method, path, read_requires_key):
                continue
            operation["security"] = [{SCHEME: []}]
            answers = operation.setdefault("responses", {})
            for code, description in refusals.items():
                answers.setdefault(
                    code,
                    {"description": description, "content": {PROBLEM: {"schema": _PROBLEM_REF}}},
                )
            if "WWW-Authenticate" not in answers["401"].get("headers", {}):
                answers["401"]["headers"] = {
                    "WWW-Authenticate": _answer_header('`Bearer realm="items"`', _STRING)
                }
