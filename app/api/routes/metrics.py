"""GET /metrics: Prometheus' text format (app/metrics.py says what is counted where).

The projection's gauges are read at scrape time, from PostgreSQL and Redis, as
`items status` reads them: the same answer from every worker, and none of them kept in
sync by anyone. A store that cannot be read within SCRAPE_TIMEOUT leaves its gauges
out of that scrape (Prometheus marks them stale) and counts a store error; the
counters are always there.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter
from starlette.responses import Response

from app import metrics
from app.api.routes.options import add_options
from app.api.state import ContainerDep, TelemetryDep

log = logging.getLogger("items.api")
router = APIRouter(tags=["health"])

SCRAPE_TIMEOUT = 2.0  # seconds the projection's gauges may take to read


@router.get("/metrics", include_in_schema=False, response_class=Response)
async def scrape(c: ContainerDep, telemetry: TelemetryDep) -> Response:
    telemetry.flush()  # this process's counts of the last second, not left for the next
    try:
        found = await asyncio.wait_for(c.status(), SCRAPE_TIMEOUT)
    except Exception as exc:  # noqa: BLE001 - a scrape must answer whatever is down
        log.info("metrics: the projection's gauges are left out (%s)", exc)
        metrics.instance().store_errors.labels(_store(exc)).inc()
        found = None
    body, content_type = metrics.exposition([_Projection(found)] if found else [])
    return Response(body, media_type=content_type)


def _store(exc: BaseException) -> str:
    return "redis" if type(exc).__module__.startswith("redis") else "postgres"


class _Projection:
    """The gauges of one status snapshot (operations/status.py)."""

    def __init__(self, found: dict[str, Any]) -> None:
        self._found = found

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        def per_partition(name: str, doc: str, key: str) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, doc, labels=["partition"])
            for p in self._found["partitions"]:
                if p.get(key) is not None:
                    family.add_metric([str(p["partition"])], float(p[key]))
            return family

        yield per_partition(
            "items_projection_checkpoint",
            "Last event position applied to the partition's live generation.",
            "checkpoint",
        )
        yield per_partition(
            "items_projection_lag_events",
            "Events in the log past the partition's checkpoint.",
            "lag_events",
        )
        yield per_partition(
            "items_projection_lag_seconds",
            "Age of the oldest event past the partition's checkpoint (0 when caught up).",
            "lag_seconds",
        )
        owned = GaugeMetricFamily(
            "items_projection_partition_owned",
            "1 when a live projector holds the partition's lease, else 0.",
            labels=["partition"],
        )
        for p in self._found["partitions"]:
            owned.add_metric([str(p["partition"])], 1.0 if p.get("owner") else 0.0)
        yield owned
        yield GaugeMetricFamily(
            "items_projection_head", "Position of the latest event in the log.",
            value=float(self._found["head_position"]),
        )  # fmt: skip
        yield GaugeMetricFamily(
            "items_dead_letters",
            "Events the projector could not apply, waiting for `items dead-letters retry`.",
            value=float(self._found["dead_letters"]),
        )


add_options(router)
