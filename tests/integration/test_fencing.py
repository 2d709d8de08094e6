"""The owner fence on real Redis: a write under an epoch older than the partition's fence
is refused inside the same Lua step that checks the checkpoint, even when the checkpoint
it expects is right, and writes nothing. Epochs come from PostgreSQL (a sequence), so a
fence lost with Redis's data comes back at a later epoch than any earlier owner's."""

from __future__ import annotations

import uuid
from dataclasses import replace

import asyncpg
import pytest
from redis.asyncio import Redis

from app.infrastructure.postgres.leases import PgLeases
from app.infrastructure.redis.keys import KeyLayout
from app.infrastructure.redis.projection_store import RedisProjectionStore
from app.projection.fold import ViewOp
from app.projection.ports import Fenced
from app.queries import views
from app.settings import Settings, asyncpg_dsn


def _op(version: int) -> ViewOp:
    item_id = str(uuid.uuid4())
    view = views.make_view(
        item_id=item_id, name="n", description=None, price="1.00", tags=[], version=version,
        created_at="2026-12-01T00:00:00.000000Z", updated_at="2026-12-01T00:00:00.000000Z",
    )  # fmt: skip
    return ViewOp(item_id, 0, version, views.render(view))


async def test_a_stale_epoch_is_refused_where_the_checkpoint_would_pass(
    redis: Redis, prefix: str
) -> None:
    store = RedisProjectionStore(redis, KeyLayout(prefix, 1))
    assert await store.claim(0, 5)
    target, checkpoint = await store.resolve(0)
    old = replace(target, epoch=5)
    await store.apply(old, checkpoint, checkpoint + 1, [_op(1)])

    # A later owner claims the partition; it has written nothing yet.
    assert await store.claim(0, 9)
    with pytest.raises(Fenced, match="epoch"):
        await store.apply(old, checkpoint + 1, checkpoint + 2, [_op(1)])
    assert await store.checkpoint(target) == checkpoint + 1  # nothing moved
    # The stale owner cannot claim it back either; the new one writes.
    assert not await store.claim(0, 5)
    new = replace(target, epoch=9)
    await store.apply(new, checkpoint + 1, checkpoint + 2, [_op(1)])
    # Writers that own nothing (a rebuild's catch-up, a dead-letter retry) are guarded by
    # the checkpoint alone.
    unowned = replace(target, epoch=0)
    with pytest.raises(Fenced, match="checkpoint"):
        await store.apply(unowned, checkpoint, checkpoint + 3, [])
    await store.apply(unowned, checkpoint + 2, checkpoint + 2, [])


async def test_a_load_from_a_generation_no_longer_live_is_fenced(redis: Redis, prefix: str) -> None:
    """A rebuild switches the pointer and drops the old generation between two batches
    of the live projector: its next load must say so, not answer "no such items" (it
    would fold updates onto items it believes missing, and log a failed batch)."""
    store = RedisProjectionStore(redis, KeyLayout(prefix, 1))
    building, checkpoint = await store.resolve(0)  # a fresh Redis: a restore
    op = _op(1)
    await store.apply(building, checkpoint, checkpoint + 1, [op])
    await store.activate(building)
    target = replace(building, building=False)
    assert (await store.load(target, [op.item_id]))[op.item_id].version == 1

    await redis.set(store.layout.gen(0), "g-next")  # what a rebuild's switch does
    await store.drop_generation(0, target.generation)
    with pytest.raises(Fenced, match="generation"):
        await store.load(target, [op.item_id])


async def test_epochs_only_grow_across_acquisitions(
    database_url: str, settings: Settings, db: asyncpg.Connection
) -> None:
    seen = []
    for _ in range(3):
        conn = await asyncpg.connect(asyncpg_dsn(database_url))
        leases = PgLeases(conn, settings.redis_prefix, lease=5.0)
        owned = await leases.tick("", 2)
        assert sorted(owned) == [0, 1]
        seen += sorted(owned.values())
        await leases.release()
        await leases.close()
    assert seen == sorted(seen)
    assert len(set(seen)) == len(seen)
