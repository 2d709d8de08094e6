"""Which methods a path serves, said the same way everywhere (RFC 9110 §9.3.7, §15.5.6).

OPTIONS on every path answers 204 with `Allow` naming exactly the methods the path
serves (OPTIONS included: routes/options.py adds those routes), and a method the path
does not serve gets 405 with the same `Allow` (problems.py asks `allowed`). Starlette
alone would name only the methods of the first route that matched the path (GET, say,
where POST is served too): each path is one route per method here.
"""

from __future__ import annotations

import re

from starlette.routing import compile_path
from starlette.types import Scope

# Every path of the API, as the pattern that matches it, and its Allow.
_ALLOW: dict[str, tuple[re.Pattern[str], str]] = {}


def register(path: str, methods: set[str]) -> str:
    """Record the methods `path` serves (OPTIONS added); returns its Allow."""
    allow = ", ".join(sorted(methods | {"OPTIONS"}))
    _ALLOW[path] = (compile_path(path)[0], allow)
    return allow


def allowed(scope: Scope) -> str | None:
    """The `Allow` of the request's path, if it is one of the API's paths."""
    path: str = scope["path"]
    for pattern, allow in _ALLOW.values():
        if pattern.match(path):
            return allow
    return None
