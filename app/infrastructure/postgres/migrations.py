"""Alembic, run from the code: the schema is created only by the migrations in
migrations/ (next to the app/ folder), whose tables.py describes the result.

Alembic (and SQLAlchemy under it) is imported only when a migration runs: the two take
about 0.6 s to import, and every process that wires the service (the projector child
above all, whose start the API waits for) would pay them for nothing. For the same
reason a database already at HEAD is not handed to Alembic at all: `items serve` and
`items grpc` migrate at every start, and Alembic's import and its own check of the
revision were about 1.1 s of a 3.5 s start (measured), against 6 ms for one SELECT.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alembic.config import Config

ROOT = Path(__file__).resolve().parents[3]
# The newest revision in migrations/versions. A new migration moves it: a test holds it
# equal to Alembic's own head, so it cannot be left behind.
HEAD = "0007"


def alembic_config(database_url: str) -> Config:
    from alembic.config import Config

    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.attributes["database_url"] = database_url
    return cfg


def migrate(database_url: str, revision: str = "head") -> str | None:
    """Upgrade to `revision`; the revision the database is at afterwards."""
    if revision in ("head", HEAD) and current(database_url) == HEAD:
        return HEAD  # nothing to apply; Alembic would only say so, a second later
    from alembic import command

    command.upgrade(alembic_config(database_url), revision)
    return current(database_url)


def current(database_url: str) -> str | None:
    """The revision the database is at (None: not migrated at all)."""
    import asyncio

    import asyncpg

    from app.settings import asyncpg_dsn

    async def read() -> str | None:
        conn = await asyncpg.connect(asyncpg_dsn(database_url))
        try:
            if not await conn.fetchval("SELECT to_regclass('alembic_version') IS NOT NULL"):
                return None
            found: str | None = await conn.fetchval("SELECT version_num FROM alembic_version")
            return found
        finally:
            await conn.close()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(read())
    raise RuntimeError("migrations.current() runs outside an event loop")
