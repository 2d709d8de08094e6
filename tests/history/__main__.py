"""`make history` (`.venv/bin/python -m tests.history`): both setups, one after the other,
each on a database and a Redis of its own, under load and the fault schedule; then the
report, the history file (JSON lines), the timeline (PNG). Exit 1 when any guarantee was
broken.

    HISTORY_SECONDS   seconds of load per setup (60)
    HISTORY_SEED      replay a run: the same sessions' choices and fault order (random)
    HISTORY_SETUPS    single,workers
    HISTORY_DIR       where the history, the logs and the PNG go (a new temporary folder)
    HISTORY_DATABASE_URL  an admin URL of a PostgreSQL to make the run's databases on
                      (else an embedded one in HISTORY_DIR)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path

from tests.history import faults
from tests.history.plot import timeline
from tests.history.report import Result, analyse, lines
from tests.history.runner import run_setup
from tests.servers import own_database


def main(argv: list[str] | None = None) -> int:
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="history", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=float(env("HISTORY_SECONDS", "60")))
    parser.add_argument(
        "--seed", type=int, default=int(env("HISTORY_SEED") or random.randrange(10**6))
    )
    parser.add_argument("--setups", default=env("HISTORY_SETUPS", "single,workers"))
    parser.add_argument("--faults", default=",".join(faults.FAULTS))
    parser.add_argument("--dir", default=env("HISTORY_DIR"))
    parser.add_argument(
        "--png", help="also copy the timeline here (make history: docs/history.png)"
    )
    args = parser.parse_args(argv)
    root = Path(args.dir or tempfile.mkdtemp(prefix="items-history-"))
    root.mkdir(parents=True, exist_ok=True)
    admin = env("HISTORY_DATABASE_URL")
    if not admin:
        from app.infrastructure.embedded import start_postgres

        admin = start_postgres(root)
    chosen = tuple(f for f in args.faults.split(",") if f)
    results: list[Result] = []
    with (root / "history.jsonl").open("w") as out:
        for setup in args.setups.split(","):
            with own_database(admin) as url:
                history = asyncio.run(
                    run_setup(
                        setup,
                        url,
                        root / setup,
                        seconds=args.seconds,
                        seed=args.seed,
                        faults=chosen,
                    )
                )
            history.write(out)  # as each setup ends: a later failure keeps it
            out.flush()
            results.append(analyse(history))
    timeline([r.history for r in results], root / "history.png")
    if args.png:
        shutil.copyfile(root / "history.png", args.png)
    report = lines(results)
    report.insert(
        -1,
        f"files: {root}/history.jsonl, {root}/history.png, logs in {root}/<setup>/; "
        f"replay: HISTORY_SEED={args.seed}",
    )
    sys.stdout.write("\n".join(report) + "\n")
    return 1 if any(r.violations for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
