"""A corrupt event becomes a dead letter; other items flow on; a retry after the fix
brings the view in line."""

from __future__ import annotations

import uuid

import asyncpg
import httpx

from tests.helpers import Running, create, eventually

ITEMS = "/api/v1/items"


async def test_corrupt_event_is_dead_lettered_then_retried(
    app: Running, client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    container = app.container
    victim = await create(client, name="victim")
    await eventually(lambda: client.get(f"{ITEMS}/{victim['id']}"), lambda r: r.status_code == 200)
    # An event whose payload is corrupt, committed with its row as a writer would.
    victim_id = uuid.UUID(victim["id"])
    async with db.transaction():
        await db.execute(
            "UPDATE items SET version = 2, name = 'fixed later' WHERE id = $1", victim_id
        )
        position = await db.fetchval(
            "INSERT INTO events (event_id, item_id, item_version, type, payload, occurred_at)"
            " VALUES (gen_random_uuid(), $1, 2, 'ItemUpdated', '{\"changes\": 42}', now())"
            " RETURNING position",
            victim_id,
        )

    other = await create(client, name="bystander")
    await eventually(lambda: client.get(f"{ITEMS}/{other['id']}"), lambda r: r.status_code == 200)
    letters = await eventually(container.dead_letters, lambda rows: len(rows) == 1)
    assert letters[0]["position"] == position
    assert "changes" in letters[0]["error"] or "TypeError" in letters[0]["error"]

    # A later event of the same item is held back behind the dead letter.
    held = await client.patch(f"{ITEMS}/{victim['id']}", json={"price": "5"})
    assert held.status_code == 200
    await eventually(container.dead_letters, lambda rows: len(rows) == 2)
    assert (await client.get(f"{ITEMS}/{victim['id']}")).json()["version"] == 1

    # The operator fixes the payload, then retries.
    await db.execute(
        'UPDATE events SET payload = \'{"changes": {"name": "fixed later"}}\' WHERE position = $1',
        position,
    )
    report = await container.retry_dead_letters()
    assert report.failing == {}
    assert len(report.resolved) == 2
    assert await container.dead_letters() == []
    view = (await client.get(f"{ITEMS}/{victim['id']}")).json()
    assert view["version"] == 3
    assert view["name"] == "fixed later"
    assert view["price"] == "5.00"
