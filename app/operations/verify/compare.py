"""Comparing the read model with PostgreSQL, item by item and index by index.

1. Read the head H of the event log, then wait (bounded) until every partition's live
   checkpoint has reached H, so ordinary projection lag is never reported as drift.
2. Stream the item rows in id order (keyset batches) and compare each with its view, its
   `ver` entry and its list-index entries, a pipeline per batch and partition.
3. Scan each partition's generation for views and `ver` entries of ids PostgreSQL does
   not have (extras), and for index entries that no live item accounts for: an index
   whose size is more than the expected entries found in it is scanned entry by entry.
4. Everything that differed is only a suspect: writes racing the run look like drift.
   Suspects are checked again, after the projection has reached the then-current head,
   until the set stops shrinking; only what still differs is reported.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Mapping
from typing import Any
from uuid import UUID

from app.infrastructure.postgres import items_reader
from app.infrastructure.postgres.event_log import PgEventLog
from app.infrastructure.postgres.pool import Connection, Row
from app.infrastructure.redis.verify_store import RedisVerifyStore, view_id
from app.operations.verify.diff import Diff, Expected, classify, expected
from app.operations.verify.report import VerifyReport, VerifyTimeout
from app.queries.views import ID_LENGTH, is_index, member_id

POLL = 0.05
MAX_RECHECKS = 3


def _is_uuid(value: str) -> bool:
    try:
        UUID(value)
    except ValueError:
        return False
    return len(value) == ID_LENGTH


class Verifier:
    def __init__(self, store: RedisVerifyStore, conn: Connection, wait: float, batch: int) -> None:
        self.store = store
        self.layout = store.layout
        self.log = PgEventLog(conn)
        self.conn = conn
        self.wait = wait
        self.batch = batch
        self.gens: dict[int, str] = {}
        self.missing_partitions: list[int] = []
        self.final: dict[str, Diff] = {}  # what still differed at the end of run()
        self.known_extra: dict[str, list[tuple[str, str]]] = {}

    async def rows(self, ids: list[str]) -> dict[str, Row]:
        return await items_reader.rows_by_id(self.conn, [i for i in ids if _is_uuid(i)])

    # -- waiting for the projection --------------------------------------------------------

    async def wait_for(self, position: int) -> bool:
        """Wait until every live checkpoint is at `position`; False when a partition has
        no live generation (the read model is missing)."""
        deadline = time.monotonic() + self.wait
        partitions = range(self.layout.partitions)
        while True:
            gens, cps = await self.store.positions()
            if len(gens) < len(partitions):
                self.missing_partitions = [p for p in partitions if p not in gens]
                return False
            low = min(cps)
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
        rows: Mapping[str, Mapping[str, Any] | None],
        known_extra: dict[str, list[tuple[str, str]]],
        present: dict[tuple[int, str], int] | None = None,
    ) -> dict[str, Diff]:
        """Compare items of one partition: `rows` maps each id to its row (None: not in
        PostgreSQL); `known_extra` names index entries to check for being still there."""
        ids = list(rows)
        want: dict[str, Expected] = {}
        for item_id, row in rows.items():
            # A row counts only in its own partition: a view elsewhere is an extra.
            if row is not None and self.layout.partition_of(item_id) == partition:
                want[item_id] = expected(row)
        wanted: dict[str, list[tuple[str, str]]] = defaultdict(list)  # index -> (id, entry)
        for item_id, (_, _, members) in want.items():
            for index, member in members.items():
                wanted[index].append((item_id, member))
        doubtful: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for item_id, pairs in known_extra.items():
            for index, member in pairs:
                doubtful[index].append((item_id, member))
        asked = [(i, [m for _, m in pairs]) for i, pairs in (*wanted.items(), *doubtful.items())]
        stored = await self.store.read(partition, self.gens[partition], ids, asked)
        diffs = {i: Diff(partition) for i in ids}
        for item_id, data, raw_version in zip(ids, stored.views, stored.versions, strict=True):
            version = int(raw_version) if raw_version is not None else 0
            diffs[item_id].kind = classify(want.get(item_id), data, version)
        scores = iter(stored.scores)
        for index, pairs in wanted.items():
            for (item_id, member), score in zip(pairs, next(scores), strict=True):
                if score is None:
                    diffs[item_id].index_missing.append((index, member))
                elif present is not None:
                    present[(partition, index)] += 1
        for index, pairs in doubtful.items():
            for (item_id, member), score in zip(pairs, next(scores), strict=True):
                item = want.get(item_id)
                if score is not None and (item is None or item[2].get(index) != member):
                    diffs[item_id].index_extra.append((index, member))
        return {i: d for i, d in diffs.items() if d.differs}

    async def scan_extras(self, partition: int, suspects: dict[str, Diff]) -> list[str]:
        """Views and live `ver` entries of ids PostgreSQL does not have; returns the
        names of the generation's indexes."""
        generation = self.gens[partition]
        indexes: list[str] = []
        pending: list[str] = []

        async def flush() -> None:
            ids = [i for i in dict.fromkeys(pending) if i not in suspects]
            pending.clear()
            if not ids:
                return
            known = await self.rows(ids)
            for item_id in ids:
                if item_id not in known or self.layout.partition_of(item_id) != partition:
                    suspects[item_id] = Diff(partition, kind="extra")

        async for suffix in self.store.keys(partition, generation, self.batch):
            item_id = view_id(suffix)
            if item_id is not None:
                pending.append(item_id)
            elif is_index(suffix):
                indexes.append(suffix)
            if len(pending) >= self.batch:
                await flush()
        async for item_id in self.store.live_versions(partition, generation, self.batch):
            pending.append(item_id)
            if len(pending) >= self.batch:
                await flush()
        await flush()
        return indexes

    async def scan_index(
        self,
        partition: int,
        index: str,
        suspects: dict[str, Diff],
        extra: dict[str, set[tuple[str, str]]],
    ) -> None:
        """Entries of one index that no live item accounts for."""
        chunk: list[str] = []

        async def flush() -> None:
            rows = await self.rows([member_id(m) for m in chunk])
            for member in chunk:
                item_id = member_id(member)
                row = rows.get(item_id)
                want = None
                if row is not None and self.layout.partition_of(item_id) == partition:
                    want = expected(row)[2].get(index)
                if member != want:
                    suspects.setdefault(item_id, Diff(partition))
                    extra[item_id].add((index, member))
            chunk.clear()

        generation = self.gens[partition]
        async for member in self.store.index_entries(partition, generation, index, self.batch):
            chunk.append(member)
            if len(chunk) >= self.batch:
                await flush()
        if chunk:
            await flush()

    async def recheck(
        self, suspects: dict[str, Diff], known_extra: dict[str, list[tuple[str, str]]]
    ) -> dict[str, Diff] | None:
        """Check the suspects again once the projection has caught up with the current
        head; None if the read model went missing meanwhile."""
        if not await self.wait_for(await self.log.head()):
            return None
        by_partition: dict[int, list[str]] = defaultdict(list)
        for item_id, diff in suspects.items():
            by_partition[diff.partition].append(item_id)
        still: dict[str, Diff] = {}
        for partition, ids in by_partition.items():
            for start in range(0, len(ids), self.batch):
                chunk = ids[start : start + self.batch]
                found = await self.rows(chunk)
                rows = {i: found.get(i) for i in chunk}
                extra = {i: known_extra[i] for i in chunk if i in known_extra}
                still.update(await self.check(partition, rows, extra))
        return still

    # -- one full run ------------------------------------------------------------------------

    async def run(self) -> VerifyReport:
        started = time.monotonic()
        report = VerifyReport(head=await self.log.head())
        if not await self.wait_for(report.head):
            return self._missing(report)
        suspects: dict[str, Diff] = {}
        present: dict[tuple[int, str], int] = defaultdict(int)
        async for batch in items_reader.row_batches(self.conn, self.batch):
            report.checked += len(batch)
            by_partition: dict[int, dict[str, Row | None]] = defaultdict(dict)
            for row in batch:
                by_partition[self.layout.partition_of(row["id"])][str(row["id"])] = row
            for partition, rows in by_partition.items():
                suspects.update(await self.check(partition, rows, {}, present))
        extra_members: dict[str, set[tuple[str, str]]] = defaultdict(set)
        for partition in range(self.layout.partitions):
            indexes = await self.scan_extras(partition, suspects)
            if not indexes:
                continue
            sizes = await self.store.index_sizes(partition, self.gens[partition], indexes)
            for index, size in zip(indexes, sizes, strict=True):
                if size > present[(partition, index)]:
                    await self.scan_index(partition, index, suspects, extra_members)
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
