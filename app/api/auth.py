"""Who may write: `Authorization: Bearer <key>` when API keys are configured.

A pure ASGI middleware rather than a route dependency, so a GET with open reads costs
one method check and nothing else. The keys themselves (digests, constant-time checks)
are app/keys.py's, shared with GraphQL and gRPC; neither a key nor the header is ever
logged.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.fast_reads import LIST_PATH
from app.api.problems import problem
from app.keys import ApiKeys, MissingKey, UnknownKey
from app.settings import Settings

log = logging.getLogger("items.api")

ADMIN_PREFIX = "/api/v1/admin"
READS = frozenset({"GET", "HEAD"})
CHALLENGE = 'Bearer realm="items"'


METRICS_PATH = "/metrics"


def needs_key(
    method: str, path: str, read_requires_key: bool, metrics_require_key: bool = False
) -> bool:
    """Whether a request (or an OpenAPI operation) needs a key, once keys exist."""
    method = method.upper()
    if path == METRICS_PATH:
        return metrics_require_key and method != "OPTIONS"
    if method == "OPTIONS" or not path.startswith("/api/"):
        # OPTIONS: CORS preflights carry no credentials. Health, docs and the OpenAPI
        # document stay open so orchestrators and readers need nothing.
        return False
    if path.startswith(ADMIN_PREFIX):
        return True
    return read_requires_key or method not in READS


def reads_need_key(settings: Settings) -> bool:
    """Whether the guard install() adds applies to GET /api/v1/items and its items (with
    none, app.py answers those reads in front of every middleware, edge.py)."""
    return bool(settings.api_keys) and needs_key("GET", LIST_PATH, settings.read_requires_key)


class RequireApiKey:
    """401 without a well-formed bearer header, 403 for a key that is not configured."""

    def __init__(
        self,
        app: ASGIApp,
        digests: Sequence[bytes],
        read_requires_key: bool = False,
        metrics_require_key: bool = False,
    ) -> None:
        if not digests:
            raise ValueError("RequireApiKey needs at least one key digest")
        self.app = app
        self.keys = ApiKeys(digests)
        self.read_requires_key = read_requires_key
        self.metrics_require_key = metrics_require_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not needs_key(
            scope["method"], scope["path"], self.read_requires_key, self.metrics_require_key
        ):
            await self.app(scope, receive, send)
            return
        values = [value for name, value in scope["headers"] if name == b"authorization"]
        try:
            self.keys.check(values)
        except MissingKey as exc:
            refusal = problem(
                401, str(exc), slug="unauthorized", headers={"WWW-Authenticate": CHALLENGE}
            )
            await refusal(scope, receive, send)
            return
        except UnknownKey as exc:
            client = scope.get("client")
            log.info(
                "refused %s %s from %s: unknown API key",
                scope["method"],
                scope["path"],
                client[0] if client else "?",
            )
            await problem(403, str(exc), slug="forbidden")(scope, receive, send)
            return
        await self.app(scope, receive, send)


def install(app: FastAPI, settings: Settings) -> None:
    """Guard the app when keys are configured (openapi.py documents the guard). With no
    keys nothing is added: the endpoints are open, and documented as such."""
    digests = settings.api_key_digests
    if digests:
        app.add_middleware(
            RequireApiKey,
            digests=digests,
            read_requires_key=settings.read_requires_key,
            metrics_require_key=settings.metrics_require_key,
        )


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
