"""bench/pgbench.py's scripts are the write side's own statements: every parameter of
them becomes a pgbench variable or an expression, none is left as `$n` (pgbench would
send it unbound), and the values are PostgreSQL's text forms."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from app.infrastructure.postgres import repositories as sql
from bench import pgbench


def test_every_parameter_of_every_script_is_bound() -> None:
    for script in (pgbench.post_script(keyed=False), pgbench.post_script(keyed=True),
                   pgbench.patch_script(100)):  # fmt: skip
        text = "\n".join(script.lines)
        assert not re.search(r"\$\d", text), text
        for name in re.findall(r":(p\d+)\b", text):
            assert name in script.variables, name


def test_the_create_is_the_services_statement_alone() -> None:
    script = pgbench.post_script(keyed=False)
    assert len(script.lines) == 1  # no BEGIN/COMMIT: one statement, its own transaction
    assert script.lines[0].startswith("WITH item AS (INSERT INTO items")
    assert "ItemCreated" in script.variables.values()


def test_the_keyed_create_and_the_patch_are_one_transaction_each() -> None:
    keyed = pgbench.post_script(keyed=True).lines
    assert keyed[1] == "BEGIN;"
    assert keyed[-1] == "COMMIT;"
    assert any("idempotency_keys" in line for line in keyed)
    patch = pgbench.patch_script(100).lines
    assert patch[1] == "BEGIN;"
    assert patch[-1] == "COMMIT;"
    assert patch[2].endswith(r"FOR UPDATE \gset")
    assert "version = :nv" in patch[4]


def test_values_take_their_postgresql_text_form() -> None:
    at = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    assert pgbench.text(["t1", "wrk"]) == "{t1,wrk}"
    assert pgbench.text(at) == "2026-12-06T12:00:00+00:00"
    assert pgbench.text(b"\x01\xff") == "\\x01ff"
    assert pgbench.text(sql.KEY_TTL) == "86400 seconds"
    assert pgbench.text(timedelta(seconds=1.5)) == "1.5 seconds"
