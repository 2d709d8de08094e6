"""Request-scoped access to the parts the composition root built."""

from typing import Annotated

from fastapi import Depends, Request

from app.infrastructure.bootstrap import Container


# async: FastAPI runs a plain `def` dependency in its thread pool, a thread hop on every
# request for one attribute read.
async def get_container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


ContainerDep = Annotated[Container, Depends(get_container)]
