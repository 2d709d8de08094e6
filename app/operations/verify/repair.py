"""`items verify --repair`: rewrite from PostgreSQL what the comparison found different.

One guarded Lua step per item (RedisVerifyStore.repair): it writes only if the view and
`ver` entry are still what was read just before, so a projector write in between is
never overwritten; such an item is left to the projector, and the re-verify tells.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from app.operations.progress import OnProgress, Progress
from app.operations.verify.compare import Verifier
from app.operations.verify.diff import Diff, expected
from app.queries import views
from app.queries.views import index_members


def _old_members(data: bytes | None) -> dict[str, str]:
    """The index entries an existing view accounts for ({} if it cannot be read)."""
    if data is None:
        return {}
    try:
        return index_members(views.parse(data))
    except (orjson.JSONDecodeError, ValueError, KeyError, TypeError, AssertionError):
        return {}


async def repair(verifier: Verifier, progress: OnProgress) -> int:
    """Repair what `verifier.run()` left in `final`; the number of items rewritten."""
    repaired = 0
    ids = list(verifier.final.items())
    for start in range(0, len(ids), verifier.batch):
        chunk = ids[start : start + verifier.batch]
        rows = await verifier.rows([i for i, _ in chunk])
        for item_id, diff in chunk:
            extra = verifier.known_extra.get(item_id, [])
            if await _repair_one(verifier, item_id, diff, rows.get(item_id), extra):
                repaired += 1
            else:
                progress(Progress("verify.changed-while-repairing", item=item_id))
    return repaired


async def _repair_one(
    verifier: Verifier,
    item_id: str,
    diff: Diff,
    row: Mapping[str, Any] | None,
    extra: list[tuple[str, str]],
) -> bool:
    p = diff.partition
    generation = verifier.gens[p]
    seen = await verifier.store.current(p, generation, item_id)
    data, raw_version = seen
    old_version = int(raw_version) if raw_version is not None else 0
    removes = set(_old_members(data).items()) | set(extra) | set(diff.index_extra)
    adds: list[tuple[str, str]] = []
    if row is not None:
        new_data, version, members = expected(row)
        new_version = str(version)
        adds = sorted(members.items())
        removes -= set(adds)
    else:
        new_data = b""
        if old_version == 0 and data is not None:
            try:
                old_version = int(views.parse(data)["version"])
            except (orjson.JSONDecodeError, ValueError, KeyError, TypeError):
                old_version = 0
        new_version = str(-abs(old_version)) if old_version else ""
    return await verifier.store.repair(
        p, generation, item_id, seen, new_version, new_data, sorted(removes), adds
    )
