"""What Redis itself takes of a rebuild's writes, in the same run: the rebuild's own keys
and index members (the RESP commands rebuild_store.seed_commands packs from the same
rows, ITEM_ROWS of the rebuild's database), sent under a prefix of their own from one
client, pipelined, one write per batch of BENCH_REBUILD_BATCH items, as the rebuild sends
them. Only sending and reading the replies is timed: reading the rows and packing them
are the rebuild's own costs, the part the reference leaves out.

Also Redis' memory per item (INFO memory, used_memory, before and after), which the
rebuild's figure is set beside. Its keys are removed as soon as they are measured."""

from __future__ import annotations

import time
from typing import Any

import asyncpg
import redis

from app.infrastructure.postgres.items_reader import ITEM_ROWS
from app.infrastructure.redis.keys import KeyLayout
from app.infrastructure.redis.rebuild_store import seed_commands

from .config import Config
from .stores import Stores, redis_drop


def used_memory(url: str) -> int:
    r = redis.Redis.from_url(url, socket_timeout=30)
    try:
        return int(r.info("memory")["used_memory"])
    finally:
        r.close()


def send_raw(conn: Any, commands: list[bytes]) -> None:
    conn.send_packed_command(commands, check_health=False)
    for _ in commands:
        reply = conn.read_response()
        if isinstance(reply, Exception):
            raise reply


async def raw_redis(cfg: Config, stores: Stores, database_url: str) -> dict[str, Any]:
    prefix = f"{cfg.prefix}_raw"
    pattern = f"{{{prefix}:*"
    stores.redis_patterns.append(pattern)  # removed at the end if this fails midway
    layout = KeyLayout(prefix, 1)
    client = redis.Redis.from_url(cfg.redis_url, socket_timeout=120)
    conn = client.connection_pool.get_connection()
    before, sent, seconds = used_memory(cfg.redis_url), 0, 0.0
    pg = await asyncpg.connect(database_url, command_timeout=None)
    try:
        async with pg.transaction(isolation="repeatable_read", readonly=True):
            cursor = await pg.cursor(ITEM_ROWS)
            while rows := await cursor.fetch(cfg.rebuild_batch):
                packed = [c for cs in seed_commands(layout, "raw", rows).values() for c in cs]
                began = time.perf_counter()
                send_raw(conn, packed)
                seconds += time.perf_counter() - began
                sent += len(rows)
    finally:
        await pg.close()
        client.connection_pool.release(conn)
        client.close()
    after = used_memory(cfg.redis_url)
    await redis_drop(cfg, [pattern], [])  # its memory back now, not at the end
    return {
        "items": sent,
        "seconds": seconds,
        "items_per_s": sent / seconds if seconds else None,
        "redis_bytes_per_item": (after - before) / sent if sent else None,
        "batch_size": cfg.rebuild_batch,
    }
