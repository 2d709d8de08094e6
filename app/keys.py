"""API keys: who may write, said once for every entry point (REST, GraphQL, gRPC).

A key travels as `Bearer <key>`: in the `Authorization` header over HTTP (REST and
GraphQL), in the `authorization` metadata over gRPC. Keys are held as SHA-256 digests
and compared in constant time against every configured digest; neither a key nor the
header is ever logged. The entry points ask `ApiKeys.check`, and the shared error table
(app/bootstrap/errors.py) says what each refusal is in their protocol.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

SCHEME = "bearer"


class MissingKey(Exception):
    """No well-formed `Bearer <key>` credential, where one is needed."""

    def __init__(self) -> None:
        super().__init__("this request needs an API key: send `Authorization: Bearer <key>`")


class UnknownKey(Exception):
    """A well-formed credential whose key is not configured."""

    def __init__(self) -> None:
        super().__init__("the API key is not valid")


def bearer_token(values: Sequence[bytes]) -> bytes | None:
    """The token of the one `Bearer <token>` credential among `values` (every value of
    the header or metadata key); None if absent or malformed (another scheme, no token,
    several values)."""
    if len(values) != 1:
        return None
    scheme, _, token = values[0].strip().partition(b" ")
    token = token.strip()
    if scheme.lower() != SCHEME.encode() or not token or b" " in token:
        return None
    return token


class ApiKeys:
    def __init__(self, digests: Sequence[bytes]) -> None:
        self.digests = tuple(digests)

    @property
    def enabled(self) -> bool:
        """Whether any key is configured (none: everything is open)."""
        return bool(self.digests)

    def known(self, token: bytes) -> bool:
        digest = hashlib.sha256(token).digest()
        found = False
        # Every digest is compared, so the time taken says nothing about which matched.
        for known in self.digests:
            found |= hmac.compare_digest(known, digest)
        return found

    def check(self, values: Sequence[bytes]) -> None:
        """Raise MissingKey or UnknownKey unless `values` hold one configured key (a
        no-op while no key is configured)."""
        if not self.digests:
            return
        token = bearer_token(values)
        if token is None:
            raise MissingKey()
        if not self.known(token):
            raise UnknownKey()
