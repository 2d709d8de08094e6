"""The migrations are the only source of the schema: they apply, reverse, and match
the tables the repositories describe."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import asyncpg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from app.infrastructure.postgres.migrations import HEAD as HEAD_REVISION
from app.infrastructure.postgres.migrations import alembic_config, migrate
from app.infrastructure.postgres.tables import metadata
from app.settings import asyncpg_dsn, sqlalchemy_url


@pytest.fixture
def scratch_database(server_urls: tuple[str, str]) -> Iterator[str]:
    admin = asyncpg_dsn(server_urls[0])
    name = f"items_mig_{uuid.uuid4().hex[:8]}"

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(admin)
        await conn.execute(sql)
        await conn.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    base, _, query = admin.partition("?")
    yield base.rsplit("/", 1)[0] + "/" + name + ("?" + query if query else "")
    asyncio.run(run(f'DROP DATABASE "{name}" WITH (FORCE)'))


def _diff(url: str) -> list[object]:
    def compare(conn: Connection) -> list[object]:
        return list(compare_metadata(MigrationContext.configure(conn), metadata))

    async def run() -> list[object]:
        engine = create_async_engine(sqlalchemy_url(url))
        async with engine.connect() as conn:
            result = await conn.run_sync(compare)
        await engine.dispose()
        return result

    return asyncio.run(run())


# xid8 has no SQLAlchemy type, so reflection cannot compare that one column's type.
@pytest.mark.filterwarnings("ignore:Did not recognize type 'xid8'")
def test_upgrade_downgrade_upgrade_and_schema_matches_tables(scratch_database: str) -> None:
    migrate(scratch_database)
    assert _diff(scratch_database) == []
    command.downgrade(alembic_config(scratch_database), "base")
    migrate(scratch_database)
    assert _diff(scratch_database) == []


def test_head_names_the_newest_migration() -> None:
    """migrate() skips Alembic for a database at HEAD, so HEAD must be Alembic's head."""
    from alembic.script import ScriptDirectory

    assert ScriptDirectory.from_config(alembic_config("")).get_current_head() == HEAD_REVISION


def test_a_database_at_head_is_not_migrated_again(scratch_database: str) -> None:
    assert migrate(scratch_database) == HEAD_REVISION
    dropped = "DROP TABLE relay_checkpoints"  # what 0007 made: only an upgrade recreates it

    async def run(sql: str) -> object:
        conn = await asyncpg.connect(asyncpg_dsn(scratch_database))
        try:
            return await conn.fetchval(sql)
        finally:
            await conn.close()

    asyncio.run(run(dropped))
    assert migrate(scratch_database) == HEAD_REVISION  # at HEAD by its record: left alone
    assert asyncio.run(run("SELECT to_regclass('relay_checkpoints') IS NULL")) is True
    asyncio.run(run("UPDATE alembic_version SET version_num = '0006'"))
    assert migrate(scratch_database) == HEAD_REVISION  # behind: Alembic applies 0007 again
    assert asyncio.run(run("SELECT to_regclass('relay_checkpoints') IS NOT NULL")) is True
