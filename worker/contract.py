"""The message contract, v1: the worker writes with it, `kinase watch` reads with it.

One SQS message per processed frame. v1 is a superset of the hackathon contract (bucket, key,
frame_index, detections_count, summary[], timestamp, stream_name), so an old consumer keeps
working. The JSON Schema below is the single source of truth; docs/contract.schema.json is
generated from it (`python -m worker.contract`) and a test keeps the two equal.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import Any

from worker.layout import frame_key, safe_component

SCHEMA_ID = "kinase.frame/1"
MAX_BODY_BYTES = 256 * 1024

_PER_CLASS = {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}, "description": "class name -> count"}
# A stream's running counts (docs/EVENTS.md): frames carry the whole stream's, events their line's or zone's.
COUNTS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "lines": {
            "type": "object",
            "description": "line name -> crossings since the line was created, per direction and class",
            "additionalProperties": {"type": "object", "properties": {"in": _PER_CLASS, "out": _PER_CLASS}},
        },
        "zones": {
            "type": "object",
            "description": "zone name -> objects inside now, per class",
            "additionalProperties": {"type": "object", "properties": {"occupancy": _PER_CLASS}},
        },
    },
}

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://kinase.dev/schemas/frame-1.json",
    "title": "kinase frame result (v1)",
    "type": "object",
    "required": [
        "schema",
        "bucket",
        "key",
        "frame_index",
        "detections_count",
        "summary",
        "timestamp",
        "stream_name",
        "frame_time",
        "source",
        "width",
        "height",
        "model",
        "inference_ms",
        "latency_ms",
    ],
    "properties": {
        "schema": {"const": SCHEMA_ID},
        "bucket": {"type": "string", "minLength": 3, "maxLength": 63},
        "key": {
            "type": ["string", "null"],
            "minLength": 1,
            "maxLength": 1024,
            "description": "S3 key of the annotated JPEG; null when the worker's upload policy did not upload this frame",
        },
        "frame_index": {"type": "integer", "minimum": 0},
        "detections_count": {"type": "integer", "minimum": 0},
        "summary": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["class", "conf", "bbox"],
                "properties": {
                    "class": {"type": "string", "minLength": 1},
                    "class_id": {"type": "integer", "minimum": 0},
                    "track_id": {"type": "integer", "minimum": 0, "description": "the object's track, when tracking confirmed it"},
                    "conf": {"type": "number", "minimum": 0, "maximum": 1},
                    "bbox": {
                        "description": "normalised [x_center, y_center, width, height]",
                        "type": "array",
                        "items": {"type": "number", "minimum": 0, "maximum": 1},
                        "minItems": 4,
                        "maxItems": 4,
                    },
                },
            },
        },
        "timestamp": {"type": "string", "format": "date-time", "description": "when the worker produced this message (UTC)"},
        "stream_name": {"type": "string", "minLength": 1},
        "frame_id": {
            "type": "string",
            "minLength": 1,
            "maxLength": 1000,
            "description": "the frame's identity, from its position in the source (never its time): the same frame always has the "
            "same id, and `key` is frames/<frame_id>.jpg; delivery is at least once, so consumers deduplicate by it",
        },
        "frame_time": {
            "type": "string",
            "format": "date-time",
            "description": "the frame's own time: producer timestamp for Kinesis Video, wall clock of reading otherwise",
        },
        "source": {
            "type": "object",
            "required": ["type", "uri"],
            "properties": {
                "type": {"enum": ["kvs", "file", "url", "s3"]},
                "uri": {"type": "string"},
                "stream_arn": {
                    "type": "string",
                    "description": "Kinesis Video: the stream incarnation (its ARN ends in the creation time)",
                },
                "fragment_number": {"type": "string", "pattern": "^[0-9]+$"},
                "frame_in_fragment": {"type": "integer", "minimum": 0},
                "frame_number": {"type": "integer", "minimum": 0},
            },
        },
        "width": {"type": "integer", "minimum": 1},
        "height": {"type": "integer", "minimum": 1},
        "model": {"type": "string"},
        "inference_ms": {"type": "number", "minimum": 0},
        "latency_ms": {"type": "number", "minimum": 0, "description": "frame_time to message send"},
        "counts": {**COUNTS, "description": "the stream's running counts after this frame, when it has rules"},
    },
}


class ContractError(ValueError):
    """A message body that is not a valid v1 frame result; `reason` says why in one line."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def iso(value: float | datetime) -> str:
    """Epoch seconds or an aware datetime -> ISO 8601 UTC with milliseconds and a Z suffix.

    The one time format of kinase: messages, checkpoints, and every `kinase ... --json` payload.
    """
    moment = value if isinstance(value, datetime) else datetime.fromtimestamp(value, tz=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def frame_id(stream_name: str, source: dict) -> str:
    """A frame's identity from its position: `<stream>/<creation time in ms>/<fragment>/<offset>` for
    Kinesis Video (the stream incarnation, the fragment number, the frame's offset in it),
    `<stream>/<file name>/<frame number>` for files. The same frame always gets the same id."""
    base = safe_component(stream_name)
    if source["type"] == "kvs":
        incarnation = safe_component(source["stream_arn"].rsplit("/", 1)[-1]) + "/" if source.get("stream_arn") else ""
        return f"{base}/{incarnation}{safe_component(source['fragment_number'])}/{source['frame_in_fragment']:05d}"
    origin = safe_component(source["uri"].rsplit("/", 1)[-1])
    return f"{base}/{origin}/{source['frame_number']:08d}"


def build(
    *,
    bucket: str,
    stream_name: str,
    frame_index: int,
    source: dict,
    frame_id: str,
    frame_time: float,
    width: int,
    height: int,
    model: str,
    inference_ms: float,
    detections: list[dict],
    now: float,
    uploaded: bool = True,
    counts: dict | None = None,
) -> dict:
    """A v1 message; `detections` are dicts with class, conf, bbox (normalised xywh), class_id and,
    when tracked, track_id. A frame whose JPEG the upload policy kept out of S3 has `key` null."""
    summary = [
        {
            "class": d["class"],
            "class_id": int(d.get("class_id", 0)),
            "conf": round(min(max(float(d["conf"]), 0.0), 1.0), 4),
            "bbox": [round(min(max(float(v), 0.0), 1.0), 5) for v in d["bbox"]],
            **({"track_id": int(d["track_id"])} if "track_id" in d else {}),
        }
        for d in detections
    ]
    message = {
        "schema": SCHEMA_ID,
        "bucket": bucket,
        "key": frame_key(frame_id) if uploaded else None,
        "frame_index": int(frame_index),
        "detections_count": len(summary),
        "summary": summary,
        "timestamp": iso(now),
        "stream_name": stream_name,
        "frame_id": frame_id,
        "frame_time": iso(frame_time),
        "source": source,
        "width": int(width),
        "height": int(height),
        "model": model,
        "inference_ms": round(float(inference_ms), 3),
        "latency_ms": round(max(0.0, (now - frame_time) * 1000.0), 3),
    }
    if counts is not None:
        message["counts"] = counts
    return message


def dumps(message: dict) -> str:
    return json.dumps(message, separators=(",", ":"), sort_keys=True)


class Checker:
    """A JSON Schema's validator, made at its first use (jsonschema stays off `kinase --help`'s imports), and the
    first error of a document as one bounded line; frames (here) and events (worker/events/contract.py) use one each."""

    def __init__(self, schema: dict):
        self.schema = schema
        self._validator = None

    def first_error(self, doc: dict) -> str | None:
        if self._validator is None:
            from jsonschema import Draft202012Validator, FormatChecker

            self._validator = Draft202012Validator(self.schema, format_checker=FormatChecker())
        try:
            error = next(iter(sorted(self._validator.iter_errors(doc), key=lambda e: [str(p) for p in e.path])), None)
        except RecursionError:
            return "invalid: nested too deeply"
        if error is None:
            return None
        where = "/".join(str(p) for p in error.path)[:120] or "(root)"
        said = error.message if len(error.message) <= 200 else f"{_short(error.instance)} fails {error.validator!r}"
        return f"invalid at {where}: {said}"


_checker = Checker(SCHEMA)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ContractError(f"not JSON: number {text[:40]} is out of range")
    return value


def _int64(text: str) -> int:
    """Integers beyond 64 bits are refused: no field needs them and other JSON readers lose them (RFC 8259 §6)."""
    value = int(text) if len(text) <= 20 else None
    if value is None or not -(2**63) <= value < 2**64:
        raise ContractError(f"not JSON: integer {text[:20]}… is too large" if len(text) > 20 else f"not JSON: integer {text} is too large")
    return value


def _no_constant(name: str) -> None:
    raise ContractError(f"not JSON: {name} is not a JSON number")


def _short(value: Any) -> str:
    """A bounded repr for reasons: bodies are up to 256 KB and may nest deeply."""
    import reprlib

    shortener = reprlib.Repr()
    shortener.maxlevel, shortener.maxstring, shortener.maxother, shortener.maxlist, shortener.maxdict = 3, 60, 60, 4, 4
    return shortener.repr(value)


def decode(body: str | bytes) -> dict:
    """The JSON object in a body; ContractError with a one-line, bounded reason otherwise.

    Any body, however hostile (invalid UTF-8, NaN or Infinity, 5000-digit numbers, deep nesting),
    ends in a dict or a ContractError, never another exception. Frames and events both read with it.
    """
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ContractError(f"not UTF-8: invalid byte at {exc.start}") from None
    try:
        message = json.loads(body, parse_float=_finite, parse_int=_int64, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise ContractError(f"not JSON: {exc.msg} at char {exc.pos}") from None
    except RecursionError:
        raise ContractError("not JSON: nested too deeply") from None
    if not isinstance(message, dict):
        raise ContractError("not a JSON object")
    return message


def parse(body: str | bytes) -> dict:
    """Decode and validate one message body; raises ContractError with a one-line, bounded reason."""
    message = decode(body)
    if message.get("schema") != SCHEMA_ID:
        raise ContractError(f"wrong schema {_short(message.get('schema'))}, expected {SCHEMA_ID!r}")
    error = _checker.first_error(message)
    if error is not None:
        raise ContractError(error)
    return message


if __name__ == "__main__":
    print(json.dumps(SCHEMA, indent=2))
