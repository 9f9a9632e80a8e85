"""The contract module is the single source of truth: docs, builder and parser agree."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support.messages import frame
from worker import contract, layout

ROOT = Path(__file__).resolve().parents[2]


ARN = "arn:aws:kinesisvideo:us-east-1:123456789012:stream/cam-1/1700000000000"
SOURCE = {"type": "kvs", "uri": "kvs://cam-1", "stream_arn": ARN, "fragment_number": "9134385233318", "frame_in_fragment": 3}


def sample(**overrides):
    """A frame from a Kinesis Video stream with one circle found."""
    return frame("frames-bucket", 3, ["circle"], conf=0.91, source=SOURCE, inference_ms=12.5, **overrides)


def test_schema_file_matches_module():
    assert json.loads((ROOT / "docs" / "contract.schema.json").read_text()) == contract.SCHEMA


def test_built_message_round_trips_and_keeps_the_hackathon_fields():
    message = sample()
    parsed = contract.parse(contract.dumps(message))
    assert parsed == message
    for legacy in ("bucket", "key", "frame_index", "detections_count", "summary", "timestamp", "stream_name"):
        assert legacy in parsed
    assert parsed["detections_count"] == 1
    assert 240 <= parsed["latency_ms"] <= 260
    assert parsed["timestamp"].endswith("Z")


def test_frame_id_is_the_position_and_the_key_follows_from_it():
    a = sample()
    assert a["frame_id"] == sample(frame_time=0.0)["frame_id"] == "cam-1/1700000000000/9134385233318/00003"  # time is not identity
    assert a["key"] == f"frames/{a['frame_id']}.jpg"
    recreated = {**SOURCE, "stream_arn": ARN.replace("1700000000000", "1700000999000")}
    assert contract.frame_id("cam-1", recreated) != a["frame_id"]  # another incarnation of the stream, another frame
    assert contract.frame_id("cam-1", {**SOURCE, "frame_in_fragment": 4}) != a["frame_id"]
    file_source = {"type": "file", "uri": "/videos/clip.mp4", "frame_number": 7}
    assert contract.frame_id("clip", file_source) == "clip/clip.mp4/00000007"


def test_keys_cannot_escape():
    hostile = layout.frame_key(contract.frame_id("../../etc", {"type": "file", "uri": "/x/../../passwd", "frame_number": 7}))
    assert ".." not in hostile.split("/") and not hostile.startswith("/")
    assert hostile.startswith(layout.FRAMES_PREFIX)
    arn = {**SOURCE, "stream_arn": "../..", "fragment_number": "../../x"}
    assert ".." not in layout.frame_key(contract.frame_id("..", arn)).split("/")


def test_a_message_without_frame_id_still_parses():
    """frame_id is an additive v1 field: messages of workers from before it stay valid."""
    message = {k: v for k, v in sample().items() if k != "frame_id"}
    assert contract.parse(contract.dumps(message)) == message


@pytest.mark.parametrize(
    "body, reason",
    [
        ("{'bucket': 'x'}", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        (json.dumps({"bucket": "x"}), "wrong schema"),
        (json.dumps({**sample(), "frame_index": -1}), "frame_index"),
        (json.dumps({**sample(), "summary": [{"class": "c", "conf": 2, "bbox": [0, 0, 0, 0]}]}), "summary/0/conf"),
        (json.dumps({k: v for k, v in sample().items() if k != "key"}), "'key' is a required property"),
    ],
)
def test_invalid_bodies_give_one_line_reasons(body, reason):
    with pytest.raises(contract.ContractError) as info:
        contract.parse(body)
    assert reason in info.value.reason
    assert "\n" not in info.value.reason
