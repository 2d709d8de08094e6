"""What differs about one item between PostgreSQL and its view: the kind of difference
and the index entries missing or extra."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from app.infrastructure.postgres.repositories import item_from_row
from app.queries import views
from app.queries.views import index_members

Expected = tuple[bytes, int, dict[str, str]]  # a row's view bytes, version, index entries


@dataclass
class Diff:
    partition: int
    kind: str | None = None  # missing / extra / stale / corrupt
    index_missing: list[tuple[str, str]] = field(default_factory=list)  # (index, entry)
    index_extra: list[tuple[str, str]] = field(default_factory=list)

    @property
    def differs(self) -> bool:
        return bool(self.kind or self.index_missing or self.index_extra)


def expected(row: Mapping[str, Any]) -> Expected:
    view = views.item_view(item_from_row(row))
    return views.render(view), row["version"], index_members(view)


def classify(want: Expected | None, data: bytes | None, version: int) -> str | None:
    if want is None:
        return "extra" if data is not None or version > 0 else None
    expected_data, expected_version, _ = want
    if data is None:
        return "missing"
    if data == expected_data and version == expected_version:
        return None
    try:
        view = views.parse(data)
    except (orjson.JSONDecodeError, ValueError):
        return "corrupt"
    if view.get("version") != expected_version or version != expected_version:
        return "stale"
    return "corrupt"
