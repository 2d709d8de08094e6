"""Pure ASGI middleware: cheap enough to sit in front of every request."""

from __future__ import annotations

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.problems import problem

MAX_BODY = 64 * 1024
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# The status page's sign-in form posts a browser's urlencoded form, not JSON.
FORM_PATHS = frozenset({"/admin/login"})


class StripTrailingSlash:
    """/api/v1/items/ and /api/v1/items are the same resource: answered, not redirected."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if len(path) > 1 and path.endswith("/"):
                scope = dict(scope)
                scope["path"] = path.rstrip("/") or "/"
                raw = scope.get("raw_path")
                if raw:
                    scope["raw_path"] = raw.rstrip(b"/") or b"/"
        await self.app(scope, receive, send)


def is_json(content_type: bytes | None) -> bool:
    """application/json or any application/*+json, whatever its parameters."""
    if content_type is None:
        return False
    media_type = content_type.split(b";", 1)[0].strip().lower()
    return media_type == b"application/json" or (
        media_type.startswith(b"application/") and media_type.endswith(b"+json")
    )


class LimitBody:
    """Refuses bodies over MAX_BODY with 413, and POST/PUT/PATCH bodies that are not
    JSON (415 for another Content-Type, 400 for bytes that are not UTF-8), before
    anything parses them.

    A declared Content-Length is checked up front; a chunked body is read up to the
    limit and replayed to the app, so nothing downstream ever holds more than that.
    Without the 415, FastAPI would guess: a body without Content-Type is parsed as
    JSON, and a form or text body is validated as if it were the item.
    """

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        content_type = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit() or int(value) > self.limit:
                    await self._refuse(scope, receive, send)
                    return
            elif name == b"content-type":
                content_type = value
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body and scope["method"] in BODY_METHODS and scope["path"] not in FORM_PATHS:
            refusal = self._not_json(content_type, body)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    def _not_json(content_type: bytes | None, body: bytes) -> Response | None:
        if not is_json(content_type):
            return problem(
                415,
                "the body must be JSON, sent with `Content-Type: application/json`",
                slug="unsupported-media-type",
            )
        try:
            # JSON between systems is UTF-8 (RFC 8259, 8.1); Python's parser would also
            # take UTF-16 and UTF-32, and lone surrogates.
            body.decode("utf-8")
        except UnicodeDecodeError:
            return problem(
                400, "the body is not valid JSON: it is not UTF-8", slug="malformed-json"
            )
        return None

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem(
            413, f"the request body is larger than {self.limit} bytes", slug="body-too-large"
        )
        await response(scope, receive, send)
