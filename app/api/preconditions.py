"""HTTP conditional requests and idempotency keys, translated for commands/queries."""

from __future__ import annotations

import hashlib

import orjson

from app.commands.idempotency import IdempotentRequest


def parse_if_match(header: str | None) -> frozenset[int] | None:
    """Versions named by If-Match (None: no precondition, or `*`, which any existing
    item satisfies). Weak tags never match (RFC 9110 strong comparison); a header that
    names no valid version yields an empty set, which no item satisfies."""
    if header is None or header.strip() == "*":
        return None
    versions = set()
    for tag in header.split(","):
        tag = tag.strip()
        if len(tag) > 2 and tag[0] == tag[-1] == '"' and tag[1:-1].isdigit():
            versions.add(int(tag[1:-1]))
    return frozenset(versions)


def none_match(header: str | None, etag: str) -> bool:
    """True when If-None-Match names this ETag (weak comparison) or is `*`."""
    if header is None:
        return False
    if header.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in header.split(","))


def prefers(headers: list[str], preference: str) -> bool:
    """Whether `Prefer` headers (RFC 7240) ask for `preference`: comma-separated
    preferences, each a case-insensitive token, maybe `=value` and `;` parameters."""
    for header in headers:
        for part in header.split(","):
            name = part.split(";", 1)[0].split("=", 1)[0].strip().lower()
            if name == preference:
                return True
    return False


class InvalidIdempotencyKey(ValueError):
    pass


def idempotent_request(
    key: str, method: str, path: str, body: bytes, if_match: str | None
) -> IdempotentRequest:
    if not 1 <= len(key) <= 255 or not all(" " <= c <= "~" for c in key):
        raise InvalidIdempotencyKey("Idempotency-Key must be 1..255 printable ASCII characters")
    try:
        # Same JSON, same request: key order and white space do not make a new one.
        canonical = orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS) if body else b""
    except orjson.JSONDecodeError:
        canonical = body
    digest = hashlib.sha256()
    for part in (method.encode(), path.rstrip("/").encode(), (if_match or "").encode(), canonical):
        digest.update(len(part).to_bytes(8, "big") + part)
    return IdempotentRequest(key=key, fingerprint=digest.hexdigest())
