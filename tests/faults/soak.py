"""A bounded soak: concurrent writers and readers against `items serve` on loopback for a
fixed time, then the books are balanced against PostgreSQL and `items verify`.

    make soak                                   # 30 s (SOAK_SECONDS), embedded servers
    .venv/bin/python -m tests.faults.soak --seconds 10 --writers 8 --readers 8

Writers POST, PATCH (always a new name, so every PATCH is an event) and DELETE items of
their own; readers GET those items with the write's Consistency-Token (so a 404 is only
right for an item being deleted) and list pages. Afterwards:

- the items in PostgreSQL are exactly those created minus those deleted, each at the
  version its last acknowledged write answered, and (on a database of its own) nothing
  else;
- the events in PostgreSQL are exactly the writes acknowledged;
- `items verify` exits 0 (it waits for the projection to reach the head first);
- no 5xx, no unexpected status, no request without an answer.

Servers: SOAK_DATABASE_URL (an admin URL: a fresh database is created, then dropped) and
SOAK_REDIS_URL (keys under a fresh prefix, removed afterwards); otherwise embedded
PostgreSQL and Redis in a temporary folder. `--url` drives a service already running
instead; then DATABASE_URL, REDIS_URL and REDIS_PREFIX must name its stores (and
SOAK_API_KEY a key, if it was started with API_KEYS), and only the soak's own items are
balanced.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx

from app.settings import Settings, asyncpg_dsn
from tests.servers import Spawner, free_port, items_env, run_items

ITEMS = "/api/v1/items"
TAGS = ("red", "green", "blue", "amber", "violet")
SORTS = ("-created_at", "created_at", "name", "-price", "updated_at")
EXPECTED = {"create": {201}, "update": {200}, "delete": {204}, "get": {200}, "list": {200}}
WRITES = ("create", "update", "delete")


@dataclass
class Figures:
    """What the load did, as the clients saw it."""

    seconds: float = 0.0
    writers: int = 0
    readers: int = 0
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)  # (kind, status)
    unexpected: Counter[tuple[str, int]] = field(default_factory=Counter)
    transport: Counter[str] = field(default_factory=Counter)  # kind -> requests unanswered
    latencies: list[float] = field(default_factory=list)
    versions: dict[str, int] = field(default_factory=dict)  # id -> last acknowledged version
    deleted: set[str] = field(default_factory=set)  # DELETE acknowledged
    deleting: set[str] = field(default_factory=set)  # DELETE sent
    published: list[tuple[str, str]] = field(default_factory=list)  # (id, consistency token)
    samples: list[str] = field(default_factory=list)  # the first unexpected answers, in full

    def unexpected_answer(self, kind: str, r: httpx.Response) -> None:
        self.unexpected[(kind, r.status_code)] += 1
        if len(self.samples) < 5:
            position = r.headers.get("x-projection-position")
            self.samples.append(
                f"{kind} {r.request.method} {r.request.url.path} -> {r.status_code} "
                f"(projection at {position}): {r.text[:200]}"
            )

    @property
    def requests(self) -> int:
        return sum(self.statuses.values()) + sum(self.transport.values())

    @property
    def writes(self) -> int:
        """Acknowledged writes; each one recorded exactly one event."""
        return sum(self.acknowledged(kind) for kind in WRITES)

    def acknowledged(self, kind: str) -> int:
        return sum(n for (k, s), n in self.statuses.items() if k == kind and s in EXPECTED[k])

    def record(self, kind: str, status: int, started: float) -> bool:
        self.latencies.append(time.monotonic() - started)
        self.statuses[(kind, status)] += 1
        return status in EXPECTED[kind]


async def _writer(client: httpx.AsyncClient, n: int, until: float, figures: Figures) -> None:
    live: list[str] = []
    rng = random.Random(n)
    for i in range(10**9):
        if time.monotonic() >= until:
            return
        roll = rng.random()
        started = time.monotonic()
        try:
            if len(live) < 3 or roll < 0.45:
                kind = "create"
                body = {"name": f"soak {n}-{i}", "price": f"{i % 997}.{i % 100:02d}"}
                r = await client.post(ITEMS, json={**body, "tags": rng.sample(TAGS, 2)})
            elif roll < 0.85:
                kind, item_id = "update", rng.choice(live)
                r = await client.patch(f"{ITEMS}/{item_id}", json={"name": f"soak {n}-{i}"})
            else:
                kind, item_id = "delete", live.pop(rng.randrange(len(live)))
                figures.deleting.add(item_id)
                r = await client.delete(f"{ITEMS}/{item_id}")
        except httpx.TransportError:
            figures.transport[kind] += 1
            return  # what happened to that write is unknown: the books cannot balance
        if not figures.record(kind, r.status_code, started):
            figures.unexpected_answer(kind, r)
        elif kind == "delete":
            figures.deleted.add(item_id)
        else:
            item = r.json()
            figures.versions[item["id"]] = item["version"]
            if kind == "create":
                live.append(item["id"])
                figures.published.append((item["id"], r.headers["consistency-token"]))


async def _reader(client: httpx.AsyncClient, n: int, until: float, figures: Figures) -> None:
    rng = random.Random(-n - 1)
    while time.monotonic() < until:
        started = time.monotonic()
        try:
            if figures.published and rng.random() < 0.6:
                kind, (item_id, token) = "get", rng.choice(figures.published)
                r = await client.get(f"{ITEMS}/{item_id}", headers={"Consistency-Token": token})
                gone = r.status_code == 404 and item_id in figures.deleting
                if not figures.record(kind, r.status_code, started) and not gone:
                    figures.unexpected_answer(kind, r)
                continue
            kind = "list"
            params = {"limit": "20", "sort": rng.choice(SORTS)}
            if rng.random() < 0.3:
                params["tag"] = rng.choice(TAGS)
            r = await client.get(ITEMS, params=params)
        except httpx.TransportError:
            figures.transport[kind] += 1
            continue
        if not figures.record(kind, r.status_code, started):
            figures.unexpected_answer(kind, r)


async def drive(base_url: str, seconds: float, writers: int, readers: int) -> Figures:
    figures = Figures(writers=writers, readers=readers)
    limits = httpx.Limits(max_connections=writers + readers)
    key = os.environ.get("SOAK_API_KEY")  # for a service run with API_KEYS
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with httpx.AsyncClient(
        base_url=base_url, timeout=10, limits=limits, headers=headers
    ) as client:
        started = time.monotonic()
        until = started + seconds
        await asyncio.gather(
            *(_writer(client, n, until, figures) for n in range(writers)),
            *(_reader(client, n, until, figures) for n in range(readers)),
        )
        figures.seconds = time.monotonic() - started
    return figures


@dataclass
class SoakReport:
    figures: Figures
    items: int = 0  # in PostgreSQL, of the soak's own
    events: int = 0
    verify_exit: int | None = None
    verify_says: str = ""
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def lines(self) -> list[str]:
        f = self.figures
        by_kind = Counter({k: 0 for k in EXPECTED})
        for (kind, _), count in f.statuses.items():
            by_kind[kind] += count
        errors = sum(f.unexpected.values()) + sum(f.transport.values())
        server_errors = sum(n for (_, s), n in f.statuses.items() if s >= 500)
        quantiles = statistics.quantiles(f.latencies, n=100) if len(f.latencies) > 1 else [0] * 99
        return [
            f"soak: {f.seconds:.1f} s, {f.writers} writers, {f.readers} readers",
            f"requests: {f.requests} ({f.requests / max(f.seconds, 1e-9):.0f}/s): "
            + ", ".join(f"{k} {n}" for k, n in by_kind.items()),
            f"errors: {errors} (5xx: {server_errors}; by status: "
            + (", ".join(f"{k} {s}: {n}" for (k, s), n in sorted(f.unexpected.items())) or "none")
            + f"; no answer: {sum(f.transport.values())})",
            f"latency: p50 {quantiles[49] * 1000:.1f} ms, p99 {quantiles[98] * 1000:.1f} ms",
            f"postgres: {self.items} items = {f.acknowledged('create')} created - "
            f"{f.acknowledged('delete')} deleted; {self.events} events = {f.writes} writes "
            "acknowledged",
            f"items verify: exit {self.verify_exit}: {self.verify_says}",
            "result: " + ("OK" if self.ok else "FAILED: " + "; ".join(self.failures)),
        ]


async def balance(figures: Figures, env: dict[str, str], whole_database: bool) -> SoakReport:
    """Compare the acknowledged writes with PostgreSQL, then run `items verify`."""
    report = SoakReport(figures)
    fail = report.failures.append
    if figures.unexpected or figures.transport:
        fail(
            f"unexpected answers {dict(figures.unexpected)}, unanswered {dict(figures.transport)}"
            + "".join("\n  " + sample for sample in figures.samples)
        )
    created = [uuid.UUID(i) for i in figures.versions]
    conn = await asyncpg.connect(asyncpg_dsn(env["DATABASE_URL"]))
    try:
        rows = await conn.fetch(
            "SELECT id::text AS id, version FROM items WHERE id = ANY($1::uuid[])", created
        )
        report.items = len(rows)
        report.events = await conn.fetchval(
            "SELECT count(*) FROM events WHERE item_id = ANY($1::uuid[])", created
        )
        if whole_database:
            all_items = await conn.fetchval("SELECT count(*) FROM items")
            all_events = await conn.fetchval("SELECT count(*) FROM events")
            if (all_items, all_events) != (report.items, report.events):
                fail(f"PostgreSQL holds {all_items} items, {all_events} events in all")
    finally:
        await conn.close()
    have = {r["id"]: r["version"] for r in rows}
    want = {i: v for i, v in figures.versions.items() if i not in figures.deleted}
    if have != want:
        wrong = sorted(set(have.items()) ^ set(want.items()))[:5]
        fail(f"items in PostgreSQL differ from the acknowledged writes, e.g. {wrong}")
    if report.events != figures.writes:
        fail(f"{report.events} events for {figures.writes} acknowledged writes")
    code, out, err = await run_items(["verify"], env, within=120)
    report.verify_exit = code
    report.verify_says = (out.strip().splitlines() or err.strip().splitlines() or [""])[-1]
    if code != 0:
        fail(f"items verify exited {code}: {out[-2000:]}{err[-2000:]}")
    return report


async def soak(
    base_url: str, env: dict[str, str], seconds: float, writers: int, readers: int, whole: bool
) -> SoakReport:
    return await balance(await drive(base_url, seconds, writers, readers), env, whole)


# -- standalone: `make soak` -----------------------------------------------------------------


def _database(admin_url: str, name: str) -> str:
    base, _, query = asyncpg_dsn(admin_url).partition("?")
    return base.rsplit("/", 1)[0] + "/" + name + ("?" + query if query else "")


async def _standalone(args: argparse.Namespace, root: Path) -> SoakReport:
    from app.infrastructure.embedded import EmbeddedRedis, start_postgres
    from app.infrastructure.postgres.migrations import migrate

    admin_url = os.environ.get("SOAK_DATABASE_URL") or start_postgres(root)
    embedded = EmbeddedRedis(root, persistent=False)
    redis_url = os.environ.get("SOAK_REDIS_URL") or embedded.start()
    name, prefix = f"items_soak_{uuid.uuid4().hex[:10]}", f"soak{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(asyncpg_dsn(admin_url))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        database_url = _database(admin_url, name)
        await asyncio.to_thread(migrate, database_url)
        settings = Settings(
            database_url=database_url,
            redis_url=redis_url,
            redis_prefix=prefix,
            secret_key=secrets.token_urlsafe(32),
            projection_partitions=args.partitions,
            _env_file=None,
        )
        env = items_env(settings, PROJECTOR_IN_PROCESS="true", LOG_LEVEL="warning")
        port = free_port()
        async with Spawner(root) as spawn:
            serve = await spawn.serve("serve", env, port)
            base_url = f"http://127.0.0.1:{port}"
            report = await soak(base_url, env, args.seconds, args.writers, args.readers, True)
            if await serve.stop() != 0:
                report.failures.append(f"items serve did not stop cleanly: {serve.log()[-2000:]}")
        return report
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
        if os.environ.get("SOAK_REDIS_URL"):
            await _drop_keys(redis_url, prefix)
        embedded.stop()  # a no-op unless it was started here


async def _drop_keys(redis_url: str, prefix: str) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(redis_url)
    async for key in client.scan_iter(match=f"{{{prefix}:*", count=1000):
        await client.unlink(key)
    await client.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", 30)))
    parser.add_argument("--writers", type=int, default=int(os.environ.get("SOAK_WRITERS", 8)))
    parser.add_argument("--readers", type=int, default=int(os.environ.get("SOAK_READERS", 8)))
    parser.add_argument("--partitions", type=int, default=int(os.environ.get("SOAK_PARTITIONS", 1)))
    parser.add_argument("--url", help="drive this running service (see the module docstring)")
    args = parser.parse_args(argv)
    if args.url:
        report = asyncio.run(
            soak(args.url, dict(os.environ), args.seconds, args.writers, args.readers, False)
        )
    else:
        with tempfile.TemporaryDirectory(prefix="items-soak-") as tmp:
            report = asyncio.run(_standalone(args, Path(tmp)))
    sys.stdout.write("\n".join(report.lines()) + "\n")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
