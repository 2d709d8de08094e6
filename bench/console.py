"""The bench's printed lines. A run takes minutes and is watched as it goes, so every line
is flushed at once; `show` is the one line per measurement that the service and the
references print alike."""

from __future__ import annotations

import sys
from typing import Any


def say(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def show(name: str, m: dict[str, Any]) -> None:
    say(f"  {name:<22} {m['rps']:>10,.0f} rps  p50 {m['p50_ms']:8.2f} ms  "
        f"p99 {m['p99_ms']:8.2f} ms  errors {m['errors']}")  # fmt: skip
