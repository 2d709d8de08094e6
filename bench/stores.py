"""The databases and Redis keys one run makes on the chosen servers, and their removal at
the end: the servers may be the machine's own (or shared by a concurrent run), so the run
drops exactly what it created."""

from __future__ import annotations

import asyncio

import asyncpg
from redis.asyncio import Redis

from app.settings import asyncpg_dsn

from .config import Config
from .console import say


def with_database(url: str, name: str) -> str:
    base, _, query = url.partition("?")
    return base.rsplit("/", 1)[0] + "/" + name + ("?" + query if query else "")


async def pg_admin(cfg: Config, sql: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(cfg.admin_url))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def redis_drop(cfg: Config, patterns: list[str], keys: list[str]) -> None:
    r = Redis.from_url(cfg.redis_url)
    try:
        for start in range(0, len(keys), 5000):
            await r.unlink(*keys[start : start + 5000])
        for pattern in patterns:
            batch: list[bytes] = []
            async for key in r.scan_iter(match=pattern, count=5000):
                batch.append(key)
                if len(batch) >= 5000:
                    await r.unlink(*batch)
                    batch = []
            if batch:
                await r.unlink(*batch)
    finally:
        await r.aclose()


class Stores:
    """The databases and Redis key patterns this run made, removed at the end."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.databases: list[str] = []
        self.redis_patterns: list[str] = []
        self.redis_keys: list[str] = []

    def database(self, name: str) -> str:
        asyncio.run(pg_admin(self.cfg, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        asyncio.run(pg_admin(self.cfg, f'CREATE DATABASE "{name}"'))
        self.databases.append(name)
        return with_database(asyncpg_dsn(self.cfg.admin_url), name)

    def cleanup(self) -> None:
        for name in self.databases:
            try:
                asyncio.run(pg_admin(self.cfg, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            except Exception as exc:  # noqa: BLE001 - cleanup goes on
                say(f"note: could not drop database {name}: {exc}")
        try:
            asyncio.run(redis_drop(self.cfg, self.redis_patterns, self.redis_keys))
        except Exception as exc:  # noqa: BLE001
            say(f"note: could not remove Redis keys {self.redis_patterns}: {exc}")
