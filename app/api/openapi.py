"""What the OpenAPI document says beyond the models: the header parameters and the
error answers of each operation, documented where FastAPI cannot infer them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Header
from pydantic import WithJsonSchema

from app.api.problems import PROBLEM
from app.api.schemas import ProblemOut

# Header documentation without "null" (a header is absent, never null) and with the
# shapes the service accepts; the values themselves are checked where they are used.
KEY_PATTERN = r"^[!-~]([ -~]{0,253}[!-~])?$"  # 1..255 printable ASCII, no edge spaces
TOKEN_PATTERN = r"^[A-Za-z0-9_-]{27}$"
_TOKEN_SCHEMA = {"type": "string", "pattern": TOKEN_PATTERN}
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
    WithJsonSchema({"type": "string"}),
    Header(alias="If-Match", description="Apply only at this version (ETag)."),
]

# Inline rather than a model: FastAPI would also list every problem as application/json.
_PROBLEM_SCHEMA = ProblemOut.model_json_schema()
_WHY = {
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


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The error answers of one operation, documented as problem+json."""
    return {
        code: {"description": _WHY[code]}
        if code == 304
        else {"description": _WHY[code], "content": {PROBLEM: {"schema": _PROBLEM_SCHEMA}}}
        for code in codes
    }


# The reads take their headers straight from the request (the router's dependency
# machinery costs more than the Redis round trip): documented here instead.
READ_HEADERS: list[dict[str, Any]] = [
    {
        "name": "If-None-Match",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": "304 when the ETag still matches.",
    },
    {
        "name": "Consistency-Token",
        "in": "header",
        "required": False,
        "schema": _TOKEN_SCHEMA,
        "description": "From a write's answer: wait until the read model includes that write.",
    },
]
