"""What a run's figures come to: the machine they were measured on, the ratios of the
service's measurements to the references', the targets met or missed, the printed table,
and the JSON in the results folder (bench-<timestamp>.json and latest.json)."""

from __future__ import annotations

import contextlib
import json
import operator
import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .config import Config
from .on_granian import SUFFIX

# The service's measurement -> the peer's measurement of the same request. The peer has no
# tags, so a tag-filtered page is set against its plain page of the same size.
PEER_OF = {
    "get_by_id": "ref_peer_get_by_id",
    "get_by_id_cold": "ref_peer_get_by_id",
    "list_20": "ref_peer_list_20",
    "list_100": "ref_peer_list_100",
    "list_20_tag": "ref_peer_list_20",
    "list_100_tag": "ref_peer_list_100",
    "post": "ref_peer_post",
    "post_async": "ref_peer_post",
    "post_keyed": "ref_peer_post",
    "patch": "ref_peer_patch",
    "patch_async": "ref_peer_patch",
    "mix_95_5": "ref_peer_mix_95_5",
}
PEER_OF |= {f"{name}_{server}": PEER_OF[name] for name in ("get_by_id", "list_20", "post")
            for server in ("uvicorn", "granian")}  # fmt: skip
OPS = {">=": operator.ge, "<": operator.lt, "<=": operator.le}
# A write's measurement -> pgbench running the same statements (pgbench.py).
PGBENCH_OF = {
    "post": "ref_pgbench_post",
    "post_async": "ref_pgbench_post",
    "post_keyed": "ref_pgbench_post_keyed",
    "patch": "ref_pgbench_patch",
    "patch_async": "ref_pgbench_patch",
    "post_uvicorn": "ref_pgbench_post",
    "post" + SUFFIX: "ref_pgbench_post",
}


def machine(cfg: Config) -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    return {
        "nproc": os.cpu_count(),
        "cpus_allowed": sorted(os.sched_getaffinity(0)),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "wrk": (wrk_version.stdout + wrk_version.stderr).strip().splitlines()[0:1],
        "server_cpu": cfg.server_cpu,
        "load_cpu": cfg.load_cpu,
        "pinned": cfg.pinned,
        # Anything else running on the machine shows in every figure: say how busy it was.
        "load_average_at_start": list(os.getloadavg()),
    }


def ratios(results: dict[str, Any]) -> None:
    ms: dict[str, dict[str, Any]] = results["measurements"]
    # Against the faster bare ceiling of the two servers (issue 20): what the service
    # leaves of the best any Python ASGI app here could answer, whichever server it is on.
    ceilings = [ms.get(n, {}).get("rps") for n in ("ref_bare_http", "ref_bare_http" + SUFFIX)]
    bare = max((c for c in ceilings if c), default=None)
    redis_ceiling = ms.get("ref_redis_get", {}).get("rps")
    for name, m in ms.items():
        if name.startswith("ref_"):
            continue
        m["ratio_bare"] = m["rps"] / bare if bare else None
        m["ratio_redis"] = m["rps"] / redis_ceiling if redis_ceiling else None
        peer = ms.get(PEER_OF.get(name, ""), {}).get("rps")
        m["peer"] = PEER_OF.get(name) if peer else None
        m["ratio_peer"] = m["rps"] / peer if peer else None
        pgbench = ms.get(PGBENCH_OF.get(name, ""), {}).get("rps")
        m["ratio_pgbench"] = m["rps"] / pgbench if pgbench else None


def metrics_ratio(ms: dict[str, dict[str, Any]]) -> float | None:
    """Issue 17's bound on what the metrics cost: GET by id with them, over without."""
    on, off = ms.get("get_by_id_metrics_on", {}), ms.get("get_by_id_metrics_off", {})
    if not on.get("rps") or not off.get("rps"):
        return None
    return float(on["rps"]) / float(off["rps"])


def projection_rate(results: dict[str, Any]) -> float | None:
    """Events/s the projector applies catching up a backlog (writes as fast as they can
    come: the scale part's single Redis, one partition, one projector)."""
    for c in (results.get("scale") or {}).get("configurations", []):
        if c.get("partitions") == 1 and not str(c.get("redis", "")).startswith("cluster"):
            rate = ((c.get("projection") or {}).get("one_projector") or {}).get("events_per_s")
            return float(rate) if rate else None
    return None


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The targets of issue 6, issue 17 (the metrics' cost) and issue 20 (writes, lag,
    rebuild), each judged on this run's own figures (None: not measured)."""
    ms: dict[str, dict[str, Any]] = results["measurements"]
    lag = results.get("projection_lag") or {}
    rb = results.get("rebuild") or {}
    full_rebuild = rb.get("items", 0) >= 1_000_000

    def get(name: str, key: str) -> float | None:
        value = ms.get(name, {}).get(key)
        return float(value) if value is not None else None

    post, projected = get("post", "rps"), projection_rate(results)
    projected_per_post = projected / post if projected and post else None
    checks: list[tuple[str, float | None, str, float]] = [
        ("GET by id / Redis GET ceiling", get("get_by_id", "ratio_redis"), ">=", 0.9),
        ("GET by id / seed peer GET", get("get_by_id", "ratio_peer"), ">=", 6.0),
        ("GET by id p99 ms", get("get_by_id", "p99_ms"), "<", 20.0),
        ("GET list 20 / Redis GET ceiling", get("list_20", "ratio_redis"), ">=", 0.5),
        ("POST / seed peer POST", get("post", "ratio_peer"), ">=", 1.5),
        ("POST / pgbench, same statement", get("post", "ratio_pgbench"), ">=", 0.6),
        ("POST keyed / pgbench, same tx", get("post_keyed", "ratio_pgbench"), ">=", 0.6),
        ("PATCH / pgbench, same tx", get("patch", "ratio_pgbench"), ">=", 0.5),
        ("projection lag p99 ms", lag.get("p99_ms"), "<=", 10.0),
        ("projection events/s / POST rps", projected_per_post, ">=", 1.0),
        ("rebuild items/s", rb.get("items_per_s"), ">=", 30_000.0),
        ("rebuild / raw Redis, same writes", rb.get("ratio_raw"), ">=", 0.5),
        ("rebuild peak RSS MiB", rb.get("max_rss_mb"), "<=", 150.0),
        ("GET by id / faster bare HTTP ceiling", get("get_by_id", "ratio_bare"), ">=", 0.9),
        # The same bound with the service on granian (on_granian.py): what a switch buys.
        (
            "GET by id on granian / faster bare ceiling",
            get("get_by_id" + SUFFIX, "ratio_bare"),
            ">=",
            0.9,
        ),
        ("GET by id, metrics on / off", metrics_ratio(ms), ">=", 0.95),
    ]
    if full_rebuild:
        checks.append(("rebuild of 1,000,000 items, seconds", rb.get("seconds"), "<", 60.0))
    checks.append(("rebuild items/s at 1,000,000 items",
                   rb.get("items_per_s") if full_rebuild else None, ">=", 60_000.0))  # fmt: skip
    sizes = results.get("sizes") or {}
    for load, ratio in (sizes.get("ratios") or {}).items():
        at = f"at {sizes['large_items']:,} / {sizes['small_items']:,} items"
        checks.append((f"{load} {at}", ratio, ">=", 0.9))
    out = []
    for name, value, op, bound in checks:
        met = None if value is None else OPS[op](value, bound)
        out.append({"target": f"{name} {op} {bound:g}", "value": value, "met": met})
    return out


def table(results: dict[str, Any]) -> str:
    def ratio(v: float | None) -> str:
        return f"{v:.2f}x" if v is not None else "-"

    def ms(v: float | None) -> str:
        return f"{v:>9.2f}" if v is not None else f"{'-':>9}"

    head = (f"{'name':<22} {'rps':>10} {'p50_ms':>9} {'p99_ms':>9} {'errors':>7} "
            f"{'/redis':>8} {'/peer':>8} {'/pgbench':>9}")  # fmt: skip
    lines = [head, "-" * len(head)]
    for name, m in results["measurements"].items():
        lines.append(
            f"{name:<22} {m['rps']:>10,.0f} {ms(m.get('p50_ms'))} {ms(m.get('p99_ms'))} "
            f"{m.get('errors', '-'):>7} {ratio(m.get('ratio_redis')):>8} "
            f"{ratio(m.get('ratio_peer')):>8} {ratio(m.get('ratio_pgbench')):>9}"
        )
    lag = results.get("projection_lag")
    if lag:
        lines.append(f"projection lag under mix_95_5: p50 {lag['p50_ms']:.1f} ms, "
                     f"p99 {lag['p99_ms']:.1f} ms ({lag['samples']} samples)")  # fmt: skip
    rb = results.get("rebuild")
    if rb:
        lines.append(
            f"items rebuild: {rb['items']:,} items in {rb['seconds']:.1f}s, "
            f"{rb['items_per_s']:,.0f} items/s, peak RSS {rb['max_rss_mb']:.0f} MiB, "
            f"Redis {rb.get('redis_bytes_per_item') or 0:,.0f} bytes/item"
        )
        raw = rb.get("redis_raw") or {}
        if raw.get("items_per_s"):
            lines.append(f"  the same writes sent raw to Redis: {raw['items_per_s']:,.0f} "
                         f"items/s (rebuild at {ratio(rb.get('ratio_raw'))})")  # fmt: skip
    sizes = results.get("sizes") or {}
    if sizes.get("ratios"):
        pairs = [f"{n} {sizes['small'][n]['rps']:,.0f} and {sizes['large'][n]['rps']:,.0f} rps"
                 for n in sizes["ratios"]]  # fmt: skip
        lines.append(f"at {sizes['small_items']:,} and {sizes['large_items']:,} items: "
                     + "; ".join(pairs))  # fmt: skip
    projected = projection_rate(results)
    if projected:
        post = results["measurements"].get("post", {}).get("rps")
        lines.append(f"projection throughput (backlog catch-up): {projected:,.0f} events/s, "
                     f"beside POST {post or 0:,.0f} rps")  # fmt: skip
    for label, p in (results.get("http_servers") or {}).items():  # main.py: server_summary
        noise = f", rounds' spread {p['noise']:.2f}x" if p.get("noise") else ""
        times = f"{p['granian_over_uvicorn']:.2f}x{noise}"
        lines.append(f"server: {label} on granian {p['granian_rps']:,.0f} rps, on uvicorn "
                     f"{p['uvicorn_rps']:,.0f} rps ({times})")  # fmt: skip
    lines += scale_table(results.get("scale") or {})
    for check in results.get("targets", []):
        verdict = {True: "met", False: "MISSED", None: "not measured"}[check["met"]]
        value = "-" if check["value"] is None else f"{check['value']:,.2f}"
        lines.append(f"target: {check['target']:<45} {value:>12}  {verdict}")
    for note in results["notes"]:
        lines.append(f"note: {note}")
    return "\n".join(lines)


def scale_table(scale: dict[str, Any]) -> list[str]:
    """The scale part: one row per configuration, then the workers rows, then its notes."""
    if not scale:
        return []

    def num(m: dict[str, Any] | None, key: str, width: int, spec: str = ",.0f") -> str:
        value = (m or {}).get(key)
        return f"{value:>{width}{spec}}" if value is not None else f"{'-':>{width}}"

    head = (f"{'scale: redis':<13} {'parts':>5} {'GET rps':>9} {'p99':>7} {'list20':>9} "
            f"{'p99':>7} {'POST':>7} {'p99':>7} {'proj ev/s':>10} {'2 proj':>8} "
            f"{'2 unpin':>8} {'lag p99':>8}")  # fmt: skip
    lines = ["", head, "-" * len(head)]
    for c in scale.get("configurations", []):
        proj = c.get("projection") or {}
        lines.append(
            f"{c.get('redis', '?'):<13} {c.get('partitions', 0):>5} "
            f"{num(c.get('get_by_id'), 'rps', 9)} {num(c.get('get_by_id'), 'p99_ms', 7, '.1f')} "
            f"{num(c.get('list_20'), 'rps', 9)} {num(c.get('list_20'), 'p99_ms', 7, '.1f')} "
            f"{num(c.get('post'), 'rps', 7)} {num(c.get('post'), 'p99_ms', 7, '.1f')} "
            f"{num(proj.get('one_projector'), 'events_per_s', 10)} "
            f"{num(proj.get('two_projectors'), 'events_per_s', 8)} "
            f"{num(proj.get('two_projectors_unpinned'), 'events_per_s', 8)} "
            f"{num(c.get('projection_lag'), 'p99_ms', 8, '.1f')}"
        )
    for w in scale.get("workers", []):
        m = w.get("get_by_id") or {}
        caches = m.get("view_cache_per_worker", {}).values()
        rates = "/".join(f"{v['hit_rate'] or 0:.0%}" for v in caches)
        cores = m.get("cores") or {}
        lines.append(
            f"{'workers ' + str(w['workers']) + ', ' + w['cpus']:<19} {num(m, 'rps', 9)} "
            f"{num(m, 'p99_ms', 7, '.1f')}  GET by id; view cache hits per worker {rates}; "
            f"cores: service {cores.get('service', 0):.2f}, wrk {cores.get('wrk', 0):.2f}"
        )
    lines += [f"note: {note}" for note in scale.get("notes", [])]
    return lines


def write(results: dict[str, Any], cfg: Config) -> Path:
    cfg.results_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = cfg.results_dir / f"bench-{stamp}{'-smoke' if cfg.smoke else ''}.json"
    text = json.dumps(results, indent=2) + "\n"
    path.write_text(text)
    (cfg.results_dir / "latest.json").write_text(text)
    return path
