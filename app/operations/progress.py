"""How a long operator command says where it is: a value per step, worded by the CLI."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    stage: str  # what is happening, a stable name each operation documents
    done: int = 0  # items (or events) handled so far
    total: int | None = None  # out of, when known
    seconds: float = 0.0  # since the stage began
    item: str | None = None  # the one item a stage is about


OnProgress = Callable[[Progress], None]


def ignore(_: Progress) -> None:
    """For callers that show nothing."""
