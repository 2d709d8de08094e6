"""Who may write: `Authorization: Bearer <key>` when API keys are configured.

A pure ASGI middleware rather than a route dependency, so a GET with open reads costs
one method check and nothing else. Keys are held as SHA-256 digests and compared in
constant time against every configured digest; neither a key nor the header is ever
logged.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Sequence

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.problems import problem
from app.settings import Settings

log = logging.getLogger("items.api")

SCHEME = "bearer"
ADMIN_PREFIX = "/api/v1/admin"
READS = frozenset({"GET", "HEAD"})
CHALLENGE = 'Bearer realm="items"'


def needs_key(method: str, path: str, read_requires_key: bool) -> bool:
    """Whether a request (or an OpenAPI operation) needs a key, once keys exist."""
    method = method.upper()
    if method == "OPTIONS" or not path.startswith("/api/"):
        # OPTIONS: CORS preflights carry no credentials. Health, docs and the OpenAPI
        # document stay open so orchestrators and readers need nothing.
        return False
    if path.startswith(ADMIN_PREFIX):
        return True
    return read_requires_key or method not in READS


def _bearer(headers: Sequence[tuple[bytes, bytes]]) -> bytes | None:
    """The token of the one `Authorization: Bearer <token>` header; None if absent or
    malformed (another scheme, no token, several headers)."""
    values = [value for name, value in headers if name == b"authorization"]
    if len(values) != 1:
        return None
    scheme, _, token = values[0].strip().partition(b" ")
    token = token.strip()
    if scheme.lower() != SCHEME.encode() or not token or b" " in token:
        return None
    return token


class RequireApiKey:
    """401 without a well-formed bearer header, 403 for a key that is not configured."""

    def __init__(
        self, app: ASGIApp, digests: Sequence[bytes], read_requires_key: bool = False
    ) -> None:
        if not digests:
            raise ValueError("RequireApiKey needs at least one key digest")
        self.app = app
        self.digests = tuple(digests)
        self.read_requires_key = read_requires_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not needs_key(
            scope["method"], scope["path"], self.read_requires_key
        ):
            await self.app(scope, receive, send)
            return
        token = _bearer(scope["headers"])
        if token is None:
            refusal = problem(
                401,
                "this request needs an API key: send `Authorization: Bearer <key>`",
                slug="unauthorized",
                headers={"WWW-Authenticate": CHALLENGE},
            )
            await refusal(scope, receive, send)
            return
        if not self._known(token):
            client = scope.get("client")
            log.info(
                "refused %s %s from %s: unknown API key",
                scope["method"],
                scope["path"],
                client[0] if client else "?",
            )
            refusal = problem(403, "the API key is not valid", slug="forbidden")
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _known(self, token: bytes) -> bool:
        digest = hashlib.sha256(token).digest()
        found = False
        # Every digest is compared, so the time taken says nothing about which matched.
        for known in self.digests:
            found |= hmac.compare_digest(known, digest)
        return found


def install(app: FastAPI, settings: Settings) -> None:
    """Guard the app when keys are configured (openapi.py documents the guard). With no
    keys nothing is added: the endpoints are open, and documented as such."""
    digests = settings.api_key_digests
    if digests:
        reads = settings.read_requires_key
        app.add_middleware(RequireApiKey, digests=digests, read_requires_key=reads)


def announce(settings: Settings) -> None:
    """At start-up: loud when nothing is guarded, the number of keys (never a key) else."""
    count = len(settings.api_keys)
    if not count:
        log.warning(
            "API_KEYS is not set: writes and /api/v1/admin are OPEN to anyone who can "
            "reach this port. Set API_KEYS=<key>[,<key>...] to require "
            "`Authorization: Bearer <key>`."
        )
        return
    log.info(
        "API keys: %d configured; writes and /api/v1/admin need a bearer key; reads %s",
        count,
        "need one too" if settings.read_requires_key else "are open",
    )
