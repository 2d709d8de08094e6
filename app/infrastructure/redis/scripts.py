"""The read model's Lua scripts: kept as .lua files in lua/ beside this module, read
once per process, and registered on a client by name (redis-py sends EVALSHA, and the
source only when Redis does not know the script yet, after a restart say)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from redis.commands.core import AsyncScript

from app.infrastructure.redis.client import RedisClient

LUA = Path(__file__).with_name("lua")


@cache
def source(name: str) -> str:
    return (LUA / f"{name}.lua").read_text()


def register(redis: RedisClient, name: str) -> AsyncScript:
    script: AsyncScript = redis.register_script(source(name))
    return script
