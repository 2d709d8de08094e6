"""The HTML of /admin/status and its sign-in form (routes/status_page.py): plain
strings, every value escaped, a little CSS, an inline SVG sparkline. No script."""

from __future__ import annotations

from html import escape
from typing import Any

REFRESH = 3  # seconds between two reloads of the page

_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem;color:#1d232a;background:#fafbfc}
h1{font-size:1.3rem;margin:0 0 .2rem}h2{font-size:1rem;margin:1.6rem 0 .4rem}
table{border-collapse:collapse;background:#fff}td,th{padding:.3rem .7rem;border:1px solid
#dde2e7;text-align:left}th{background:#f0f3f6}.num{text-align:right;font-variant-numeric:
tabular-nums}.facts{display:flex;gap:1rem;flex-wrap:wrap}.fact{background:#fff;border:1px
solid #dde2e7;padding:.5rem .9rem}.fact b{display:block;font-size:1.2rem}.warn{color:#b3261e}
.muted{color:#68737d}form{display:inline}
"""


def _fact(label: str, value: Any, ident: str) -> str:
    return f'<div class="fact">{escape(label)}<b id="{ident}">{escape(str(value))}</b></div>'


def sparkline(samples: list[tuple[float, float]], width: int = 320, height: int = 48) -> str:
    """An SVG polyline of (time, lag seconds) samples, scaled to the box."""
    if len(samples) < 2:
        return '<span class="muted">collecting samples...</span>'
    t0, t1 = samples[0][0], samples[-1][0]
    top = max(max(v for _, v in samples), 0.001)
    points = " ".join(
        f"{(t - t0) / max(t1 - t0, 1e-9) * width:.1f},{height - v / top * (height - 4) - 2:.1f}"
        for t, v in samples
    )
    return (
        f'<svg id="lag-sparkline" width="{width}" height="{height}" role="img" '
        f'aria-label="lag over the last {(t1 - t0) / 60:.0f} min, at most {top:.2f} s">'
        f'<polyline fill="none" stroke="#1a73e8" stroke-width="1.5" points="{points}"/></svg>'
        f' <span class="muted">max {top:.2f} s over {(t1 - t0) / 60:.1f} min</span>'
    )


def page(found: dict[str, Any], samples: list[tuple[float, float]], guarded: bool) -> str:
    parts = found["partitions"]
    rows = []
    for p in parts:
        owner = p["owner"]
        who = "none" if owner is None else f"pid {owner['pid']} on {owner['host']}"
        rows.append(
            "<tr>"
            f'<td class="num">{p["partition"]}</td>'
            f'<td class="num" id="checkpoint-{p["partition"]}">{p["checkpoint"] or 0}</td>'
            f'<td class="num">{p["lag_events"]}</td>'
            f'<td class="num">{p.get("lag_seconds", 0):.3f}</td>'
            f'<td class="{"warn" if owner is None else ""}">{escape(who)}</td>'
            f'<td class="num">{p["epoch"] if p["epoch"] is not None else ""}</td>'
            f"<td>{escape(str(p['generation'] or 'none'))}</td>"
            "</tr>"
        )
    dead = found["dead_letter_rows"]
    dead_rows = (
        "".join(
            f"<tr><td class='num'>{d['position']}</td><td>{d['item_id']}</td>"
            f"<td>{d['event_type']}</td><td>{d['error']}</td><td>{d['failed_at']}</td></tr>"
            for d in dead
        )
        or '<tr><td colspan="5" class="muted">none</td></tr>'
    )
    rate = found["view_cache_hit_rate"]
    layout = found["layout"]
    sign_out = (
        '<form method="post" action="/admin/logout"><button>sign out</button></form>'
        if guarded else ""
    )  # fmt: skip
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="{REFRESH}">
<title>items: status</title><style>{_STYLE}</style></head><body>
<h1>items: projection status</h1>
<p class="muted">reloads every {REFRESH} s; layout {escape(repr(layout["name"]))},
{layout["partitions"]} partition(s) {sign_out}</p>
<div class="facts">
{_fact("head position", found["head_position"], "head")}
{_fact("checkpoint (lowest)", found["checkpoint"], "checkpoint")}
{_fact("lag", f"{found['lag_events']} events, {found['lag_seconds']:.3f} s", "lag")}
{_fact("read model", found["read_model"], "read-model")}
{_fact("owned partitions", f"{found['owned_partitions']} by {found['projectors']}", "owners")}
{_fact("dead letters", found["dead_letters"], "dead-letters")}
{_fact("view cache hits", "n/a" if rate is None else f"{rate:.1%}", "hit-rate")}
</div>
<h2>Lag (this process's samples)</h2>{sparkline(samples)}
<h2>Partitions</h2>
<table><tr><th>partition</th><th>checkpoint</th><th>lag (events)</th><th>lag (s)</th>
<th>owner</th><th>epoch</th><th>live generation</th></tr>{"".join(rows)}</table>
<h2>Dead letters (latest 20)</h2>
<table><tr><th>position</th><th>item</th><th>event</th><th>error</th><th>failed at</th></tr>
{dead_rows}</table>
</body></html>"""


def sign_in_page(error: str | None) -> str:
    note = f'<p class="warn">{escape(error)}</p>' if error else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>items: sign in</title>
<style>{_STYLE}</style></head><body>
<h1>items: sign in</h1>{note}
<p class="muted">The status page is for holders of an API key (API_KEYS).</p>
<form method="post" action="/admin/login">
<label>API key <input type="password" name="key" autocomplete="current-password"
autofocus></label> <button type="submit" id="sign-in">sign in</button></form>
</body></html>"""
