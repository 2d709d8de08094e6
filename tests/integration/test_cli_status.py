"""`items status --check` as a probe runs it: the real console script against real
PostgreSQL and Redis; exit 0 when all is well, 1 naming each problem, 2 unreachable."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import uuid

import asyncpg
import httpx
import pytest

from app.bootstrap import Container
from app.settings import Settings
from tests.helpers import Running, create, eventually
from tests.servers import ITEMS


async def items(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    assert settings.database_url
    assert settings.redis_url
    environment = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "REDIS_PREFIX": settings.redis_prefix,
        "SECRET_KEY": settings.signing_key,
        **env,
    }
    return await asyncio.to_thread(
        subprocess.run, [ITEMS, *args], env=environment, capture_output=True, text=True
    )


def complaints(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in done.stderr.splitlines() if line.startswith("items status: ")]


@pytest.mark.slow
async def test_check_is_0_when_all_is_well_and_1_for_dead_letters(
    app: Running, client: httpx.AsyncClient, settings: Settings, db: asyncpg.Connection
) -> None:
    item = await create(client, name="watched")
    await eventually(
        lambda: client.get(f"/api/v1/items/{item['id']}"), lambda r: r.status_code == 200
    )
    container: Container = app.container
    await eventually(container.status, lambda s: s["lag_events"] == 0)

    well = await items(settings, "status", "--check")
    assert well.returncode == 0, well.stdout + well.stderr
    assert complaints(well) == []
    [header] = [line.split() for line in well.stdout.splitlines() if line.startswith("partition")]
    assert header[:6] == ["partition", "owner", "epoch", "generation", "checkpoint", "lag"]
    as_json = await items(settings, "status", "--check", "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout).keys() == (await container.status()).keys()

    await db.execute(
        "INSERT INTO dead_letters (position, item_id, event_type, error)"
        " VALUES (1, $1, 'ItemCreated', 'boom')",
        uuid.UUID(item["id"]),
    )
    found = await items(settings, "status", "--check", "--json")
    assert found.returncode == 1, found.stdout + found.stderr
    assert json.loads(found.stdout)["dead_letters"] == 1  # stdout stays JSON
    assert complaints(found) == [
        "items status: 1 dead letter(s) wait (see `items dead-letters list`)"
    ]
    # Without --check, status only shows: it found, but it was not asked to judge.
    assert (await items(settings, "status")).returncode == 0


async def test_check_names_lag_over_the_bound_and_partitions_without_owner(
    container: Container, settings: Settings, db: asyncpg.Connection
) -> None:
    # An event a minute old that no projector (there is none) has applied.
    await db.execute(
        "INSERT INTO events (event_id, item_id, item_version, type, payload, occurred_at,"
        " recorded_at) VALUES (gen_random_uuid(), gen_random_uuid(), 1, 'ItemCreated',"
        " '{}', now() - interval '1 minute', now() - interval '1 minute')"
    )
    found = await items(settings, "status", "--check")
    assert found.returncode == 1, found.stdout + found.stderr
    [lag, owner] = complaints(found)
    assert lag.startswith("items status: lag 6")  # 60.xs
    assert lag.endswith("exceeds 30s (1 event(s) behind)")
    assert owner == "items status: partition 0 has no owner (no projector holds it)"

    # The bound: --max-lag, else READY_MAX_LAG_SECONDS when set, else 30 s.
    allowed = await items(settings, "status", "--check", "--max-lag", "3600")
    assert complaints(allowed) == [owner]
    assert allowed.returncode == 1
    ready = await items(settings, "status", "--check", READY_MAX_LAG_SECONDS="3600")
    assert complaints(ready) == [owner]
    strict = await items(settings, "status", "--check", READY_MAX_LAG_SECONDS="5")
    assert "exceeds 5s" in complaints(strict)[0]


async def test_check_is_2_when_a_store_is_unreachable(settings: Settings) -> None:
    closed = settings.model_copy(update={"redis_url": "redis://:hunter2@127.0.0.1:1/0"})
    done = await items(closed, "status", "--check")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "items: Redis is unreachable: " in done.stderr
    assert "hunter2" not in done.stderr
    assert "Traceback" not in done.stderr
