"""A projector waiting for a store says so in one line, not a traceback per retry.

Real `items projector` processes: one on a database nobody has migrated yet, one on a
Redis that refuses connections. Each logs what it awaits once (again at most every
few seconds), no traceback; the first carries on by itself once the tables exist.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.infrastructure.postgres.migrations import migrate
from app.settings import Settings
from tests.helpers import eventually
from tests.servers import ItemsProcess, Spawner, free_port, items_env, own_database

pytestmark = pytest.mark.slow

WAIT = 6.0  # seconds each projector is watched while it waits: more than one repeat


def _waiting_lines(process: ItemsProcess) -> list[str]:
    return [line for line in process.log().splitlines() if "projector waiting" in line]


def _quiet(process: ItemsProcess, reason: str) -> None:
    log = process.log()
    assert "Traceback" not in log, log[-4000:]
    lines = _waiting_lines(process)
    assert lines, log[-4000:]
    assert all(reason in line for line in lines), lines
    # One line, and at most one repeat per Quiet.EVERY (5 s) while it lasts; nor does
    # any other line come back at every retry.
    messages = Counter(line.split(" ", 2)[-1] for line in log.splitlines())
    assert max(messages.values()) <= 1 + WAIT // 5, messages


@pytest.fixture
def bare_database(server_urls: tuple[str, str]) -> Iterator[str]:
    with own_database(server_urls[0], migrated=False) as url:
        yield url


async def test_a_projector_on_an_unmigrated_database_waits_quietly_then_projects(
    bare_database: str, settings: Settings, tmp_path: Path
) -> None:
    env = items_env(settings.model_copy(update={"database_url": bare_database}))
    async with Spawner(tmp_path) as spawn:
        projector = await spawn.start("projector", ["projector"], env)
        await asyncio.sleep(WAIT)
        assert projector.running, projector.log()[-4000:]
        _quiet(projector, "no tables yet")
        await asyncio.to_thread(migrate, bare_database)
        await eventually(
            lambda: asyncio.sleep(0, projector.log()),
            lambda log: "projector waiting: over" in log,
        )
        assert await projector.stop() == 0
        assert "Traceback" not in projector.log()


async def test_a_projector_without_redis_waits_quietly(settings: Settings, tmp_path: Path) -> None:
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    env = items_env(settings.model_copy(update={"redis_url": nowhere}))
    async with Spawner(tmp_path) as spawn:
        projector = await spawn.start("projector", ["projector"], env)
        await asyncio.sleep(WAIT)
        assert projector.running, projector.log()[-4000:]
        _quiet(projector, "Redis is unreachable")
        assert await projector.stop() == 0
