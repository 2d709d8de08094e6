"""`bench/run.py --smoke`: every part of `make bench` for a second or so, so it cannot rot.

Runs on the suite's own servers (embedded, or TEST_DATABASE_URL / TEST_REDIS_URL) unless
BENCH_DATABASE_URL / BENCH_REDIS_URL are set; skipped where wrk or taskset is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("BENCH_SHARED") or ROOT.parent / "shared" / "bench")

SERVICE = [
    "get_by_id",
    "list_20",
    "list_100",
    "list_20_tag",
    "list_100_tag",
    "post",
    "post_async",
    "patch",
    "patch_async",
    "mix_95_5",
]
REFERENCES = [
    "ref_bare_http",
    "ref_redis_get",
    "ref_peer_get_by_id",
    "ref_peer_list_20",
    "ref_peer_list_100",
    "ref_peer_post",
    "ref_peer_patch",
    "ref_peer_mix_95_5",
]


@pytest.mark.slow
def test_bench_smoke_measures_every_part(tmp_path: Path, server_urls: tuple[str, str]) -> None:
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not on PATH (Debian packages wrk, util-linux)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BENCH_")}
    env["BENCH_DATABASE_URL"], env["BENCH_REDIS_URL"] = server_urls
    for key in ("BENCH_DATABASE_URL", "BENCH_REDIS_URL", "BENCH_SHARED"):
        if key in os.environ:
            env[key] = os.environ[key]
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--smoke", "--results-dir", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    results = json.loads((tmp_path / "latest.json").read_text())
    assert "error" not in results

    expected = SERVICE + (REFERENCES if SHARED.is_dir() else [])
    measurements = results["measurements"]
    for name in expected:
        assert measurements[name]["rps"] > 0, name
        assert measurements[name]["p99_ms"] >= measurements[name]["p50_ms"] > 0, name
    if SHARED.is_dir():
        assert measurements["get_by_id"]["ratio_redis"] > 0
        assert measurements["get_by_id"]["ratio_peer"] > 0
    else:
        assert any("references skipped" in note for note in results["notes"])

    lag = results["projection_lag"]
    assert lag["samples"] > 0
    assert lag["p99_ms"] >= lag["p50_ms"] > 0

    rebuild = results["rebuild"]
    assert rebuild["items"] == results["settings"]["rebuild_items"]
    assert rebuild["items_per_s"] > 0
    assert rebuild["max_rss_mb"] > 0

    assert "get_by_id" in done.stdout  # the table
    assert results["machine"]["nproc"] >= 1
    assert results["servers"] == {"postgres": "BENCH_DATABASE_URL", "redis": "BENCH_REDIS_URL"}
