"""The clients of a history run: sessions that send a random mix of requests and record
each one, whatever happens to it.

A session is one client with one keep-alive connection (so, as long as it lasts, one API
process): creates, PATCHes with and without If-Match, DELETEs, GETs by id and list
pages, with and without the Consistency-Token of its own last write, with and without an
Idempotency-Key (retried with the same key after an error, and sometimes after a
success, to be replayed), now and then `Prefer: respond-async`, and now and then three
PATCHes at once with one If-Match over three connections. Walkers follow list cursors
(`created_at`, the sort no write changes) to the end, including while the runner holds
every write back for a moment (a quiet phase), when totals must add up. Every name a
write sets is unique to that request, so PostgreSQL's events say which request each came
from.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.history.history import Op

ITEMS = "/api/v1/items"
TAGS = ("red", "green", "blue", "amber")
SORTS = ("-created_at", "created_at", "name", "-price", "updated_at")
TIMEOUT = 8.0  # above DB_COMMAND_TIMEOUT (5 s): a write to a hung PostgreSQL answers 503
THINK = 0.03  # seconds between two requests of a session, on average
RETRIES = 3
BACKOFF = 0.1  # seconds after a request that got no answer


@dataclass
class Known:
    version: int | None = None
    token: str | None = None


class Recorder:
    """Every operation of a run, numbered in the order they were invoked."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.wall = time.time()
        self.ops: list[Op] = []
        self._next = 0

    def now(self) -> float:
        return time.monotonic() - self.t0

    def number(self) -> int:
        self._next += 1
        return self._next


@dataclass
class Shared:
    """What the sessions share: the items created so far (any session reads any), the
    gate the runner closes for a quiet phase, and the counters of walks and races."""

    items: list[str] = field(default_factory=list)
    writes_open: asyncio.Event = field(default_factory=asyncio.Event)
    walks: int = 0
    races: int = 0


class Client:
    """An httpx client whose connections are named: the same name, the same process."""

    def __init__(self, base_url: str, label: str, connections: int = 1) -> None:
        # Idle connections are dropped before the server's keep-alive timeout (5 s) can
        # close one under a request (a ReadError that says nothing about the service).
        limits = httpx.Limits(
            max_connections=connections, max_keepalive_connections=connections, keepalive_expiry=3.0
        )
        self.http = httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT, limits=limits)
        self._label = label
        self._streams: dict[int, tuple[object, str]] = {}  # held, so ids are not reused

    def name(self, response: httpx.Response) -> str | None:
        stream = response.extensions.get("network_stream")
        if stream is None:
            return None
        if id(stream) not in self._streams:
            self._streams[id(stream)] = (stream, f"{self._label}.{len(self._streams)}")
        return self._streams[id(stream)][1]

    async def send(self, rec: Recorder, op: Op) -> Op:
        op.invoke = rec.now()
        try:
            r = await self.http.request(
                op.method,
                op.path,
                json=op.req_body,
                headers=op.req_headers,
                params=op.params or None,
            )
            op.status = r.status_code
            op.headers = {k.lower(): v for k, v in r.headers.items()}
            op.conn = self.name(r)
            if op.f == "create" and op.ok:
                op.item = r.json()["id"]
            if r.content:
                try:
                    op.body = json.loads(r.content)
                except ValueError:
                    op.body = r.text[:500]
        except httpx.HTTPError as exc:
            op.error = f"{type(exc).__name__}: {exc}"[:300]
        op.complete = rec.now()
        rec.ops.append(op)
        if op.status is None:
            await asyncio.sleep(BACKOFF)  # as a client would: not hammering a closed port
        return op

    async def close(self) -> None:
        await self.http.aclose()


class Session:
    def __init__(self, n: int, base_url: str, seed: int, rec: Recorder, shared: Shared) -> None:
        self.n = n
        self.rng = random.Random(seed * 1000 + n)
        self.rec = rec
        self.shared = shared
        self.client = Client(base_url, f"s{n}")
        self.racers = Client(base_url, f"s{n}r", connections=3)
        self.mine: dict[str, Known] = {}
        self._made = 0

    def op(self, f: str, method: str, path: str, **fields: Any) -> Op:
        return Op(self.rec.number(), self.n, f, 0.0, 0.0, method, path, **fields)

    def unique(self) -> str:
        self._made += 1
        return f"h{self.n}-{self._made}-{self.rng.randrange(10**6)}"

    async def run(self, until: float) -> None:
        try:
            while self.rec.now() < until:
                await self.step()
                await asyncio.sleep(self.rng.uniform(0, 2 * THINK))
        finally:
            await self.client.close()
            await self.racers.close()

    async def step(self) -> None:
        roll = self.rng.random()
        writing = self.shared.writes_open.is_set()
        if writing and (len(self.mine) < 3 or roll < 0.20):
            await self.create()
        elif writing and roll < 0.45:
            await self.patch()
        elif writing and roll < 0.50:
            await self.delete()
        elif roll < 0.80:
            await self.get()
        elif roll < 0.96 or not writing:
            await self.page()
        else:
            await self.race()

    # -- writes ------------------------------------------------------------------------------

    def _headers(self, keyed: bool) -> dict[str, str]:
        headers = {}
        if keyed:
            headers["idempotency-key"] = f"k-{self.unique()}"
        if self.rng.random() < 0.05:
            headers["prefer"] = "respond-async"
        return headers

    async def write(self, op: Op) -> Op:
        """Send; a keyed write is sent again with its key after no answer, a 503 or a
        409 (in flight), and sometimes after a success too (a replay)."""
        done = await self.client.send(self.rec, op)
        if op.key is None:
            return done
        for _ in range(RETRIES):
            again = done.failed or done.status == 409 or (done.ok and self.rng.random() < 0.15)
            if not again:
                break
            await asyncio.sleep(self.rng.uniform(0.05, 0.3))
            retry = self.op(
                done.f,
                done.method,
                done.path,
                req_headers=dict(done.req_headers),
                req_body=done.req_body,
                item=done.item,
            )
            done = await self.client.send(self.rec, retry)
        return done

    def _learn(self, op: Op) -> None:
        if op.ok and op.f in ("create", "patch") and isinstance(op.body, dict):
            item = op.body["id"]
            known = self.mine.setdefault(item, Known())
            known.version, known.token = op.body["version"], op.headers.get("consistency-token")
        elif op.status == 412 and op.item in self.mine:
            self.mine[op.item].version = int(op.headers.get("etag", '"0"').strip('"') or 0)

    async def create(self) -> None:
        body = {
            "name": self.unique(),
            "price": f"{self.rng.randrange(1, 10**5)}.{self.rng.randrange(100):02d}",
            "tags": self.rng.sample(TAGS, self.rng.randrange(3)),
        }
        if self.rng.random() < 0.3:
            body["description"] = f"d{self.rng.randrange(1000)}"
        op = await self.write(
            self.op(
                "create",
                "POST",
                ITEMS,
                req_body=body,
                req_headers=self._headers(self.rng.random() < 0.5),
            )
        )
        if op.ok and isinstance(op.body, dict):
            self.shared.items.append(op.body["id"])
        self._learn(op)

    def _target(self) -> str | None:
        if self.mine and (self.rng.random() < 0.8 or not self.shared.items):
            return self.rng.choice(list(self.mine))
        return self.rng.choice(self.shared.items) if self.shared.items else None

    async def patch(self) -> None:
        item = self._target()
        if item is None:
            return
        body: dict[str, Any] = {"name": self.unique()}
        if self.rng.random() < 0.3:
            body["price"] = f"{self.rng.randrange(1, 999)}.50"
        if self.rng.random() < 0.2:
            body["tags"] = self.rng.sample(TAGS, self.rng.randrange(3))
        headers = self._headers(self.rng.random() < 0.4)
        known = self.mine.get(item)
        if known is not None and known.version and self.rng.random() < 0.5:
            headers["if-match"] = f'"{known.version}"'
        op = await self.write(
            self.op(
                "patch", "PATCH", f"{ITEMS}/{item}", req_body=body, req_headers=headers, item=item
            )
        )
        self._learn(op)
        if op.status == 404:
            self.mine.pop(item, None)

    async def delete(self) -> None:
        if len(self.mine) < 4:
            return
        item = self.rng.choice(list(self.mine))
        headers = self._headers(self.rng.random() < 0.4)
        known = self.mine[item]
        if known.version and self.rng.random() < 0.3:
            headers["if-match"] = f'"{known.version}"'
        op = await self.write(
            self.op("delete", "DELETE", f"{ITEMS}/{item}", req_headers=headers, item=item)
        )
        if op.status != 412:
            self.mine.pop(item, None)  # deleted, gone already, or unknown: left alone

    async def race(self) -> None:
        """Three PATCHes at once with the same If-Match, over three connections."""
        item = self.rng.choice(list(self.mine)) if self.mine else None
        if item is None or not self.mine[item].version:
            return
        self.shared.races += 1
        tag = f'"{self.mine[item].version}"'
        ops = [
            self.op(
                "patch",
                "PATCH",
                f"{ITEMS}/{item}",
                req_body={"name": self.unique()},
                req_headers={"if-match": tag},
                item=item,
                race=self.shared.races,
            )
            for _ in range(3)
        ]
        for op in await asyncio.gather(*(self.racers.send(self.rec, op) for op in ops)):
            self._learn(op)

    # -- reads -------------------------------------------------------------------------------

    async def get(self) -> None:
        item = self._target()
        if item is None:
            return
        headers = {}
        known = self.mine.get(item)
        if known is not None and known.token and self.rng.random() < 0.5:
            headers["consistency-token"] = known.token
        op = await self.client.send(
            self.rec, self.op("get", "GET", f"{ITEMS}/{item}", req_headers=headers, item=item)
        )
        if op.status == 200 and known is not None:
            known.version = max(known.version or 0, op.body["version"])

    async def page(self) -> None:
        params = {"limit": str(self.rng.choice((5, 20, 100))), "sort": self.rng.choice(SORTS)}
        if self.rng.random() < 0.3:
            params["tag"] = self.rng.choice(TAGS)
        headers = {}
        tokens = [k.token for k in self.mine.values() if k.token]
        if tokens and self.rng.random() < 0.3:
            headers["consistency-token"] = self.rng.choice(tokens)
        await self.client.send(
            self.rec, self.op("list", "GET", ITEMS, req_headers=headers, params=params)
        )


class Walker(Session):
    """Follows cursors over `created_at` to the end, again and again."""

    async def step(self) -> None:
        await self.walk()

    async def walk(self) -> None:
        self.shared.walks += 1
        walk = self.shared.walks
        params = {"limit": "100", "sort": self.rng.choice(("created_at", "-created_at"))}
        if self.rng.random() < 0.3:
            params["tag"] = self.rng.choice(TAGS)
        while True:
            op = await self.client.send(
                self.rec, self.op("list", "GET", ITEMS, params=dict(params), walk=walk)
            )
            if op.status != 200 or not op.body.get("next_cursor"):
                return
            params["cursor"] = op.body["next_cursor"]
