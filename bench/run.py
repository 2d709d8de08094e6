"""`python bench/run.py [--smoke] [--results-dir DIR]`: what `make bench`, `make bench-smoke`
and tests/test_bench_smoke.py run. A script, so that it runs from a checkout as is; the
bench itself is the package beside it (bench/__init__.py says what a run measures)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Run as a script, Python puts bench/ itself first on sys.path, where the package's modules
# (config, report, ...) would shadow any top-level module of the same name. They are
# imported as the package `bench` from the repo root instead, which also finds `app`.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.main import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
