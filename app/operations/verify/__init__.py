"""`items verify [--repair]`: compare every item in PostgreSQL with its Redis view
(compare.py), rewrite what differs (repair.py), and say what was found (report.py).

Progress stages: "verify.waiting" (for the projection to reach the head), "verify.compared"
(done: items compared, seconds), "verify.repairing" (total: items to repair),
"verify.changed-while-repairing" (item: left to the projector), "verify.repaired"
(done: items rewritten; the comparison then runs again).
"""

from __future__ import annotations

from app.infrastructure.postgres.pool import own_connection
from app.infrastructure.redis.verify_store import RedisVerifyStore
from app.operations.progress import OnProgress, Progress, ignore
from app.operations.verify.compare import Verifier
from app.operations.verify.repair import repair as repair_found
from app.operations.verify.report import VerifyReport, VerifyTimeout

__all__ = ["VerifyReport", "VerifyTimeout", "verify"]

CONNECT_TIMEOUT = 10.0


async def verify(
    dsn: str,
    store: RedisVerifyStore,
    *,
    repair: bool = False,
    wait: float = 30.0,
    batch: int = 1000,
    progress: OnProgress = ignore,
) -> VerifyReport:
    """Compare the read model with PostgreSQL (compare.py); with `repair`, rewrite what
    differs and compare again (the result is in `after_repair`).

    Raises VerifyTimeout when the projection does not reach the head within `wait`
    seconds."""
    async with own_connection(dsn, CONNECT_TIMEOUT) as conn:
        verifier = Verifier(store, conn, wait, batch)
        progress(Progress("verify.waiting"))
        report = await verifier.run()
        progress(Progress("verify.compared", done=report.checked, seconds=report.seconds))
        if not repair or not report.differences or report.read_model_missing:
            return report
        progress(Progress("verify.repairing", total=len(verifier.final)))
        report.repaired = await repair_found(verifier, progress)
        progress(Progress("verify.repaired", done=report.repaired))
        report.after_repair = await Verifier(store, conn, wait, batch).run()
        return report
