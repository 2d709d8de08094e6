"""Consistency tokens: an opaque, signed name for an event position.

A write answers with the token of the last event it committed; a read that sends it
back waits until the projection has applied that position. The signature means a
client cannot ask the service to wait for a position it never issued.
"""

import base64
import hashlib
import hmac

from app.queries.errors import InvalidToken

_MAC_BYTES = 12


class TokenCodec:
    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(b"consistency:" + secret.encode()).digest()

    def _mac(self, raw: bytes) -> bytes:
        return hmac.new(self._key, raw, hashlib.sha256).digest()[:_MAC_BYTES]

    def issue(self, position: int) -> str:
        raw = position.to_bytes(8, "big")
        return base64.urlsafe_b64encode(raw + self._mac(raw)).rstrip(b"=").decode()

    def position(self, token: str) -> int:
        try:
            data = base64.urlsafe_b64decode(token.strip() + "=" * (-len(token.strip()) % 4))
        except (ValueError, UnicodeError) as exc:
            raise InvalidToken("the consistency token is malformed") from exc
        raw, mac = data[:8], data[8:]
        if len(data) != 8 + _MAC_BYTES or not hmac.compare_digest(mac, self._mac(raw)):
            raise InvalidToken("the consistency token was not issued by this service")
        return int.from_bytes(raw, "big")
