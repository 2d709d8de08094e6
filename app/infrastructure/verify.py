"""`items verify [--repair]`: compare every item in PostgreSQL with its Redis view.

1. Read the head H of the event log, then wait (bounded) until every partition's live
   checkpoint has reached H, so ordinary projection lag is never reported as drift.
2. Stream the item rows in id order (keyset batches) and compare each with its view, its
   `ver` entry and its list-index members, a pipeline per batch and partition.
3. Scan each partition's generation for views and `ver` entries of ids PostgreSQL does
   not have (extras), and for index members that no live item accounts for: an index
   whose size is more than the expected members found in it is scanned member by member.
4. Everything that differed is only a suspect: writes racing the run look like drift.
   Suspects are checked again, after the projection has reached the then-current head,
   until the set stops shrinking; only what still differs is reported.

With `repair=True` what differs is rewritten from PostgreSQL, one guarded Lua step per
item (it writes only if the view and `ver` entry are still what was checked, so a
projector write in between is never overwritten), and the whole comparison runs again.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from uuid import UUID

import asyncpg
import orjson
from redis.commands.core import AsyncScript

from app.infrastructure import views
from app.infrastructure.bootstrap import Container
from app.infrastructure.projection_store import as_text
from app.infrastructure.redis_keys import (
    ID_LENGTH,
    KeyLayout,
    index_members,
    scan_pattern,
    view_suffix,
)
from app.infrastructure.repositories import item_from_row
from app.infrastructure.settings import asyncpg_dsn

POLL = 0.05
MAX_RECHECKS = 3
LISTED = 20  # ids named per kind in a summary

ITEM_COLUMNS = "id, name, description, price, tags, version, created_at, updated_at"

# KEYS[1] the live generation pointer. ARGV: base, generation, id, the `ver` entry as
# checked ('' none), '1'/'0' whether a view was there, the view as checked, the new `ver`
# entry ('' leave it), the new view ('' delete), channel, partition, n removes,
# (suffix, member)..., n adds, ... A repair publishes its ChangeNotice in the same step.
# Writes nothing unless the generation, the `ver` entry and the view are still what the
# caller checked: a projector that moved the item since wins, and the re-verify tells.
REPAIR = """
if redis.call('GET', KEYS[1]) ~= ARGV[2] then return -1 end
local base = ARGV[1]
local vkey = base .. 'v:' .. ARGV[3]
local ver = redis.call('HGET', base .. 'ver', ARGV[3])
if (ver or '') ~= ARGV[4] then return 0 end
local view = redis.call('GET', vkey)
if ARGV[5] == '1' then
  if view ~= ARGV[6] then return 0 end
elseif view then
  return 0
end
if ARGV[8] == '' then redis.call('DEL', vkey) else redis.call('SET', vkey, ARGV[8]) end
if ARGV[7] ~= '' then redis.call('HSET', base .. 'ver', ARGV[3], ARGV[7]) end
local cp = redis.call('GET', base .. 'cp') or '0'
redis.call('PUBLISH', ARGV[9], ARGV[10] .. ':' .. cp .. ':' .. ARGV[2] .. ':!' .. ARGV[3])
local i = 11
local n = tonumber(ARGV[i])
for j = 1, n do redis.call('ZREM', base .. ARGV[i + 2 * j - 1], ARGV[i + 2 * j]) end
i = i + 1 + 2 * n
n = tonumber(ARGV[i])
for j = 1, n do redis.call('ZADD', base .. ARGV[i + 2 * j - 1], 0, ARGV[i + 2 * j]) end
return 1
"""


class VerifyTimeout(Exception):
    """The projection did not reach the head of the event log in time."""


@dataclass
class VerifyReport:
    head: int = 0
    checked: int = 0  # item rows compared
    missing: list[str] = field(default_factory=list)  # row without a view
    extra: list[str] = field(default_factory=list)  # view (or live `ver`) without a row
    stale: list[str] = field(default_factory=list)  # view or `ver` at another version
    corrupt: list[str] = field(default_factory=list)  # unparseable, or differs at the version
    index_missing: list[tuple[str, str]] = field(default_factory=list)  # (id, index suffix)
    index_extra: list[tuple[str, str]] = field(default_factory=list)  # (id, index suffix)
    read_model_missing: bool = False
    missing_partitions: list[int] = field(default_factory=list)
    repaired: int = 0  # items rewritten by --repair
    after_repair: VerifyReport | None = None  # the comparison run after the repair
    seconds: float = 0.0

    @property
    def counts(self) -> dict[str, int]:
        return {
            "missing": len(self.missing),
            "extra": len(self.extra),
            "stale": len(self.stale),
            "corrupt": len(self.corrupt),
            "index_missing": len(self.index_missing),
            "index_extra": len(self.index_extra),
        }

    @property
    def differences(self) -> bool:
        return self.read_model_missing or any(self.counts.values())

    @property
    def ok(self) -> bool:
        """Whether the read model matches PostgreSQL (after the repair, if one ran)."""
        if self.after_repair is not None:
            return self.after_repair.ok
        return not self.differences

    def summary(self) -> list[str]:
        lines = self._lines()
        if self.after_repair is not None:
            lines.append(f"repaired {self.repaired} item(s); verifying again:")
            lines += ["  " + line for line in self.after_repair._lines()]
        return lines

    def _lines(self) -> list[str]:
        if self.read_model_missing:
            parts = ", ".join(str(p) for p in self.missing_partitions)
            return [
                f"read model missing: partition(s) {parts} have no live generation"
                " (Redis lost its data or a restore is in progress)"
            ]
        head = f"checked {self.checked} item(s) at head position {self.head}"
        if not self.differences:
            return [f"{head}: the read model matches PostgreSQL"]
        lines = [f"{head}: differences found"]
        for kind in ("missing", "extra", "stale", "corrupt"):
            ids: list[str] = getattr(self, kind)
            if ids:
                lines.append(_listing(kind, len(ids), ids))
        for kind in ("index_missing", "index_extra"):
            pairs: list[tuple[str, str]] = getattr(self, kind)
            if pairs:
                lines.append(_listing(kind, len(pairs), [f"{i} ({s})" for i, s in pairs]))
        return lines


def _listing(kind: str, count: int, names: list[str]) -> str:
    shown = ", ".join(names[:LISTED])
    more = f", ... and {count - LISTED} more" if count > LISTED else ""
    return f"{kind}: {count}: {shown}{more}"


@dataclass
class _Diff:
    partition: int
    kind: str | None = None  # missing / extra / stale / corrupt
    index_missing: list[tuple[str, str]] = field(default_factory=list)  # (suffix, member)
    index_extra: list[tuple[str, str]] = field(default_factory=list)

    @property
    def differs(self) -> bool:
        return bool(self.kind or self.index_missing or self.index_extra)


_item = item_from_row


def _is_uuid(value: str) -> bool:
    try:
        UUID(value)
    except ValueError:
        return False
    return len(value) == ID_LENGTH


def _old_members(data: bytes | None) -> dict[str, str]:
    """The index members an existing view accounts for ({} if it cannot be read)."""
    if data is None:
        return {}
    try:
        return index_members(views.parse(data))
    except (orjson.JSONDecodeError, ValueError, KeyError, TypeError, AssertionError):
        return {}


class _Verifier:
    def __init__(
        self, container: Container, conn: asyncpg.Connection, wait: float, batch: int
    ) -> None:
        self.redis = container.redis
        self.layout: KeyLayout = container.layout
        self.conn = conn
        self.wait = wait
        self.batch = batch
        self.gens: dict[int, str] = {}
        self.missing_partitions: list[int] = []
        self.final: dict[str, _Diff] = {}  # what still differed at the end of run()
        self.known_extra: dict[str, list[tuple[str, str]]] = {}

    # -- PostgreSQL ----------------------------------------------------------------------

    async def head(self) -> int:
        return int(await self.conn.fetchval("SELECT coalesce(max(position), 0) FROM events"))

    async def rows(self, ids: Sequence[str]) -> dict[str, asyncpg.Record]:
        valid = [i for i in ids if _is_uuid(i)]
        if not valid:
            return {}
        found = await self.conn.fetch(
            f"SELECT {ITEM_COLUMNS} FROM items WHERE id = ANY($1::uuid[])", valid
        )
        return {str(r["id"]): r for r in found}

    async def row_batches(self) -> AsyncIterator[list[asyncpg.Record]]:
        last: UUID | None = None
        while True:
            if last is None:
                rows = await self.conn.fetch(
                    f"SELECT {ITEM_COLUMNS} FROM items ORDER BY id LIMIT $1", self.batch
                )
            else:
                rows = await self.conn.fetch(
                    f"SELECT {ITEM_COLUMNS} FROM items WHERE id > $1 ORDER BY id LIMIT $2",
                    last,
                    self.batch,
                )
            if not rows:
                return
            yield rows
            if len(rows) < self.batch:
                return
            last = rows[-1]["id"]

    # -- waiting for the projection --------------------------------------------------------

    async def wait_for(self, position: int) -> bool:
        """Wait until every live checkpoint is at `position`; False when a partition has
        no live generation (the read model is missing)."""
        deadline = time.monotonic() + self.wait
        partitions = range(self.layout.partitions)
        while True:
            names = await self.redis.mget([self.layout.gen(p) for p in partitions])
            gens = {p: as_text(n) for p, n in zip(partitions, names, strict=True) if n is not None}
            if len(gens) < len(partitions):
                self.missing_partitions = [p for p in partitions if p not in gens]
                return False
            cps = await self.redis.mget([self.layout.base(p, g) + "cp" for p, g in gens.items()])
            low = min(int(c or 0) for c in cps)
            if low >= position:
                self.gens = gens
                return True
            if time.monotonic() >= deadline:
                raise VerifyTimeout(
                    f"the projection is at position {low} but the head of the event log is "
                    f"{position}; still behind after {self.wait:g}s (is the projector running?)"
                )
            await asyncio.sleep(POLL)

    # -- comparing -------------------------------------------------------------------------

    async def check(
        self,
        partition: int,
        rows: dict[str, asyncpg.Record | None],
        known_extra: dict[str, list[tuple[str, str]]],
        present: dict[tuple[int, str], int] | None = None,
    ) -> dict[str, _Diff]:
        """Compare items of one partition: `rows` maps each id to its row (None: not in
        PostgreSQL); `known_extra` names index members to check for being still there."""
        base = self.layout.base(partition, self.gens[partition])
        ids = list(rows)
        expected: dict[str, tuple[bytes, int, dict[str, str]]] = {}
        for item_id, row in rows.items():
            # A row counts only in its own partition: a view elsewhere is an extra.
            if row is not None and self.layout.partition_of(item_id) == partition:
                view = views.item_view(_item(row))
                expected[item_id] = (views.render(view), row["version"], index_members(view))
        wanted: dict[str, list[tuple[str, str]]] = defaultdict(list)  # suffix -> (id, member)
        for item_id, (_, _, members) in expected.items():
            for suffix, member in members.items():
                wanted[suffix].append((item_id, member))
        doubtful: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for item_id, pairs in known_extra.items():
            for suffix, member in pairs:
                doubtful[suffix].append((item_id, member))
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.mget([base + view_suffix(i) for i in ids])
            pipe.hmget(base + "ver", ids)
            for suffix, pairs in wanted.items():
                pipe.zmscore(base + suffix, [m for _, m in pairs])
            for suffix, pairs in doubtful.items():
                pipe.zmscore(base + suffix, [m for _, m in pairs])
            replies = await pipe.execute()
        datas, versions = replies[0], replies[1]
        diffs = {i: _Diff(partition) for i in ids}
        for item_id, data, raw_version in zip(ids, datas, versions, strict=True):
            version = int(raw_version) if raw_version is not None else 0
            diffs[item_id].kind = _classify(expected.get(item_id), data, version)
        k = 2
        for suffix, pairs in wanted.items():
            for (item_id, member), score in zip(pairs, replies[k], strict=True):
                if score is None:
                    diffs[item_id].index_missing.append((suffix, member))
                elif present is not None:
                    present[(partition, suffix)] += 1
            k += 1
        for suffix, pairs in doubtful.items():
            for (item_id, member), score in zip(pairs, replies[k], strict=True):
                want = expected.get(item_id)
                if score is not None and (want is None or want[2].get(suffix) != member):
                    diffs[item_id].index_extra.append((suffix, member))
            k += 1
        return {i: d for i, d in diffs.items() if d.differs}

    async def scan_extras(self, partition: int, suspects: dict[str, _Diff]) -> list[str]:
        """Views and live `ver` entries of ids PostgreSQL does not have; returns the
        index keys (suffixes) of the generation."""
        base = self.layout.base(partition, self.gens[partition])
        suffixes: list[str] = []
        pending: list[str] = []

        async def flush() -> None:
            ids = [i for i in dict.fromkeys(pending) if i not in suspects]
            pending.clear()
            if not ids:
                return
            known = await self.rows(ids)
            for item_id in ids:
                if item_id not in known or self.layout.partition_of(item_id) != partition:
                    suspects[item_id] = _Diff(partition, kind="extra")

        async for key in self.redis.scan_iter(match=scan_pattern(base), count=self.batch):
            suffix = as_text(key)[len(base) :]
            if suffix.startswith("v:"):
                pending.append(suffix[2:])
            elif suffix.startswith(("ix:", "tx:")):
                suffixes.append(suffix)
            if len(pending) >= self.batch:
                await flush()
        async for item_id, raw in self.redis.hscan_iter(base + "ver", count=self.batch):
            if int(raw) > 0:
                pending.append(as_text(item_id))
            if len(pending) >= self.batch:
                await flush()
        await flush()
        return suffixes

    async def scan_index(
        self,
        partition: int,
        suffix: str,
        suspects: dict[str, _Diff],
        extra: dict[str, set[tuple[str, str]]],
    ) -> None:
        """Members of one index that no live item accounts for."""
        key = self.layout.base(partition, self.gens[partition]) + suffix
        chunk: list[str] = []

        async def flush() -> None:
            rows = await self.rows([m[-ID_LENGTH:] for m in chunk])
            for member in chunk:
                item_id = member[-ID_LENGTH:]
                row = rows.get(item_id)
                want = None
                if row is not None and self.layout.partition_of(item_id) == partition:
                    want = index_members(views.item_view(_item(row))).get(suffix)
                if member != want:
                    suspects.setdefault(item_id, _Diff(partition))
                    extra[item_id].add((suffix, member))
            chunk.clear()

        async for member, _ in self.redis.zscan_iter(key, count=self.batch):
            chunk.append(as_text(member))
            if len(chunk) >= self.batch:
                await flush()
        if chunk:
            await flush()

    async def recheck(
        self, suspects: dict[str, _Diff], known_extra: dict[str, list[tuple[str, str]]]
    ) -> dict[str, _Diff] | None:
        """Check the suspects again once the projection has caught up with the current
        head; None if the read model went missing meanwhile."""
        if not await self.wait_for(await self.head()):
            return None
        by_partition: dict[int, list[str]] = defaultdict(list)
        for item_id, diff in suspects.items():
            by_partition[diff.partition].append(item_id)
        still: dict[str, _Diff] = {}
        for partition, ids in by_partition.items():
            for start in range(0, len(ids), self.batch):
                chunk = ids[start : start + self.batch]
                found = await self.rows(chunk)
                rows: dict[str, asyncpg.Record | None] = {i: found.get(i) for i in chunk}
                extra = {i: known_extra[i] for i in chunk if i in known_extra}
                still.update(await self.check(partition, rows, extra))
        return still

    # -- one full run ------------------------------------------------------------------------

    async def run(self) -> VerifyReport:
        started = time.monotonic()
        report = VerifyReport(head=await self.head())
        if not await self.wait_for(report.head):
            return self._missing(report)
        suspects: dict[str, _Diff] = {}
        present: dict[tuple[int, str], int] = defaultdict(int)
        async for batch in self.row_batches():
            report.checked += len(batch)
            by_partition: dict[int, dict[str, asyncpg.Record | None]] = defaultdict(dict)
            for row in batch:
                by_partition[self.layout.partition_of(row["id"])][str(row["id"])] = row
            for partition, rows in by_partition.items():
                suspects.update(await self.check(partition, rows, {}, present))
        extra_members: dict[str, set[tuple[str, str]]] = defaultdict(set)
        for partition in range(self.layout.partitions):
            suffixes = await self.scan_extras(partition, suspects)
            if not suffixes:
                continue
            base = self.layout.base(partition, self.gens[partition])
            async with self.redis.pipeline(transaction=False) as pipe:
                for suffix in suffixes:
                    pipe.zcard(base + suffix)
                sizes = await pipe.execute()
            for suffix, size in zip(suffixes, sizes, strict=True):
                if int(size) > present[(partition, suffix)]:
                    await self.scan_index(partition, suffix, suspects, extra_members)
        known_extra = {i: sorted(entries) for i, entries in extra_members.items()}
        for _ in range(MAX_RECHECKS):
            if not suspects:
                break
            still = await self.recheck(suspects, known_extra)
            if still is None:
                return self._missing(report)
            shrunk = len(still) < len(suspects)
            suspects = still
            if not shrunk:
                break
        self.final = suspects
        self.known_extra = known_extra
        for item_id, diff in sorted(suspects.items()):
            if diff.kind is not None:
                kinds: list[str] = getattr(report, diff.kind)
                kinds.append(item_id)
            report.index_missing += [(item_id, s) for s, _ in diff.index_missing]
            report.index_extra += [(item_id, s) for s, _ in diff.index_extra]
        report.seconds = time.monotonic() - started
        return report

    def _missing(self, report: VerifyReport) -> VerifyReport:
        report.read_model_missing = True
        report.missing_partitions = self.missing_partitions
        self.final = {}
        return report

    # -- repair ------------------------------------------------------------------------------

    async def repair(self, out: Callable[[str], None]) -> int:
        script = self.redis.register_script(REPAIR)
        repaired = 0
        known_extra = self.known_extra
        ids = list(self.final.items())
        for start in range(0, len(ids), self.batch):
            chunk = ids[start : start + self.batch]
            rows = await self.rows([i for i, _ in chunk])
            for item_id, diff in chunk:
                done = await self._repair_one(
                    script, item_id, diff, rows.get(item_id), known_extra.get(item_id, [])
                )
                if done:
                    repaired += 1
                else:
                    out(f"item {item_id} changed while repairing; left to the projector")
        return repaired

    async def _repair_one(
        self,
        script: AsyncScript,
        item_id: str,
        diff: _Diff,
        row: asyncpg.Record | None,
        extra: list[tuple[str, str]],
    ) -> bool:
        p = diff.partition
        generation = self.gens[p]
        base = self.layout.base(p, generation)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(base + view_suffix(item_id))
            pipe.hget(base + "ver", item_id)
            data, raw_version = await pipe.execute()
        old_version = int(raw_version) if raw_version is not None else 0
        removes = set(_old_members(data).items()) | set(extra) | set(diff.index_extra)
        adds: list[tuple[str, str]] = []
        if row is not None:
            view = views.item_view(_item(row))
            new_data: bytes = views.render(view)
            new_version = str(row["version"])
            adds = sorted(index_members(view).items())
            removes -= set(adds)
        else:
            new_data = b""
            if old_version == 0 and data is not None:
                try:
                    old_version = int(views.parse(data)["version"])
                except (orjson.JSONDecodeError, ValueError, KeyError, TypeError):
                    old_version = 0
            new_version = str(-abs(old_version)) if old_version else ""
        args: list[str | bytes | int] = [
            base,
            generation,
            item_id,
            b"" if raw_version is None else raw_version,
            "0" if data is None else "1",
            b"" if data is None else data,
            new_version,
            new_data,
            self.layout.checkpoint_channel,
            p,
            len(removes),
        ]
        for suffix, member in sorted(removes):
            args += [suffix, member]
        args.append(len(adds))
        for suffix, member in adds:
            args += [suffix, member]
        result = await script(keys=[self.layout.gen(p)], args=args)
        return int(result) == 1


def _classify(
    want: tuple[bytes, int, dict[str, str]] | None, data: bytes | None, version: int
) -> str | None:
    if want is None:
        return "extra" if data is not None or version > 0 else None
    expected, expected_version, _ = want
    if data is None:
        return "missing"
    if data == expected and version == expected_version:
        return None
    try:
        view = views.parse(data)
    except (orjson.JSONDecodeError, ValueError):
        return "corrupt"
    if view.get("version") != expected_version or version != expected_version:
        return "stale"
    return "corrupt"


async def verify(
    container: Container,
    *,
    repair: bool = False,
    wait: float = 30.0,
    batch: int = 1000,
    out: Callable[[str], None] = lambda _line: None,
) -> VerifyReport:
    """Compare the read model with PostgreSQL (see the module docstring); with `repair`,
    rewrite what differs and compare again (the result is in `after_repair`).

    Raises VerifyTimeout when the projection does not reach the head within `wait`
    seconds. `out` receives progress lines; `report.summary()` has the findings."""
    database_url, _ = container.settings.require_urls()
    conn = await asyncpg.connect(asyncpg_dsn(database_url), timeout=10)
    try:
        verifier = _Verifier(container, conn, wait, batch)
        out("waiting for the projection to reach the head of the event log")
        report = await verifier.run()
        out(f"checked {report.checked} item(s) in {report.seconds:.1f}s")
        if not repair or not report.differences or report.read_model_missing:
            return report
        out("repairing")
        report.repaired = await verifier.repair(out)
        out(f"repaired {report.repaired} item(s); verifying again")
        report.after_repair = await _Verifier(container, conn, wait, batch).run()
        return report
    finally:
        await conn.close()
