"""Every `items` process names itself in `ps` and `top`: `items: api`, `items: api
worker`, `items: projector`, `items: projector child`, `items: rebuild`, ... rather than
`python .venv/bin/items serve` or the spawned child's `python -c from multiprocessing...`.
"""

from __future__ import annotations

import setproctitle


def name(role: str) -> None:
    """This process is `items: <role>` from now on."""
    setproctitle.setproctitle(f"items: {role}")
