"""The live projector's pause between failed batches: doubling up to MAX_BACKOFF for a
store that is away, but retried every BRIEF_BACKOFF at the least for a failure that is
over in moments (a Redis Cluster slot moving), so a reshard leaves no idle seconds."""

from __future__ import annotations

from typing import Any, cast

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TryAgainError

from app.bootstrap import not_ready
from app.infrastructure.redis.client import moving
from app.projection.runner import BRIEF_BACKOFF, FIRST_BACKOFF, MAX_BACKOFF, Projector


class _Session:
    def __init__(self) -> None:
        self.closed = False

    async def listen(self, wake: object) -> None:
        pass

    def is_closed(self) -> bool:
        return self.closed


class _Connector:
    def __init__(self, session: _Session) -> None:
        self.session = session

    async def connect(self) -> _Session:
        return self.session


class _Step:
    """Fails `failures` times with `exc`, then ends the loop by closing the session."""

    def __init__(self, failures: int, exc: Exception) -> None:
        self.failures, self.exc = failures, exc

    def reset(self) -> None:
        pass

    def forget(self) -> None:
        pass

    def own(self, owned: object, layout: object) -> bool:
        return True

    async def step(self, session: _Session) -> float:
        if self.failures:
            self.failures -= 1
            raise self.exc
        session.closed = True
        return 0.0


class _Ownership:
    layout = None

    def owned(self) -> dict[int, int]:
        return {0: 1}


async def _pauses(exc: Exception, failures: int = 10) -> list[float]:
    projector = Projector(
        cast(Any, _Connector(_Session())),
        cast(Any, _Step(failures, exc)),
        transient=not_ready,
        brief=moving,
    )
    slept: list[float] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)

    projector._sleep = sleep  # type: ignore[method-assign]
    with pytest.raises(ConnectionError, match="lost the connection"):  # the session closed
        await projector._project(cast(Any, _Ownership()))
    return slept


@pytest.mark.parametrize(
    ("exc", "ceiling"),
    [
        (TryAgainError("TRYAGAIN Multiple keys request during rehashing of slot"), BRIEF_BACKOFF),
        (RedisConnectionError("Connection refused"), MAX_BACKOFF),
    ],
    ids=["a slot moving", "Redis away"],
)
async def test_the_pause_doubles_up_to_the_ceiling_of_its_cause(
    exc: Exception, ceiling: float
) -> None:
    pauses = await _pauses(exc)
    assert len(pauses) == 10
    assert pauses[0] == FIRST_BACKOFF
    assert all(b == min(a * 2, ceiling) for a, b in zip(pauses, pauses[1:], strict=False))
    assert max(pauses) == ceiling
