"""Recovery time per fault: how long reads, writes and token reads kept failing (503, 500
or no answer) after the fault had ended. Pure, like the checker.

For a fault that ended at `end`, with the next one starting at `next` (or the run
ending), it is the completion of the last failed operation invoked after `end` and
answered before `next`, minus `end`; 0 when none failed. Operations invoked before
`end` met the fault itself and do not count. `censored` marks a recovery that lasted
until the next fault: it was at least that long; `overlapped`, a fault during which
another began (a rebuild, the dead-letter drill: they run in the background), whose
recovery cannot be told from the other's.
"""

from __future__ import annotations

from dataclasses import dataclass

from tests.history.history import READS, WRITES, Fault, History, Op


@dataclass(frozen=True)
class Recovery:
    fault: Fault
    failed_during: int  # operations that failed while the fault was in force
    reads: float
    writes: float
    token_reads: float
    window: float  # how long there was to recover in before the next fault
    censored: bool
    overlapped: bool = False  # another fault started while this one was in force

    @property
    def worst(self) -> float:
        return max(self.reads, self.writes, self.token_reads)


def _last_failure(ops: list[Op], end: float) -> float:
    failed = [op.complete for op in ops if op.failed]
    return max(failed) - end if failed else 0.0


def recoveries(h: History) -> list[Recovery]:
    faults = sorted(h.faults, key=lambda f: f.start)
    found = []
    for fault in faults:
        # Until the next fault injected after this one ended (a background fault, a
        # rebuild, may have others start while it runs).
        until = min([f.start for f in faults if f.start > fault.end] + [h.seconds])
        after = [op for op in h.ops if fault.end <= op.invoke and op.complete < until]
        during = sum(1 for op in h.ops if fault.start <= op.invoke < fault.end and op.failed)
        reads = _last_failure([op for op in after if op.f in READS], fault.end)
        writes = _last_failure([op for op in after if op.f in WRITES], fault.end)
        tokens = _last_failure([op for op in after if op.f in READS and op.token], fault.end)
        window = until - fault.end
        worst = max(reads, writes, tokens)
        # What fails after it may be another's doing: a background fault (a rebuild)
        # during which a kill or a cut began says nothing of its own recovery.
        others = [f for f in faults if f is not fault and fault.start <= f.start <= fault.end]
        found.append(
            Recovery(
                fault, during, reads, writes, tokens, window, worst >= window - 0.5, bool(others)
            )
        )
    return found
