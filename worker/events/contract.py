"""The event contract, v1 (`kinase.event/1`): what analysis publishes when something happens in a stream.

Frames say what a camera saw; events say what happened (docs/EVENTS.md): a line crossed, a zone
entered or left, a stay, a class appearing, a camera going offline and coming back. Every event goes
to the environment's events topic; `alert` marks the ones someone is notified of. The JSON Schema
below is the single source of truth; docs/event.schema.json is generated from it
(`python -m worker.events.contract`) and a test keeps the two equal.

Names in events (lines, zones, rules, classes) come from operators' files and models: they are data,
carried as written; every view escapes them.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from worker.contract import COUNTS, Checker, ContractError, decode, iso
from worker.rules import CAMERA_EVENTS, OBJECT_EVENTS

SCHEMA_ID = "kinase.event/1"
CLIP_READY = "clip_ready"  # reserved for issue 25's clips
TYPES = (*OBJECT_EVENTS, *CAMERA_EVENTS, CLIP_READY)
DIRECTIONS = ("in", "out")

_NAME = {"type": "string", "minLength": 1, "maxLength": 100}
_PER_CLASS = COUNTS["properties"]["lines"]["additionalProperties"]["properties"]["in"]
_OBJECT = {"required": ["frame_id", "track_id", "class", "conf", "rule"], "properties": {"track_id": {"type": "integer"}}}

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://kinase.dev/schemas/event-1.json",
    "title": "kinase event (v1)",
    "type": "object",
    "required": ["schema", "event_id", "type", "stream_name", "time", "counts", "alert"],
    "properties": {
        "schema": {"const": SCHEMA_ID},
        "event_id": {
            "type": "string",
            "pattern": "^[0-9a-f]{32}$",
            "description": "a hash of what the event is about (stream, type, rule, track, frame; the time for camera events): "
            "a frame done again after a restart or a hand-over gives the same id, so consumers deduplicate by it",
        },
        "type": {"enum": list(TYPES)},
        "stream_name": {"type": "string", "minLength": 1},
        "time": {
            "type": "string",
            "format": "date-time",
            "description": "the frame's time (camera events: when the media stopped or came back)",
        },
        "frame_id": {"type": ["string", "null"], "minLength": 1, "description": "the frame the event was seen in (kinase.frame/1)"},
        "snapshot_key": {
            "type": ["string", "null"],
            "minLength": 1,
            "description": "S3 key of that frame's annotated JPEG in the frames bucket; null when it was not uploaded",
        },
        "track_id": {"type": ["integer", "null"], "minimum": 0, "description": "the tracked object, unique in the stream"},
        "class": {"type": ["string", "null"], "minLength": 1},
        "conf": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
        "bbox": {
            "description": "the object's normalised [x_center, y_center, width, height] in that frame",
            "type": "array",
            "items": {"type": "number", "minimum": 0, "maximum": 1},
            "minItems": 4,
            "maxItems": 4,
        },
        "rule": {**_NAME, "type": ["string", "null"], "description": "the line, zone or appeared rule's name"},
        "line": _NAME,
        "direction": {"enum": list(DIRECTIONS), "description": 'towards the line\'s in_side point: "in"'},
        "zone": _NAME,
        "dwell_s": {"type": "number", "minimum": 0, "description": "dwell: how long the object had been inside"},
        "counts": {
            "type": "object",
            "description": "line_crossed: the line's crossings per direction and class after this one; zone events: the zone's "
            "occupancy per class after it; object_appeared: the class's tracked objects visible in the frame",
            "properties": {"in": _PER_CLASS, "out": _PER_CLASS, "occupancy": _PER_CLASS, "visible": _PER_CLASS},
        },
        "alert": {"type": "boolean", "description": "an alert rule of the stream chose this event (SNS attribute alert=true)"},
    },
    "allOf": [
        {
            "if": {"properties": {"type": {"const": "line_crossed"}}},
            "then": {**_OBJECT, "required": [*_OBJECT["required"], "line", "direction"]},
        },
        {
            "if": {"properties": {"type": {"enum": ["zone_entered", "zone_left", "dwell"]}}},
            "then": {**_OBJECT, "required": [*_OBJECT["required"], "zone"]},
        },
        {"if": {"properties": {"type": {"const": "dwell"}}}, "then": {"required": ["dwell_s"]}},
        {"if": {"properties": {"type": {"const": "object_appeared"}}}, "then": _OBJECT},
    ],
}


class EventError(ContractError):
    """A body or a built event that is not a valid v1 event; `reason` says why in one line."""


def event_id(stream_name: str, type_: str, rule: str | None, track_id: int | None, frame_id: str | None, time: float) -> str:
    """The same happening always gets the same id: object events from what and where (frame ids are
    positions, so a frame done again after a restart gives the same id), camera events from their time."""
    if type_ in CAMERA_EVENTS:
        parts = [stream_name, type_, iso(time)]
    else:
        parts = [stream_name, type_, rule or "", "" if track_id is None else str(track_id), frame_id or iso(time)]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]


def build(
    *,
    type: str,
    stream_name: str,
    time: float,
    counts: dict,
    frame_id: str | None = None,
    snapshot_key: str | None = None,
    track_id: int | None = None,
    cls: str | None = None,
    conf: float | None = None,
    bbox: list[float] | None = None,
    rule: str | None = None,
    line: str | None = None,
    direction: str | None = None,
    zone: str | None = None,
    dwell_s: float | None = None,
    alert: bool = False,
) -> dict:
    """A valid v1 event (EventError otherwise); `time` is epoch seconds, the frame's time."""
    event: dict[str, Any] = {
        "schema": SCHEMA_ID,
        "event_id": event_id(stream_name, type, rule, track_id, frame_id, time),
        "type": type,
        "stream_name": stream_name,
        "time": iso(time),
        "frame_id": frame_id,
        "snapshot_key": snapshot_key,
        "track_id": track_id,
        "class": cls,
        "conf": None if conf is None else round(min(max(float(conf), 0.0), 1.0), 4),
        "rule": rule,
        "counts": counts,
        "alert": alert,
    }
    optional = {"line": line, "direction": direction, "zone": zone}
    event.update({key: value for key, value in optional.items() if value is not None})
    if bbox is not None:
        event["bbox"] = [round(min(max(float(v), 0.0), 1.0), 5) for v in bbox]
    if dwell_s is not None:
        event["dwell_s"] = round(float(dwell_s), 3)
    return validate(event)


def camera(type_: str, stream_name: str, time: float) -> dict:
    """camera_offline (no media for the pipeline's offline time) or camera_online (media again)."""
    if type_ not in CAMERA_EVENTS:
        raise EventError(f"not a camera event: {type_!r}")
    return build(type=type_, stream_name=stream_name, time=time, counts={})


_checker = Checker(SCHEMA)


def validate(event: dict) -> dict:
    """The event itself when it is a valid v1 event; EventError with a one-line reason otherwise."""
    if event.get("schema") != SCHEMA_ID:
        raise EventError(f"wrong schema {str(event.get('schema'))[:60]!r}, expected {SCHEMA_ID!r}")
    error = _checker.first_error(event)
    if error is not None:
        raise EventError(error)
    return event


def dumps(event: dict) -> str:
    return json.dumps(event, separators=(",", ":"), sort_keys=True)


def parse(body: str | bytes) -> dict:
    """Decode and validate one event body (an SQS message of the events queue); EventError with a
    one-line reason on anything else, however hostile (decoded as frames are)."""
    try:
        event = decode(body)
    except ContractError as exc:
        raise EventError(exc.reason) from None
    try:
        return validate(event)
    except RecursionError:
        raise EventError("invalid: nested too deeply") from None


if __name__ == "__main__":
    print(json.dumps(SCHEMA, indent=2))
