"""The timeline of a history run, as a PNG: per setup, throughput (answers per second),
failures (503, 500 or no answer) and the projection's lag in events, with each fault
shaded and named."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: files only

import matplotlib.pyplot as plt  # noqa: E402

from tests.history.history import History  # noqa: E402

BIN = 0.5  # seconds per point


def timeline(histories: list[History], path: Path) -> None:
    fig, axes = plt.subplots(len(histories), 1, figsize=(11, 3.2 * len(histories)), squeeze=False)
    for ax, h in zip(axes[:, 0], histories, strict=True):
        ok: Counter[int] = Counter()
        failed: Counter[int] = Counter()
        for op in h.ops:
            (failed if op.failed else ok)[int(op.complete / BIN)] += 1
        bins = range(int(h.seconds / BIN) + 1)
        xs = [b * BIN for b in bins]
        ax.plot(xs, [ok[b] / BIN for b in bins], color="tab:blue", lw=1, label="answers/s")
        ax.plot(xs, [failed[b] / BIN for b in bins], color="tab:red", lw=1, label="failed/s")
        ax.set_ylabel("operations/s")
        ax.set_xlim(0, h.seconds)
        lag = ax.twinx()
        lag.plot(
            [t for t, _, _ in h.samples],
            [head - cp for _, head, cp in h.samples],
            color="tab:green",
            lw=1,
            label="lag (events)",
        )
        lag.set_ylabel("projection lag (events)")
        lag.set_ylim(bottom=0)
        top = ax.get_ylim()[1]
        for n, f in enumerate(h.faults):
            ax.axvspan(f.start, max(f.end, f.start + 0.15), color="orange", alpha=0.3)
            ax.text(f.start, top * (0.97 - 0.09 * (n % 3)), f.name, fontsize=7, va="top")
        ax.set_title(
            f"setup {h.setup}: {len(h.ops)} operations, {len(h.faults)} faults", fontsize=9
        )
        handles = ax.get_legend_handles_labels()[0] + lag.get_legend_handles_labels()[0]
        ax.legend(handles=handles, loc="lower right", fontsize=7)
    axes[-1, 0].set_xlabel("seconds since the start of the run")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
