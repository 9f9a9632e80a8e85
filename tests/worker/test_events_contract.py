"""kinase.event/1 is one module: docs, builder and reader agree; and frames' new fields are additive."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from worker import contract as frames
from worker.events import contract

ROOT = Path(__file__).resolve().parents[2]


def crossed(**overrides) -> dict:
    fields = dict(
        type="line_crossed",
        stream_name="cam1",
        time=1_764_000_000.25,
        frame_id="cam1/1764000000000/91343852333181/00007",
        snapshot_key="frames/cam1/1764000000000/91343852333181/00007.jpg",
        track_id=12,
        cls="person",
        conf=0.87654,
        bbox=[0.5, 0.5, 0.1, 0.2],
        rule="door",
        line="door",
        direction="in",
        counts={"in": {"person": 3}, "out": {"person": 1}},
    )
    fields.update(overrides)
    return contract.build(**fields)


def test_schema_file_matches_module():
    assert json.loads((ROOT / "docs" / "event.schema.json").read_text()) == contract.SCHEMA


def test_built_event_round_trips_with_the_designs_fields():
    event = crossed()
    assert contract.parse(contract.dumps(event)) == event
    assert event["time"] == "2025-11-24T16:00:00.250Z" and event["conf"] == 0.8765 and event["alert"] is False
    assert set(event) == {
        "schema", "event_id", "type", "stream_name", "time", "frame_id", "snapshot_key", "track_id",
        "class", "conf", "bbox", "rule", "line", "direction", "counts", "alert",
    }  # fmt: skip


def test_event_ids_follow_from_what_happened_not_when_it_was_built():
    assert crossed()["event_id"] == crossed(conf=0.5, counts={})["event_id"]  # a replay with other counts: the same event
    others = [crossed(track_id=13), crossed(frame_id="cam1/x/8"), crossed(rule="gate", line="gate"), crossed(stream_name="cam2")]
    assert len({e["event_id"] for e in [crossed(), *others]}) == 5
    offline = contract.camera("camera_offline", "cam1", 1_764_000_000.0)
    assert offline["event_id"] == contract.camera("camera_offline", "cam1", 1_764_000_000.0)["event_id"]
    assert offline["event_id"] != contract.camera("camera_online", "cam1", 1_764_000_000.0)["event_id"]
    assert (offline["frame_id"], offline["track_id"], offline["class"], offline["counts"]) == (None, None, None, {})


@pytest.mark.parametrize(
    "fields, reason",
    [
        ({"line": None}, "invalid at (root): 'line' is a required property"),
        ({"direction": "sideways"}, "invalid at direction: 'sideways' is not one of ['in', 'out']"),
        ({"type": "exploded"}, "invalid at type: 'exploded' is not one of"),
        ({"type": "zone_entered", "zone": None}, "invalid at (root): 'zone' is a required property"),
    ],
)
def test_the_builder_refuses_what_the_schema_refuses(fields, reason):
    with pytest.raises(contract.EventError) as caught:
        crossed(**fields)
    assert caught.value.reason.startswith(reason)


@pytest.mark.parametrize(
    "body, reason",
    [
        (b"\xff", "not UTF-8: invalid byte at 0"),
        ("[1]", "not a JSON object"),
        ('{"schema": "kinase.frame/1"}', "wrong schema 'kinase.frame/1', expected 'kinase.event/1'"),
        ('{"x": NaN}', "not JSON: NaN is not a JSON number"),
        ("[" * 100000, "not JSON: nested too deeply"),
    ],
)
def test_the_reader_gives_one_line_reasons(body, reason):
    with pytest.raises(contract.EventError) as caught:
        contract.parse(body)
    assert caught.value.reason == reason


def frame(**overrides) -> dict:
    now = time.time()
    source = {"type": "file", "uri": "clip.mp4", "frame_number": 7}
    fields = dict(
        bucket="frames-bucket",
        stream_name="cam1",
        frame_index=7,
        source=source,
        frame_id=frames.frame_id("cam1", source),
        frame_time=now,
        width=640,
        height=480,
        model="yolo11n.onnx",
        inference_ms=10.0,
        detections=[
            {"class": "person", "class_id": 0, "conf": 0.9, "bbox": [0.5, 0.5, 0.1, 0.2], "track_id": 4},
            {"class": "person", "class_id": 0, "conf": 0.3, "bbox": [0.2, 0.5, 0.1, 0.2]},
        ],
        now=now,
    )
    fields.update(overrides)
    return frames.build(**fields)


def test_frames_carry_track_ids_and_counts_and_a_v1_consumer_without_them_still_accepts_them():
    counts = {"lines": {"door": {"in": {"person": 3}, "out": {}}}, "zones": {"bay": {"occupancy": {"car": 1}}}}
    message = frame(counts=counts)
    assert [item.get("track_id") for item in message["summary"]] == [4, None]
    assert frames.parse(frames.dumps(message))["counts"] == counts
    assert "counts" not in frame()
    old = copy.deepcopy(frames.SCHEMA)  # the v1 schema before these fields
    del old["properties"]["counts"]
    del old["properties"]["summary"]["items"]["properties"]["track_id"]
    assert list(Draft202012Validator(old).iter_errors(json.loads(frames.dumps(message)))) == []
    with pytest.raises(frames.ContractError, match="invalid at counts/zones/bay/occupancy/car"):
        frames.parse(frames.dumps(frame(counts={"zones": {"bay": {"occupancy": {"car": -1}}}})))
