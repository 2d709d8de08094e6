"""Opaque, signed list cursors: a cursor is the last index member of a page, bound to
the sort and tag it was issued for, so a client cannot forge or reuse it elsewhere."""

import base64
import hashlib
import hmac

import orjson

from app.queries.errors import InvalidCursor

_MAC_BYTES = 16


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class CursorCodec:
    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(b"cursor:" + secret.encode()).digest()

    def _mac(self, body: bytes) -> bytes:
        # hmac.digest: the same HMAC-SHA256 as hmac.new(...).digest(), in one C call.
        return hmac.digest(self._key, body, "sha256")[:_MAC_BYTES]

    def encode(self, *, sort: str, tag: str | None, after: bytes) -> str:
        body = orjson.dumps({"s": sort, "t": tag, "a": after.decode()})
        return _b64(body) + "." + _b64(self._mac(body))

    def decode(self, cursor: str, *, sort: str, tag: str | None) -> bytes:
        """The index member a page must start after; raises InvalidCursor."""
        try:
            body_text, mac_text = cursor.split(".")
            body, mac = _unb64(body_text), _unb64(mac_text)
        except (ValueError, UnicodeError) as exc:
            raise InvalidCursor("the cursor is malformed") from exc
        if not hmac.compare_digest(mac, self._mac(body)):
            raise InvalidCursor("the cursor was not issued by this service")
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise InvalidCursor("the cursor is malformed") from exc
        # Signed, yet not of this shape (a cursor of some other format): refused, not a crash.
        if not isinstance(data, dict):
            raise InvalidCursor("the cursor is malformed")
        if data.get("s") != sort or data.get("t") != tag:
            raise InvalidCursor("the cursor belongs to a different sort or tag")
        after = data.get("a")
        if not isinstance(after, str) or not after:
            raise InvalidCursor("the cursor is malformed")
        return after.encode()
