"""/api/v1/admin: operator-only endpoints (app/api/auth.py asks them for a key)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter
from starlette.responses import Response

from app.api.openapi import responses
from app.api.routes.options import add_options
from app.api.state import ContainerDep

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])

_PROJECTION_EXAMPLE: dict[str, Any] = {
    "head_position": 42,
    "checkpoint": 42,
    "lag_events": 0,
    "lag_seconds": 0.0,
    "read_model": "live",
    "layout": {"name": "", "partitions": 1},
    "partitions": [
        {
            "partition": 0,
            "generation": "g1796140000000000",
            "checkpoint": 42,
            "restoring": False,
            "restore_generation": None,
            "restore_checkpoint": None,
            "rebuilding": False,
            "rebuild_generation": None,
            "rebuild_checkpoint": None,
            "lag_events": 0,
            "epoch": 7,
            "owner": {
                "pid": 4242,
                "host": "api-1",
                "member": "api-1:4242:5f3a9c1e",
                "since": "2026-11-28T09:30:00.123456+00:00",
                "lease_until": "2026-11-28T09:41:05.000000+00:00",
            },
        }
    ],
    "owned_partitions": 1,
    "projectors": 1,
    "dead_letters": 0,
    "view_cache": {
        "enabled": True,
        "entries": 1200,
        "bytes": 912000,
        "max_bytes": 67108864,
        "hits": 50000,
        "misses": 1300,
    },
    "page_cache": {
        "entries": 40,
        "bytes": 180000,
        "max_bytes": 8388608,
        "hits": 90000,
        "misses": 700,
    },
}


@router.get(
    "/projection",
    response_class=Response,
    responses={
        200: {
            "description": "Where the projection stands",
            "content": {
                "application/json": {
                    "schema": {"type": "object"},
                    "example": _PROJECTION_EXAMPLE,
                }
            },
        },
        **responses(503),
    },
)
async def projection_status(c: ContainerDep) -> Response:
    """Where the projection stands, as `items status --json` prints it: head of the
    event log, per-partition generation and checkpoint, restores and rebuilds in
    progress, lag in events and seconds, each partition's owner and epoch, dead letters, and
    this process's view and list page caches (entries, bytes, hits, misses)."""
    found = await c.status()
    # This process's caches (each API process has its own).
    found["view_cache"] = c.view_cache.stats()
    found["page_cache"] = c.page_cache.stats()
    return Response(orjson.dumps(found, default=str), media_type="application/json")


add_options(router)
