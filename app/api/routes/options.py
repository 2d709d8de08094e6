"""OPTIONS on every path of a router: 204 with the path's `Allow` (app/api/methods.py).

Served but not documented as operations: OPTIONS is the framework's business in the
OpenAPI sense (schemathesis treats it as implicit, as client generators do), and it
says nothing about a resource, only about the path.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.responses import Response

from app.api import methods


def add_options(router: APIRouter) -> None:
    """An OPTIONS route on every path of the router (call it after its last route)."""
    served: dict[str, set[str]] = {}
    for route in router.routes:
        if isinstance(route, APIRoute) and route.include_in_schema:
            served.setdefault(route.path, set()).update(route.methods or ())
    for path, methods_served in served.items():
        if "OPTIONS" in methods_served:
            continue  # added already
        allow = methods.register(path, methods_served)
        router.add_api_route(
            path.removeprefix(router.prefix),  # the router adds its prefix back
            _options(allow),
            methods=["OPTIONS"],
            status_code=204,
            response_class=Response,
            include_in_schema=False,
        )


def add_path_options(router: APIRouter, path: str, served: set[str]) -> None:
    """OPTIONS for a path whose routes are not the router's own (GraphQL's)."""
    allow = methods.register(path, served)
    router.add_api_route(
        path,
        _options(allow),
        methods=["OPTIONS"],
        status_code=204,
        response_class=Response,
        include_in_schema=False,
    )


def _options(allow: str) -> Callable[..., Coroutine[Any, Any, Response]]:
    async def options() -> Response:
        return Response(status_code=204, headers={"Allow": allow})

    return options
