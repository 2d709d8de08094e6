"""The history run of `make history` (tests/history), short: about 20 s of 16 sessions
and two cursor walkers against a real `items serve` on a PostgreSQL database and a Redis
of its own, while four faults hit them, then the checker over the whole history (every
rule of tests/history/checker.py) and the recovery after each fault. `make history`
runs both setups with every fault for longer."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from tests.history.report import analyse, lines
from tests.history.runner import run_setup
from tests.servers import own_database

SECONDS = 20.0
SEED = 18
FAULTS = ("pg-terminate-backend", "kill-projector", "redis-restart-empty", "pg-cut")


@pytest.mark.slow
def test_a_short_history_under_faults_breaks_no_guarantee(
    server_urls: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with own_database(server_urls[0]) as url:
        history = asyncio.run(
            run_setup(
                "single",
                url,
                tmp_path,
                seconds=SECONDS,
                seed=SEED,
                faults=FAULTS,
                hold=1.0,
                gap=2.5,
            )
        )
    result = analyse(history)
    with capsys.disabled():
        sys.stdout.write("\n" + "\n".join(lines([result])) + "\n")
    assert [str(v) for v in result.violations] == []
    assert len(history.faults) >= 3, history.faults
    assert not [
        op.id
        for op in history.ops
        if op.status is not None and op.status >= 500 and op.status != 503
    ]
    assert sum(op.ok for op in history.ops) > 500
