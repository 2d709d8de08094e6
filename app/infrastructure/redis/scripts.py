"""The read model's Lua scripts: kept as .lua files in lua/ beside this module, read
once per process, and registered on a client by name (redis-py sends EVALSHA, and the
source only when Redis does not know the script yet, after a restart say).

A script touches the keys of one partition only (one hash tag, one slot), some of them
not declared in KEYS because their names depend on what it reads first (the live
generation). While a Redis Cluster migrates that slot between nodes, Redis 7 refuses
such a script on the old node once a key it reaches has moved ("Script attempted to
access a non local key"). On the new node, where ASK sends the call once a declared key
has moved, it does not: a key still to move reads as missing there (a 404 for an item
that exists, a checkpoint of 0), and a write would create a second copy. So each script
checks, with lua/lib/settled.lua (put before every script), the keys it found missing
or is about to write, before it answers or writes; Redis refuses that check while any
of them is on the other node. Either refusal is the slot's TRYAGAIN: raised as redis-py's
TryAgainError, which readers answer with 503 and Retry-After and the projector waits
out, until the migration is over and MOVED sends the call on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from redis.exceptions import ClusterError, ResponseError, TryAgainError

from app.infrastructure.redis.client import RedisClient

LUA = Path(__file__).with_name("lua")
NON_LOCAL = "non local key"
# redis-py's cluster client follows MOVED and ASK and retries TRYAGAIN until its TTL (16
# tries) runs out, then says only this: a slot still moving, since Redis answers
# TRYAGAIN to a call whose KEYS are split between the two nodes.
TTL_EXHAUSTED = "TTL exhausted"

Script = Callable[..., Awaitable[Any]]


@cache
def source(name: str) -> str:
    """The script as Redis runs it: lua/lib/settled.lua, then the script."""
    return (LUA / "lib" / "settled.lua").read_text() + (LUA / f"{name}.lua").read_text()


def register(redis: RedisClient, name: str) -> Script:
    script = redis.register_script(source(name))

    async def call(
        keys: Sequence[str] | None = None, args: Sequence[str | bytes | int | float] | None = None
    ) -> Any:
        try:
            return await script(keys=keys, args=args)
        except (ResponseError, ClusterError) as exc:
            if NON_LOCAL in str(exc) or TTL_EXHAUSTED in str(exc):
                raise TryAgainError(
                    f"a Redis Cluster slot is moving between nodes ({exc})"
                ) from exc
            raise

    return call
