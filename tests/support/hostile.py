"""A corpus of hostile queue messages: what an attacker (or a broken producer) can put on the results queue.

SQS itself refuses raw C0 control characters in a body (only tab, newline and carriage return
are allowed: "Message contents", SendMessage API reference), so escape sequences arrive JSON-escaped
(`\\u001b`) and become real ESC characters once parsed; C1 controls (`\\x9b`, a one-byte CSI) and
bidi overrides may also come raw. Invalid UTF-8 cannot travel through SQS at all (the body is
XML/JSON text); the contract's handling of undecodable bytes is tested on `parse(bytes)`.
"""

from __future__ import annotations

import json

from support.messages import frame
from worker import contract

ESC_CLEAR = "\x1b[2J\x1b[H"
OSC_TITLE = "\x1b]0;pwned-title\x07"
OSC_LINK = "\x1b]8;;https://evil.example/\x1b\\click\x1b]8;;\x1b\\"
CSI_C1 = "\x9b2J"
BIDI = "\u202egnp.exe"
MARKUP = "[/x][link=https://evil.example/]click[/link][bold red]"

# What must never appear on a screen or in a captured pane once these were shown.
MARKERS = ("pwned-title",)


def valid(bucket: str) -> dict[str, dict]:
    """Messages that pass the contract while carrying hostile strings; each must be shown exactly once."""

    def with_(index: int, **changes) -> dict:
        message = frame(bucket, index, ["person"])
        message.update(changes)
        return message

    base = frame(bucket, 0, [])
    return {
        "ansi-stream": with_(1, stream_name=f"cam{ESC_CLEAR}1"),
        "osc-stream": with_(2, stream_name=f"cam{OSC_TITLE}{OSC_LINK}"),
        "c1-stream": with_(3, stream_name=f"cam{CSI_C1}"),
        "bidi-stream": with_(4, stream_name=f"cam{BIDI}"),
        "markup-class": with_(5, summary=[{"class": MARKUP, "class_id": 0, "conf": 0.9, "bbox": [0.5, 0.5, 0.1, 0.1]}], detections_count=1),
        "ansi-class": with_(
            6, summary=[{"class": f"a{ESC_CLEAR}{OSC_TITLE}", "class_id": 0, "conf": 0.9, "bbox": [0.5, 0.5, 0.1, 0.1]}], detections_count=1
        ),
        "dotdot-key": with_(7, key="../../../../tmp/kinase-escape.jpg"),
        "absolute-key": with_(8, key="/etc/kinase-escape.jpg"),
        "missing-key": with_(9, key=f"frames/{base['stream_name']}/missing/00000009.jpg"),
        "huge-float": with_(10, latency_ms=1.7e308, inference_ms=1e300),
        "markup-model": with_(11, model=f"[red]{MARKUP}{ESC_CLEAR}"),
        "big-body": with_(12, model="m" * (250 * 1024)),
    }


def invalid(bucket: str) -> dict[str, str]:
    """Bodies that break the contract; each must be left on the queue (for the DLQ), never deleted."""
    good = frame(bucket, 100, ["car"])
    body = contract.dumps(good)
    deep = 900
    return {
        "schema-markup": json.dumps({"schema": "[/bad]"}),
        "nan": body.replace('"latency_ms":', '"latency_ms":NaN,"x":'),
        "infinity": body.replace('"latency_ms":', '"latency_ms":Infinity,"x":'),
        "huge-int": body.replace('"frame_index":100', '"frame_index":' + "9" * 5000),
        "deep": '{"schema":"kinase.frame/1","x":' + "[" * deep + "]" * deep + "}",
        "too-deep": "[" * 100_000 + "]" * 100_000,
        "big-body": json.dumps({**good, "bucket": "b" * (250 * 1024)}),
        "wrong-types": json.dumps({**good, "frame_index": "7", "summary": {"class": []}, "stream_name": ["x"]}),
        "ansi-error": json.dumps({**good, "schema": f"x{ESC_CLEAR}{OSC_TITLE}{MARKUP}"}),
        "not-json": f"{CSI_C1}{MARKUP} not json {BIDI}",
        "python-repr": repr(good),
    }
