"""The bounded soak of issue 5, a few seconds of it: concurrent writers and readers
against a real `items serve`, then PostgreSQL must hold exactly the acknowledged writes
and `items verify` must exit 0. `make soak` runs the same for longer."""

from __future__ import annotations

import sys
from pathlib import Path

import asyncpg
import pytest
from redis.asyncio import Redis

from app.settings import Settings
from tests.faults.soak import soak
from tests.servers import Spawner, free_port, items_env

SECONDS = 8.0
WRITERS, READERS = 10, 4  # writes contend: that is where lost events would show


@pytest.mark.slow
async def test_soak_books_balance_with_postgresql_and_verify(
    settings: Settings,
    db: asyncpg.Connection,
    redis: Redis,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = items_env(settings, PROJECTOR_IN_PROCESS="true", LOG_LEVEL="warning")
    port = free_port()
    async with Spawner(tmp_path) as spawn:
        serve = await spawn.serve("serve", env, port)
        report = await soak(f"http://127.0.0.1:{port}", env, SECONDS, WRITERS, READERS, whole=True)
        assert await serve.stop() == 0, serve.log()
    with capsys.disabled():
        sys.stdout.write("\n" + "\n".join(report.lines()) + "\n")
    assert report.ok, report.failures
    figures = report.figures
    assert figures.acknowledged("create") > 0
    assert figures.acknowledged("update") > 0
    assert figures.acknowledged("delete") > 0
    assert figures.acknowledged("get") > 0
    assert figures.acknowledged("list") > 0
    assert not any(status >= 500 for _, status in figures.statuses)
