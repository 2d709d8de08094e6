"""What the lifespan builds, typed: the one container of a running app.

The lifespan (app.py) yields a `State`; Starlette hands a copy of it to every request
(`request.state`, `scope["state"]`). These accessors are the only reads of it, so the
rest of the API sees a typed Container and never an attribute of Any.
"""

from __future__ import annotations

from typing import Annotated, NotRequired, TypedDict

from fastapi import Depends, Request
from starlette.types import Scope

from app.api.observe import Telemetry
from app.bootstrap import Container
from app.bootstrap.readiness import Readiness


class State(TypedDict):
    container: Container
    readiness: Readiness
    telemetry: NotRequired[Telemetry]


def scope_container(scope: Scope) -> Container:
    """The container of the app serving this ASGI scope (for pure ASGI middleware)."""
    container: Container = scope["state"]["container"]
    return container


# async: FastAPI runs a plain `def` dependency in its thread pool, a thread hop on every
# request for one attribute read.
async def get_container(request: Request) -> Container:
    return scope_container(request.scope)


async def get_readiness(request: Request) -> Readiness:
    readiness: Readiness = request.scope["state"]["readiness"]
    return readiness


async def get_telemetry(request: Request) -> Telemetry:
    telemetry: Telemetry = request.scope["state"].get("telemetry") or Telemetry(None, None)
    return telemetry


ContainerDep = Annotated[Container, Depends(get_container)]
TelemetryDep = Annotated[Telemetry, Depends(get_telemetry)]
ReadinessDep = Annotated[Readiness, Depends(get_readiness)]
