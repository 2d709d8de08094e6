"""ENVIRONMENT=production: refuse to start with settings that are only fit for a laptop.

Each default below is right for `make run` and wrong for a deployment, and each fails
quietly there (a WARNING in a log nobody reads at start-up): a random signing key breaks
cursors, tokens and idempotent replays at every restart and between replicas; no API
keys leaves writes open to anyone who reaches the port; an unset URL starts embedded
servers whose data lives in the container. So in production they stop the process
before it does anything, with one line naming every variable to fix at once.

Check the settings as read from the environment, before `with_servers` fills in the
embedded servers' URLs.
"""

from __future__ import annotations

import sys

from app.settings import Settings

REFUSED = 2  # the exit code of a command that cannot run as configured
PREFIX = "items: refusing to start with ENVIRONMENT=production: "


def unsafe_for_production(settings: Settings) -> list[str]:
    """One short message per unsafe setting, each starting with its variable's name;
    none outside production (where these defaults are what makes `make run` work)."""
    if settings.environment != "production":
        return []
    found: list[str] = []
    if settings.random_signing_key:
        found.append("SECRET_KEY unset (each process would sign with a random key)")
    if not settings.api_keys and not settings.allow_open_writes:
        found.append("API_KEYS empty (open writes need ALLOW_OPEN_WRITES=true)")
    if not settings.database_url:
        found.append("DATABASE_URL unset (an embedded PostgreSQL would start)")
    if not settings.redis_url:
        found.append("REDIS_URL unset (an embedded Redis would start)")
    return found


def refuse_if_unsafe(settings: Settings) -> None:
    """In production with anything unsafe: one line on stderr, then exit 2."""
    found = unsafe_for_production(settings)
    if found:
        # One line, not a log record: it must show even when logging is not set up yet,
        # and one line is what `docker compose logs` and systemd's status show best.
        sys.stderr.write(PREFIX + ", ".join(found) + "\n")
        sys.stderr.flush()
        raise SystemExit(REFUSED)
