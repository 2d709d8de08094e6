"""What `items verify` found: the kinds of difference, by item, and whether the read
model matches PostgreSQL (after the repair, if one ran). Worded by app/cli/verify.py."""

from __future__ import annotations

from dataclasses import dataclass, field


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
