"""What the query side needs from the read model: the port its Redis adapter implements
(app/infrastructure/redis/read_model.py).

Each read resolves the live generation and reads from it in one atomic step, so a read
racing a generation switch sees the old or the new generation, never a mix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol
from uuid import UUID


@dataclass(frozen=True, slots=True)
class ViewRead:
    data: bytes | None
    checkpoint: int
    version: int  # negative when deleted, 0 when never seen
    partition: int = 0
    generation: str = ""  # the live generation the view was read from


@dataclass(frozen=True)
class IndexSlice:
    entries: list[tuple[bytes, bytes]]  # (index entry, view bytes), in page order
    total: int
    checkpoint: int  # the lowest of `reads`' checkpoints
    # (live generation, checkpoint) each partition was read at, in partition order:
    # what the page cache needs to judge the read (cache/pages.py).
    reads: tuple[tuple[str, int], ...] = ()


class ReadModel(Protocol):
    @property
    def layout_name(self) -> str:
        """The layout (set of partitions) read now; change notices name theirs."""

    def partition_of(self, item_id: UUID | str) -> int:
        """The read-model partition an item's view lives in."""

    async def follow_layout(self) -> bool:
        """Read which layout to follow again; True when it changed."""

    async def get(self, item_id: UUID | str) -> ViewRead:
        """The item's view (None when deleted or unknown) with its version and position;
        raises ReadModelUnavailable while a partition has no live generation."""

    async def positions(self) -> list[tuple[int, str | None, int]]:
        """(partition, live generation or None, its checkpoint) for every partition."""

    async def list(
        self, *, sort_field: str, descending: bool, tag: str | None, after: bytes | None, count: int
    ) -> IndexSlice:
        """Up to `count` entries after `after` (an index entry), merged across partitions."""

    async def ready(self) -> bool:
        """Every partition has a live generation."""
