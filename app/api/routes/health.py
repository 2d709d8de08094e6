"""Liveness and readiness, for orchestrators and operators."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from starlette.responses import JSONResponse, Response

from app.api.problems import problem
from app.api.state import ContainerDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up. Says nothing about PostgreSQL or Redis."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(c: ContainerDep) -> Response:
    """Ready to serve: PostgreSQL and Redis answer and the read model is live.
    503 names each failed check."""

    async def postgres() -> str:
        await c.database.ping()
        return "ok"

    async def redis() -> str:
        await c.redis.ping()
        return "ok"

    async def read_model() -> str:
        return "ok" if await c.read_model.ready() else "missing: being restored"

    names = ("postgres", "redis", "read_model")
    results = await asyncio.gather(
        *(asyncio.wait_for(check(), 2.0) for check in (postgres, redis, read_model)),
        return_exceptions=True,
    )
    checks = {
        name: (r if isinstance(r, str) else f"failed: {type(r).__name__}: {r}".strip(": "))
        for name, r in zip(names, results, strict=True)
    }
    failed = [name for name, r in checks.items() if r != "ok"]
    if failed:
        return problem(
            503,
            "not ready: " + ", ".join(failed),
            slug="not-ready",
            headers={"Retry-After": "1"},
            checks=checks,
        )
    return JSONResponse({"status": "ready", "checks": checks})
