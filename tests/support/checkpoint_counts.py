"""A checkpoint's stage state with running counts, made by the worker's own analyse stage (never a hand-made
shape that could drift from what `kinase status` reads)."""

from __future__ import annotations

import types

from worker import rules
from worker.events.analysis import FrameInfo
from worker.sources.incarnation import Incarnation
from worker.stages.analyse import Analyse

DOOR = {"name": "Door [red]1[/red]", "points": [[0.5, 0.0], [0.5, 1.0]], "in_side": [0.9, 0.5]}
BAY = {"name": "bay\u202e", "polygon": [[0.0, 0.0], [0.3, 0.0], [0.3, 1.0], [0.0, 1.0]]}
# What the stages below count: two people in through the door, a `Fall` (not snake_case) in the bay.
EXPECTED = {
    "lines": {DOOR["name"]: {"in": {"person": 2}, "out": {}}},
    "zones": {BAY["name"]: {"occupancy": {"Fall": 1}}},
}
POSITION = {"fragment_number": "91343852333181432392682062607743920146264245678", "next_offset": None, "continuation_token": "t"}


def incarnation(arn: str = "arn:aws:kinesisvideo:us-east-1:123456789012:stream/cam/1") -> Incarnation:
    return Incarnation(arn, "2026-12-07T20:00:00.000Z")


def analysed_stages(stream: str) -> dict:
    """The stages' state as the worker checkpoints it after the walks that make EXPECTED."""
    document = rules.build({"schema": rules.SCHEMA_ID, "streams": {"*": {"lines": [DOOR], "zones": [BAY]}}})
    in_force = types.SimpleNamespace(version=1, rules_for=document.rules_for)
    stage = Analyse(stream, in_force, None, track_lost_s=30.0)
    for i in range(16):
        t = i / 5
        x = 0.2 + 0.6 * min(1.0, t / 2)
        people = [{"class": "person", "class_id": 0, "conf": 0.9, "bbox": [x, 0.5, 0.1, 0.2], "track_id": track} for track in (1, 2)]
        fallen = {"class": "Fall", "class_id": 1, "conf": 0.8, "bbox": [0.15, 0.4, 0.1, 0.2], "track_id": 3}
        stage.analyser.update(FrameInfo(f"{stream}/{i}", t, f"frames/{i}.jpg", 640, 480), [*people, fallen])
    return {Analyse.name: stage.snapshot()}
