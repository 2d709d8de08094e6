"""What the lifespan builds, typed: the one container of a running app.

The lifespan (app.py) yields a `State`; Starlette hands a copy of it to every request
(`request.state`, `scope["state"]`). These accessors are the only reads of it, so the
rest of the API sees a typed Container and never an attribute of Any.
"""

from __future__ import annotations

from typing import Annotated, TypedDict

from fastapi import Depends, Request
from starlette.types import Scope

from app.api.readiness import Readiness
from app.bootstrap import Container


class State(TypedDict):
    container: Container
    readiness: Readiness


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


ContainerDep = Annotated[Container, Depends(get_container)]
ReadinessDep = Annotated[Readiness, Depends(get_readiness)]
