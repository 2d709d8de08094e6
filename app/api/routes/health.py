"""Liveness and readiness, for orchestrators and operators."""

from __future__ import annotations

import os
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel
from starlette.responses import JSONResponse, Response

from app.api.openapi import responses
from app.api.problems import problem
from app.api.routes.options import add_options
from app.api.state import ReadinessDep

router = APIRouter(tags=["health"])


class Alive(BaseModel):
    status: Literal["ok"]
    pid: int  # the process that answered: one of several with `items serve --workers N`


class Ready(BaseModel):
    status: Literal["ready"]
    checks: dict[str, str]


@router.get("/healthz", response_model=Alive)
async def healthz() -> dict[str, str | int]:
    """The process is up. Says nothing about PostgreSQL or Redis."""
    return {"status": "ok", "pid": os.getpid()}


@router.get("/readyz", response_model=Ready, responses=responses(503))
async def readyz(readiness: ReadinessDep) -> Response:
    """Ready to serve: PostgreSQL and Redis answer, the read model is live and, when
    this process runs the projector, it has caught up with what was written before the
    start. 503 names each failed check."""
    checks = await readiness.checks()
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


add_options(router)
