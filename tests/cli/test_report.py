"""The demo's HTML report: self-contained, inert, and carrying the figures it claims."""

from __future__ import annotations

import base64
import re

from kinase_cli.web import report
from support.messages import frame

HOSTILE = "<script>alert(1)</script>"


def messages() -> list[dict]:
    out = []
    for i, latency in enumerate((120.0, 80.0, 300.0, 95.0)):
        m = frame("bucket-x", i, ["circle", "square"] if i % 2 else ["circle", HOSTILE], stream="demo\u202ecam")
        m["latency_ms"] = latency
        out.append(m)
    return out


def test_report_embeds_everything_and_runs_nothing(tmp_path):
    sheet = tmp_path / "contact-sheet.jpg"
    sheet.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    accuracy = {
        "truth_objects": 8,
        "found": 7,
        "recall": 0.875,
        "precision": 0.9,
        "per_class": {"circle": {"truth": 4, "found": 4}, "square": {"truth": 4, "found": 3}},
    }
    summary = {"frames": 4, "fps": 2.5, "latency_ms": {"p50": 95.0, "p95": 300.0}, "invalid": 0}
    path = report.write(tmp_path / "report.html", messages=messages(), accuracy=accuracy, contact_sheet=str(sheet), summary=summary)
    page = path.read_text()

    assert f"data:image/jpeg;base64,{base64.b64encode(sheet.read_bytes()).decode()}" in page
    # Nothing outside the file: no URL but the SVG namespace, no script, and a policy that forbids any.
    assert re.findall(r"(?:src|href)=\"(?!data:)", page) == []
    assert set(re.findall(r"https?://[^\s\"']+", page)) == {"http://www.w3.org/2000/svg"}
    assert "<script" not in page and "default-src 'none'" in page
    # Message strings are text: the hostile class is escaped, the bidi override is made visible.
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "demo\\u202ecam" in page and "\u202e" not in page
    # The figures: per-class counts, the score, the latency chart with its p50/p95 lines.
    assert re.search(r"<th>circle</th><td class=n>4</td>", page)
    assert re.search(r"<th>square</th><td class=n>2</td>", page)
    assert "<th>recall</th><td class=n>0.875</td>" in page
    assert "<th>square: found of truth</th><td class=n>3 of 4</td>" in page
    polyline = re.search(r'<polyline [^>]*points="([^"]+)"', page).group(1).split()
    assert len(polyline) == 4
    assert ">p50 95<" in page and ">p95 300<" in page


def test_report_without_frames_or_score_still_renders(tmp_path):
    path = report.write(tmp_path / "r.html", messages=[], accuracy=None, contact_sheet=None, summary={"frames": 0, "latency_ms": {}})
    page = path.read_text()
    assert "no detections" in page and "no frames" in page and "data:image" not in page
