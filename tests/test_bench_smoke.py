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
    # The same read over the other entry points, in the same run (issue 19).
    "graphql_item",
    "grpc_get_item",
    "list_20",
    "list_100",
    "list_20_tag",
    "list_100_tag",
    "post",
    "post_async",
    "post_keyed",
    "patch",
    "patch_async",
    "mix_95_5",
    "get_by_id_metrics_off",
    "get_by_id_metrics_on",
    # The HTTP server itself (issue 20): the same loads on uvicorn and on granian.
    *(
        f"{load}_{server}"
        for load in ("get_by_id", "list_20", "post")
        for server in ("uvicorn", "granian")
    ),  # fmt: skip
]
REFERENCES = [
    "ref_bare_http",
    "ref_bare_http_granian",
    "ref_redis_get",
    "ref_peer_get_by_id",
    "ref_peer_list_20",
    "ref_peer_list_100",
    "ref_peer_post",
    "ref_peer_patch",
    "ref_peer_mix_95_5",
]


def _bench(cmd: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run the bench; past `timeout`, SIGTERM it, so that it stops what it started (its
    services, wrk, the Redis Cluster) before the test fails: a SIGKILL would leave them
    running, each in a session of its own, loading the machine for the rest of the suite."""
    with subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                out, err = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
            pytest.fail(f"the bench smoke took over {timeout:.0f}s:\n{out[-4000:]}{err[-4000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


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
    done = _bench(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--smoke", "--results-dir", str(tmp_path)],
        env,
        timeout=300,  # about 40 s for the main parts and 50 s for the scale part, here
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

    if SHARED.is_dir():
        servers = results["http_servers"]
        assert set(servers) == {"bare_http", "get_by_id", "list_20", "post"}
        assert all(pair["granian_over_uvicorn"] > 0 for pair in servers.values())
        assert "server: get_by_id on granian" in done.stdout

    cost = {t["target"]: t for t in results["targets"]}["GET by id, metrics on / off >= 0.95"]
    assert cost["value"] is not None
    assert cost["value"] > 0

    # PostgreSQL's own rate for the same write statements (issue 20): pgbench is the
    # machine's or the embedded server's, so it is always there.
    for write, ref in (("post", "post"), ("post_keyed", "post_keyed"), ("patch", "patch")):
        assert measurements[f"ref_pgbench_{ref}"]["rps"] > 0, ref
        assert measurements[write]["ratio_pgbench"] > 0, write

    lag = results["projection_lag"]
    assert lag["samples"] > 0
    assert lag["p99_ms"] >= lag["p50_ms"] > 0

    rebuild = results["rebuild"]
    assert rebuild["items"] == results["settings"]["rebuild_items"]
    assert rebuild["items_per_s"] > 0
    assert rebuild["max_rss_mb"] > 0
    assert rebuild["redis_bytes_per_item"] > 0
    assert rebuild["redis_raw"]["items"] == rebuild["items"]
    assert rebuild["ratio_raw"] > 0
    sizes = results["sizes"]  # the same loads on a small store and on the rebuild's
    assert sizes["large_items"] == rebuild["items"] > sizes["small_items"]
    for name in ("get_by_id", "list_20", "post"):
        assert sizes["small"][name]["rps"] > 0, name
        assert sizes["large"][name]["rps"] > 0, name
        assert sizes["ratios"][name] > 0, name

    scale = results["scale"]
    rows = {(c["redis"], c["partitions"]): c for c in scale["configurations"]}
    cluster = [("cluster", 1), ("cluster", 4)] if "cluster" in scale else []
    if not cluster:
        assert any("cluster configurations skipped" in note for note in scale["notes"])
    assert set(rows) == {("single", 1), ("single", 4), *cluster}
    for kind, row in rows.items():
        for name in ("get_by_id", "list_20", "post", "mix_95_5"):
            assert row[name]["rps"] > 0, (kind, name)
            assert row[name]["p99_ms"] >= row[name]["p50_ms"] > 0, (kind, name)
        assert row["projection_lag"]["samples"] > 0, kind
        assert row["projection"]["one_projector"]["events_per_s"] > 0, kind
    assert rows[("single", 4)]["projection"]["two_projectors"]["events_per_s"] > 0
    workers = {w["workers"]: w["get_by_id"] for w in scale["workers"]}
    assert set(workers) == {1, 2}
    for n, m in workers.items():
        assert m["rps"] > 0, n
        assert len(m["view_cache_per_worker"]) == n
    assert "scale: redis" in done.stdout  # its table

    assert "get_by_id" in done.stdout  # the table
    assert results["machine"]["nproc"] >= 1
    assert results["servers"] == {"postgres": "BENCH_DATABASE_URL", "redis": "BENCH_REDIS_URL"}
