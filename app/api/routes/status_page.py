"""GET /admin/status: the projection at a glance, for a person with a browser.

One server-rendered HTML page (no build step, no script: it reloads itself every
REFRESH seconds) with what `items status` says (head, checkpoint, lag, owner, epoch,
generation per partition), a sparkline of the lag over the last minutes (samples kept
by this process, one per render at most every SAMPLE_EVERY seconds), the dead letters
with their errors, and this process's view-cache hit rate.

With API_KEYS set it is for key holders: a `Bearer` header works as on /api/v1/admin,
and a browser signs in once through /admin/login, a form that takes the key and sets an
HttpOnly, SameSite=Strict cookie holding not the key but an HMAC of its digest under
the signing key, so the key never travels in a URL and a stolen cookie names no key.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import deque
from html import escape
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from app.api.problems import problem
from app.api.state import ContainerDep
from app.api.status_html import page, sign_in_page
from app.bootstrap import Container

router = APIRouter(include_in_schema=False)

COOKIE = "items_admin"
SESSION_SECONDS = 12 * 3600
SAMPLE_EVERY = 2.0  # seconds between two lag samples kept for the sparkline
KEEP = 300  # samples: ten minutes at one every two seconds
_samples: deque[tuple[float, float]] = deque(maxlen=KEEP)


def _session(signing_key: str, digest: bytes) -> str:
    return hmac.new(signing_key.encode(), b"admin-session:" + digest, hashlib.sha256).hexdigest()


def _signed_in(request: Request, c: Container) -> bool:
    digests = c.settings.api_key_digests
    if not digests:
        return True  # no keys: nothing is guarded, as /api/v1/admin
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token:
        found = hashlib.sha256(token.strip().encode()).digest()
        if any(hmac.compare_digest(found, d) for d in digests):
            return True
    cookie = request.cookies.get(COOKIE, "")
    ok = False
    for digest in digests:  # every one compared: the time says nothing about which
        ok |= hmac.compare_digest(cookie, _session(c.settings.signing_key, digest))
    return ok


@router.get("/admin/status")
async def status_page(request: Request, c: ContainerDep) -> Response:
    if not _signed_in(request, c):
        if "text/html" in request.headers.get("accept", ""):
            return RedirectResponse("/admin/login", status_code=303)
        return problem(401, "the status page needs an API key", slug="unauthorized",
                       headers={"WWW-Authenticate": 'Bearer realm="items"'})  # fmt: skip
    found = await _status(c)
    return HTMLResponse(page(found, list(_samples), guarded=bool(c.settings.api_keys)))


@router.get("/admin/login")
async def sign_in_form(c: ContainerDep) -> Response:
    return HTMLResponse(sign_in_page(error=None))


@router.post("/admin/login")
async def sign_in(request: Request, c: ContainerDep) -> Response:
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    key = (form.get("key") or [""])[0].strip()
    digest = hashlib.sha256(key.encode()).digest()
    if not key or not any(hmac.compare_digest(digest, d) for d in c.settings.api_key_digests):
        return HTMLResponse(sign_in_page(error="That key is not one of the API keys."), 403)
    answer = RedirectResponse("/admin/status", status_code=303)
    answer.set_cookie(
        COOKIE,
        _session(c.settings.signing_key, digest),
        max_age=SESSION_SECONDS,
        path="/admin",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return answer


@router.post("/admin/logout")
async def sign_out() -> Response:
    answer = RedirectResponse("/admin/login", status_code=303)
    answer.delete_cookie(COOKIE, path="/admin")
    return answer


async def _status(c: Container) -> dict[str, Any]:
    """What the page shows: the status, the dead letters, this process's caches."""
    found = await c.status()
    found["dead_letter_rows"] = [
        {k: (escape(str(v)) if v is not None else "") for k, v in dict(row).items()}
        for row in (await c.dead_letters())[-20:]
    ]
    stats = c.view_cache.stats()
    asked = int(stats["hits"]) + int(stats["misses"])
    found["view_cache_hit_rate"] = None if not asked else int(stats["hits"]) / asked
    now = time.time()
    if not _samples or now - _samples[-1][0] >= SAMPLE_EVERY:
        _samples.append((now, float(found["lag_seconds"])))
    return found
