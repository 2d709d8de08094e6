"""/metrics of a real `items serve --workers 2` (issue 17): prometheus-client's
multiprocess mode sums what every process counted, whichever worker is scraped.

The projector runs in a child of the supervising process, never in a worker, so the
projected counter can only reach a worker's /metrics through the shared folder; the
POSTs land on both workers, so the HTTP counter of one scrape is right only if it sums
them.
"""

from __future__ import annotations

import re
from pathlib import Path

import asyncpg
import httpx
import pytest

from app.settings import Settings
from tests.helpers import eventually
from tests.servers import Spawner, free_port, items_env, wait_ready

pytestmark = pytest.mark.slow

ITEMS = "/api/v1/items"
WRITES = 40
MAX_WRITES = 400
POST_ROUTE = re.compile(
    r'^http_requests_total\{method="POST",route="/api/v1/items",status="201"\} (\S+)$', re.M
)
PROJECTED = re.compile(r"^items_events_projected_total\{partition=\"\d+\"\} (\S+)$", re.M)


def _sum(pattern: re.Pattern[str], text: str) -> float:
    return sum(float(value) for value in pattern.findall(text))


async def test_a_scrape_of_any_worker_counts_every_process(
    settings: Settings, db: asyncpg.Connection, tmp_path: Path
) -> None:
    # `db` empties the session's tables: an event an earlier test left would be
    # projected (and counted) too.
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**items_env(settings, PROJECTION_PARTITIONS="2"), "PORT": str(port)}
    async with Spawner(tmp_path) as spawn:
        serve = await spawn.start("serve", ["serve", "--workers", "2"], env)
        await wait_ready(base, serve, within=60)
        pids: set[int] = set()
        writes = 0
        # A connection each: uvicorn's workers accept from one socket, so the writes are
        # spread over both of them; on a busy machine one may win many in a row, so go on
        # until both have answered some (bounded).
        while writes < WRITES or (len(pids) < 2 and writes < MAX_WRITES):
            async with httpx.AsyncClient(base_url=base) as client:
                pids.add((await client.get("/healthz")).json()["pid"])
                created = await client.post(ITEMS, json={"name": f"m{writes}", "price": "1"})
                assert created.status_code == 201, created.text
                writes += 1
        assert len(pids) == 2, f"every connection landed on one worker: {pids}"

        scraped_by: set[int] = set()

        async def scrape() -> tuple[float, float]:
            async with httpx.AsyncClient(base_url=base) as client:
                scraped_by.add((await client.get("/healthz")).json()["pid"])
                got = await client.get("/metrics")
            assert got.status_code == 200, got.text
            return _sum(POST_ROUTE, got.text), _sum(PROJECTED, got.text)

        # The counters are flushed once a second; the projection catches up in less.
        try:
            await eventually(scrape, lambda c: c == (writes, writes), within=30)
        except AssertionError as exc:
            exc.add_note(f"{writes} writes over workers {pids}; items serve said:\n"
                         f"{serve.log()[-8000:]}")  # fmt: skip
            raise
        # Whichever worker answers, the same totals (each read every process's files).
        for _ in range(60):
            assert await scrape() == (writes, writes)
            if scraped_by == pids:
                break
        assert scraped_by == pids
        assert await serve.stop() == 0
