"""What the Edge (edge.py) does for every request: its id, its HTTP metrics, its access
line.

- X-Request-ID: the client's, when it is 1..128 printable ASCII characters, else a new
  one (a random prefix per app and a counter: unique across workers and restarts,
  and no os.urandom call per request, which cost 3% of a GET by id); set for the
  request's whole life in a context variable (app/logs.py puts it on every log line,
  problems.py in every problem+json) and returned on every answer.
- http_requests_total / http_request_duration_seconds, labelled by the route's
  template (`/api/v1/items/{item_id}`), never the raw path: the router leaves the
  matched route in the scope, the fast read path (fast_reads.py) names its own, and
  anything unmatched is `<unmatched>`. A `Seen` object in the scope carries the template
  back out, since inner middleware may copy the scope dict.
- ACCESS_LOG: one line per request (logger items.access), with method, route, path,
  status and duration, and the request id.

The HTTP metrics are counted in plain dicts and handed to
prometheus-client once a second (`HttpCounts.flush`, and before a scrape): in its
multiprocess mode a counter's inc() and a histogram's observe() cost about 4 us
together (an mmap write under a lock each), 13% of a cached GET by id at 32,000 rps;
a dict increment costs a tenth of that (README, OPERATIONS, measures GET by id with
metrics on and off).
"""

from __future__ import annotations

import bisect
import itertools
import logging
import secrets
from collections import defaultdict
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from app.metrics import HTTP_BUCKETS, Metrics

log = logging.getLogger("items.access")

HEADER = b"x-request-id"
MAX_ID = 128
UNMATCHED = "<unmatched>"
SEEN = "items.seen"


class Seen:
    """What the inner layers found out about the request: its route template, and the
    status of its answer."""

    __slots__ = ("route", "status")

    def __init__(self) -> None:
        self.route: str | None = None
        # An exception before the answer started ends as the server's 500.
        self.status = 500


def seen(scope: Scope) -> Seen | None:
    found: Seen | None = scope.get(SEEN)
    return found


class RequestIds:
    """New request ids: 16 hex digits, a random prefix drawn when the app is built (in
    each worker: uvicorn spawns them, and each builds its own app) then a count."""

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(4)
        self._count = itertools.count()

    def next(self) -> str:
        return f"{self._prefix}{next(self._count) & 0xFFFFFFFF:08x}"


def incoming_id(raw: bytes | None) -> str | None:
    """The client's request id when it is acceptable: 1..128 printable ASCII."""
    if raw is None or not 0 < len(raw) <= MAX_ID:
        return None
    if any(b < 0x20 or b > 0x7E for b in raw):
        return None
    return raw.decode("ascii")


class HttpCounts:
    """HTTP request counts and duration buckets since the last flush, in plain dicts."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._requests: defaultdict[tuple[str, str, int], int] = defaultdict(int)
        # (method, route) -> [count per bucket ..., +Inf count, sum of seconds]
        self._durations: dict[tuple[str, str], list[float]] = {}

    def add(self, method: str, route: str, status: int, seconds: float) -> None:
        self._requests[(method, route, status)] += 1
        slots = self._durations.get((method, route))
        if slots is None:
            slots = self._durations[(method, route)] = [0.0] * (len(HTTP_BUCKETS) + 2)
        slots[bisect.bisect_left(HTTP_BUCKETS, seconds)] += 1
        slots[-1] += seconds

    def flush(self) -> None:
        """Hand what was counted to prometheus-client (and so to the scrape)."""
        requests, self._requests = self._requests, defaultdict(int)
        durations, self._durations = self._durations, {}
        for (method, route, status), n in requests.items():
            self.metrics.http_requests.labels(method, route, str(status)).inc(n)
        for (method, route), slots in durations.items():
            child = self.metrics.http_duration.labels(method, route)
            # What observe() does per sample, once per bucket: its `_buckets` (one value
            # per upper bound, +Inf last, counted where a sample first fits) and `_sum`.
            # tests/unit/test_metrics.py checks the result against observe() itself.
            for bucket, count in zip(child._buckets, slots[:-1], strict=True):  # noqa: SLF001
                if count:
                    bucket.inc(count)
            child._sum.inc(slots[-1])  # noqa: SLF001


class Telemetry:
    """This process's counts, handed to prometheus-client once a second and before a
    scrape: the HTTP requests, and the in-process caches' hits and misses (kept as
    plain integers by the caches themselves)."""

    def __init__(self, counts: HttpCounts | None, caches: Any) -> None:
        self.counts = counts
        self._caches = caches  # the container (view_cache, page_cache), or None
        self._seen = (0, 0, 0, 0)

    def watch(self, caches: Any) -> None:
        """Count the hits and misses of these caches (the container's) from now on."""
        self._caches = caches
        self._seen = (0, 0, 0, 0)

    def flush(self) -> None:
        if self.counts is None:
            return
        self.counts.flush()
        if self._caches is None:
            return
        views, pages = self._caches.view_cache, self._caches.page_cache
        now = (views.hits, views.misses, pages.hits, pages.misses)
        delta = [max(0, a - b) for a, b in zip(now, self._seen, strict=True)]
        self._seen = now
        m = self.counts.metrics
        for counter, n in zip(
            (m.view_cache_hits, m.view_cache_misses, m.page_cache_hits, m.page_cache_misses),
            delta,
            strict=True,
        ):
            if n:
                counter.inc(n)


class NoteRoute:
    """Innermost: the route the router matched, noted in the request's `Seen`. The
    router leaves it in the very scope dict it was given, which layers further out may
    have copied (StripTrailingSlash does), so it is read here, right outside FastAPI's
    own stack."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        finally:
            found = seen(scope)
            route = scope.get("route")
            if found is not None and route is not None:
                found.route = getattr(route, "path", None)


class Record:
    """Each request's counts and (ACCESS_LOG) access line, once it is answered."""

    def __init__(self, counts: HttpCounts | None, access_log: bool) -> None:
        self._counts = counts
        self._access_log = access_log

    def __call__(self, scope: Scope, route: str, status: int, elapsed: float) -> None:
        method = scope["method"]
        if self._counts is not None:
            self._counts.add(method, route, status, elapsed)
        if self._access_log:
            extra: dict[str, Any] = {
                "method": method,
                "route": route,
                "path": scope["path"],
                "status": status,
                "duration_ms": round(elapsed * 1000, 3),
            }
            log.info("%s %s %d %.1fms", method, scope["path"], status, elapsed * 1000,
                     extra=extra)  # fmt: skip
