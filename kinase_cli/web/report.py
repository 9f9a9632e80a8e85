"""The demo's HTML report: one self-contained file (contact sheet as a data URI, inline SVG chart, no script).

It is opened from disk, mailed, attached to a ticket: nothing in it refers to anything outside it.
Every string from a message is escaped (`html.escape` after `visible`), and the page declares a
Content-Security-Policy that allows no script at all.
"""

from __future__ import annotations

import base64
import html
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from kinase_cli.ui.text import visible
from kinase_cli.watch.stats import percentile
from worker.contract import iso

CHART_W, CHART_H, PAD = 720, 220, 44

STYLE = """
body { font-family: system-ui, sans-serif; color: #1f2328; max-width: 980px; margin: 2rem auto; padding: 0 1rem; }
h1 { margin-bottom: 0.25rem; } .sub { color: #59636e; margin-top: 0; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; } th, td { text-align: left; padding: 0.3rem 0.8rem; border-bottom: 1px solid #d0d7de; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; border-radius: 6px; }
svg text { font-size: 11px; fill: #59636e; }
"""


def _text(value: object, limit: int = 300) -> str:
    return html.escape(visible(value, limit=limit), quote=True)


def latency_svg(messages: list[dict]) -> str:
    """Latency of every frame, in arrival order, with the p50 and p95 lines: an inline SVG."""
    values = [float(m["latency_ms"]) for m in messages]
    if not values:
        return "<p>no frames</p>"
    top = max(values) * 1.1 or 1.0
    width, height = CHART_W - 2 * PAD - 40, CHART_H - 2 * PAD  # room on the right for the p50/p95 labels

    def x(i: int) -> float:
        return PAD + (i / max(len(values) - 1, 1)) * width

    def y(v: float) -> float:
        return PAD + height - v / top * height

    points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{CHART_W}" height="{CHART_H}" viewBox="0 0 {CHART_W} {CHART_H}" role="img" '
        'aria-label="latency per frame">',
        f'<line x1="{PAD}" y1="{PAD + height}" x2="{PAD + width}" y2="{PAD + height}" stroke="#d0d7de"/>',
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{PAD + height}" stroke="#d0d7de"/>',
        f'<text x="{PAD - 6}" y="{PAD + 4}" text-anchor="end">{top:.0f}</text>',
        f'<text x="{PAD - 6}" y="{PAD + height + 4}" text-anchor="end">0</text>',
        f'<text x="{PAD + width / 2}" y="{CHART_H - 10}" text-anchor="middle">frames in arrival order ({len(values)}); latency in ms</text>',
        f'<polyline fill="none" stroke="#8250df" stroke-width="1.5" points="{points}"/>',
    ]
    for q, color in ((50, "#1a7f37"), (95, "#cf222e")):
        level = percentile(values, q)
        parts.append(
            f'<line x1="{PAD}" y1="{y(level):.1f}" x2="{PAD + width}" y2="{y(level):.1f}" stroke="{color}" stroke-dasharray="4 3"/>'
        )
        parts.append(f'<text x="{PAD + width + 4}" y="{y(level) + 4:.1f}">p{q} {level:.0f}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def _rows(pairs) -> str:
    return "\n".join(f"<tr><th>{_text(k)}</th><td class=n>{_text(v)}</td></tr>" for k, v in pairs)


def write(path: Path, *, messages: list[dict], accuracy: dict | None, contact_sheet: str | None, summary: dict) -> Path:
    """Write the report to `path`; returns it."""
    classes = Counter(d["class"] for m in messages for d in m["summary"])
    streams = sorted({m["stream_name"] for m in messages})
    sheet = ""
    if contact_sheet and Path(contact_sheet).is_file():
        data = base64.b64encode(Path(contact_sheet).read_bytes()).decode()
        sheet = f'<h2>Contact sheet</h2>\n<img alt="annotated frames spread over the run" src="data:image/jpeg;base64,{data}">'
    score = ""
    if accuracy:
        score = "<h2>Against the ground truth</h2>\n<table>" + _rows(
            [
                ("objects in the video", accuracy.get("truth_objects")),
                ("found (same class, IoU ≥ 0.5)", accuracy.get("found")),
                ("recall", accuracy.get("recall")),
                ("precision", accuracy.get("precision")),
            ]
        )
        per_class = accuracy.get("per_class") or {}
        score += _rows((f"{name}: found of truth", f"{c['found']} of {c['truth']}") for name, c in sorted(per_class.items()))
        score += "</table>"
    latency = summary.get("latency_ms", {})
    overview = _rows(
        [
            ("frames", summary.get("frames")),
            ("streams", ", ".join(streams) or "-"),
            ("throughput (frames/s)", summary.get("fps")),
            ("latency p50 (ms)", latency.get("p50")),
            ("latency p95 (ms)", latency.get("p95")),
            ("invalid messages", summary.get("invalid")),
        ]
    )
    counts = _rows(sorted(classes.items(), key=lambda kv: (-kv[1], kv[0]))) or "<tr><td>no detections</td></tr>"
    generated = iso(datetime.now(timezone.utc))
    page = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<title>kinase demo report</title>
<style>{STYLE}</style>
</head>
<body>
<h1>kinase demo</h1>
<p class="sub">generated {generated}</p>
<table>{overview}</table>
{score}
<h2>Detections per class</h2>
<table>{counts}</table>
<h2>Latency (frame time to message sent)</h2>
{latency_svg(messages)}
{sheet}
</body>
</html>
"""
    path.write_text(page, encoding="utf-8")
    return path
