"""Idempotency keys (IETF draft "The Idempotency-Key HTTP Header Field").

The key, a fingerprint of the request and the answer are stored in the same
transaction as the change and its events, so a retry either finds the whole answer or
finds that nothing happened: there is no state in between.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass


@dataclass(frozen=True)
class StoredResponse:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class IdempotentRequest:
    key: str
    fingerprint: str  # method, path and body, hashed


class RequestInFlight(Exception):
    """Another request with this key has not finished yet."""


class KeyReused(Exception):
    """The key was first used for a different request."""


class IdempotencyStore(abc.ABC):
    @abc.abstractmethod
    async def lock(self, key: str) -> bool:
        """Hold the key for this transaction; False if another transaction holds it."""

    @abc.abstractmethod
    async def get(self, key: str) -> tuple[str, StoredResponse] | None:
        """The fingerprint and answer stored under an unexpired key."""

    @abc.abstractmethod
    async def save(self, key: str, fingerprint: str, response: StoredResponse) -> None: ...
