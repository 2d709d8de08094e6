"""Alembic, run from the code: the schema is created only by the migrations in
migrations/ (next to the app/ folder), whose tables.py describes the result.

Alembic (and SQLAlchemy under it) is imported only when a migration runs: the two take
about 0.6 s to import, and every process that wires the service (the projector child
above all, whose start the API waits for) would pay them for nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alembic.config import Config

ROOT = Path(__file__).resolve().parents[3]


def alembic_config(database_url: str) -> Config:
    from alembic.config import Config

    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.attributes["database_url"] = database_url
    return cfg


def migrate(database_url: str, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(database_url), revision)
