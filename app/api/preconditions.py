"""HTTP conditional requests and idempotency keys, translated for commands/queries."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import orjson

from app.commands.idempotency import IdempotentRequest

# RFC 9110 §8.8.3: `*`, or entity tags (maybe weak) separated by commas; etagc is
# printable ASCII but `"` (obs-text is refused: no ETag of this service has any).
_ETAG = r'(?:W/)?"[!#-~]*"'
ENTITY_TAGS = re.compile(rf"[ \t]*(?:\*|{_ETAG}(?:[ \t]*,[ \t]*{_ETAG})*)[ \t]*")
_TAG = re.compile(r'(W/)?"([!#-~]*)"')


class InvalidEntityTags(ValueError):
    """An If-Match or If-None-Match that is not `*` nor a list of entity tags."""


@dataclass(frozen=True)
class EntityTags:
    """A parsed If-Match / If-None-Match: `*`, or (weak, tag) pairs, tags unquoted."""

    any: bool
    tags: tuple[tuple[bool, str], ...] = ()


def entity_tags(header: str | None, name: str) -> EntityTags | None:
    """None for an absent header; raises InvalidEntityTags for a malformed one."""
    if header is None:
        return None
    if ENTITY_TAGS.fullmatch(header) is None:
        raise InvalidEntityTags(f'{name} must be * or a list of entity tags like "3"')
    if header.strip() == "*":
        return EntityTags(any=True)
    return EntityTags(False, tuple((bool(w), t) for w, t in _TAG.findall(header)))


def parse_if_match(header: str | None) -> frozenset[int] | None:
    """Versions named by If-Match (None: no precondition, or `*`, which any existing
    item satisfies). Weak tags never match (RFC 9110 strong comparison); a header that
    names no version of ours yields an empty set, which no item satisfies."""
    tags = entity_tags(header, "If-Match")
    if tags is None or tags.any:
        return None
    return frozenset(int(t) for weak, t in tags.tags if not weak and t.isdigit())


def none_match(tags: EntityTags | None, etag: str) -> bool:
    """True when If-None-Match names this ETag (weak comparison) or is `*`."""
    if tags is None:
        return False
    return tags.any or any(f'"{t}"' == etag for _, t in tags.tags)


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
