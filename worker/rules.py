"""Rules, v1 (`kinase.rules/1`): the lines, zones and alerts that turn tracked objects into events.

An operator writes one file (YAML or JSON); `kinase rules check` reports every error in it at once,
one line each with its path (`streams.cam1.lines[0].points: needs 2 points`); `kinase rules apply`
stores it, versioned, in the environment's frames bucket; workers read the version in force with
`fetch_current`. The JSON Schema below is the single source of truth; docs/rules.schema.json is
generated from it (`python -m worker.rules`) and a test keeps the two equal. The worker imports
this module too, so it imports nothing from kinase_cli, and PyYAML only when a file is not JSON.

Coordinates are normalized 0..1, x to the right and y down (as Rekognition's regions of interest),
so a rule survives a change of the camera's resolution.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from worker.layout import RULES_PREFIX

SCHEMA_ID = "kinase.rules/1"
MAX_FILE_BYTES = 1024 * 1024
WILDCARD = "*"
# What analysis makes of tracked objects, and the two events the pipeline makes when a camera's media
# stops and comes back (docs/EVENTS.md); every one can be an alert.
OBJECT_EVENTS = ("line_crossed", "zone_entered", "zone_left", "dwell", "object_appeared")
CAMERA_EVENTS = ("camera_offline", "camera_online")
EVENTS = OBJECT_EVENTS + CAMERA_EVENTS
ANCHORS = ("center", "bottom_center", "top_center")
# One-frame jitter across a line never counts: a crossing needs the object seen on the far side in
# observations spanning at least this long, and a single frame spans 0 s. Half a second is 5 frames
# at 10 fps and 2 observations at 1 fps sampling: short flicker is ignored, a person walking through
# a door (seconds on the far side) is not. Must be > 0 (supervision #2598: flicker counted as crossings).
MIN_FAR_SIDE_S = 0.5
# Lines default to the box centre (stable under partial occlusion at the frame edge); zones to the
# bottom centre, where the object touches the ground the zone is drawn on.
LINE_ANCHOR = "center"
ZONE_ANCHOR = "bottom_center"
# A zone's border is as jittery as a line: an object's membership changes only when its anchor has
# been on the other side of the border in observations spanning this long (a box on the border never flaps).
ZONE_SETTLE_S = MIN_FAR_SIDE_S
# object_appeared: the first sighting of a class after this long without one (Rekognition's stream
# processors' "person appeared"); a person walking in and out of view all day is one event per visit.
APPEARED_QUIET_S = 30.0
COOLDOWN_S = 60.0  # one alert per rule and stream per minute: one person at 5 fps is not hundreds of notifications
MAX_CLIP_S = 300  # GetClip returns at most 200 fragments: 200-400 s at the usual 1-2 s fragments

# The store, in the environment's frames bucket (one bucket per environment): every applied version
# stays under its number, and `current.json` holds a copy of the one in force, so a worker reads one
# object (and, with its ETag, gets 304 Not Modified while nothing changes).
CURRENT_KEY = f"{RULES_PREFIX}current.json"
VERSION_DIGITS = 6

_POINT = {
    "type": "array",
    "description": "[x, y], normalized 0..1, x to the right, y down",
    "items": {"type": "number", "minimum": 0, "maximum": 1},
    "minItems": 2,
    "maxItems": 2,
}
_NAME = {"type": "string", "minLength": 1, "maxLength": 100}
_CLASSES = {
    "type": "array",
    "description": "class names of the model; all classes when absent",
    "items": {"type": "string", "minLength": 1, "maxLength": 100},
    "minItems": 1,
}
_ANCHOR = {"enum": list(ANCHORS), "description": "the point of a box that is tested against the line or zone"}

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://kinase.dev/schemas/rules-1.json",
    "title": "kinase rules (v1)",
    "type": "object",
    "required": ["schema", "streams"],
    "additionalProperties": False,
    "properties": {
        "schema": {"const": SCHEMA_ID},
        "streams": {
            "type": "object",
            "description": 'rules per stream name; "*" for every stream; a stream\'s own entry replaces "*"',
            "propertyNames": {"pattern": r"^(\*|[a-zA-Z0-9_.-]{1,256})$"},
            "additionalProperties": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "lines": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["name", "points", "in_side"],
                            "additionalProperties": False,
                            "properties": {
                                "name": _NAME,
                                "points": {**_POINT, "description": "the line's two ends", "items": _POINT},
                                "in_side": {**_POINT, "description": 'a point on the "in" side: crossing towards it is "in"'},
                                "classes": _CLASSES,
                                "min_far_side_s": {
                                    "type": "number",
                                    "exclusiveMinimum": 0,
                                    "description": f"seconds an object must stay on the far side for a crossing to count (default {MIN_FAR_SIDE_S})",
                                },
                                "anchor": {**_ANCHOR, "description": f"{_ANCHOR['description']} (default {LINE_ANCHOR})"},
                            },
                        },
                    },
                    "zones": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["name", "polygon"],
                            "additionalProperties": False,
                            "properties": {
                                "name": _NAME,
                                "polygon": {
                                    "type": "array",
                                    "description": "the zone's corners in order; not self-intersecting",
                                    "items": _POINT,
                                    "minItems": 3,
                                },
                                "classes": _CLASSES,
                                "dwell_s": {"type": "number", "exclusiveMinimum": 0, "description": "a dwell event after this long inside"},
                                "anchor": {**_ANCHOR, "description": f"{_ANCHOR['description']} (default {ZONE_ANCHOR})"},
                            },
                        },
                    },
                    "appeared": {
                        "type": "array",
                        "description": "object_appeared events: the first sighting of a class after a quiet period",
                        "items": {
                            "type": "object",
                            "required": ["name"],
                            "additionalProperties": False,
                            "properties": {
                                "name": _NAME,
                                "classes": _CLASSES,
                                "quiet_s": {
                                    "type": "number",
                                    "exclusiveMinimum": 0,
                                    "description": f"seconds without a sighting of the class before the next one is an event (default {APPEARED_QUIET_S:g})",
                                },
                            },
                        },
                    },
                    "alerts": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["events"],
                            "additionalProperties": False,
                            "properties": {
                                "events": {"type": "array", "items": {"enum": list(EVENTS)}, "minItems": 1, "uniqueItems": True},
                                "classes": _CLASSES,
                                "min_conf": {"type": "number", "minimum": 0, "maximum": 1, "description": "default 0"},
                                "cooldown_s": {
                                    "type": "number",
                                    "minimum": 0,
                                    "description": f"at most one alert of this rule per stream in this time (default {COOLDOWN_S:g})",
                                },
                                "clip": {
                                    "type": "object",
                                    "description": "ask for a clip of the stream around the event",
                                    "required": ["pre_s", "post_s"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "pre_s": {"type": "number", "minimum": 0, "maximum": MAX_CLIP_S},
                                        "post_s": {"type": "number", "minimum": 0, "maximum": MAX_CLIP_S},
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}

Point = tuple[float, float]


@dataclass(frozen=True)
class Line:
    name: str
    points: tuple[Point, Point]
    in_side: Point
    classes: tuple[str, ...] | None
    min_far_side_s: float = MIN_FAR_SIDE_S
    anchor: str = LINE_ANCHOR


@dataclass(frozen=True)
class Zone:
    name: str
    polygon: tuple[Point, ...]
    classes: tuple[str, ...] | None
    dwell_s: float | None = None
    anchor: str = ZONE_ANCHOR


@dataclass(frozen=True)
class Appeared:
    name: str
    classes: tuple[str, ...] | None
    quiet_s: float = APPEARED_QUIET_S


@dataclass(frozen=True)
class Clip:
    pre_s: float
    post_s: float


@dataclass(frozen=True)
class Alert:
    events: tuple[str, ...]
    classes: tuple[str, ...] | None
    min_conf: float = 0.0
    cooldown_s: float = COOLDOWN_S
    clip: Clip | None = None


@dataclass(frozen=True)
class StreamRules:
    lines: tuple[Line, ...] = ()
    zones: tuple[Zone, ...] = ()
    alerts: tuple[Alert, ...] = ()
    appeared: tuple[Appeared, ...] = ()


NO_RULES = StreamRules()


@dataclass(frozen=True)
class Rules:
    streams: Mapping[str, StreamRules]

    def rules_for(self, stream_name: str) -> StreamRules:
        """A stream's own entry when it has one, else the "*" entry, else none. The own entry replaces
        "*" whole (no merging): what applies to a stream is what its one entry says."""
        for name in (stream_name, WILDCARD):
            if name in self.streams:
                return self.streams[name]
        return NO_RULES


class RulesError(ValueError):
    """A rules document that is refused; `errors` lists every reason, one line each with its path."""

    def __init__(self, errors: list[str]):
        super().__init__(f"{len(errors)} error(s): " + "; ".join(errors[:3]))
        self.errors = errors


# ---- reading -------------------------------------------------------------------------------------


def decode(text: str | bytes) -> Any:
    """The document in a JSON or YAML text (JSON when it starts with `{`); RulesError on what is neither.

    YAML aliases are refused (a few lines of them expand to gigabytes), and so are keys that are not
    strings and numbers that are not finite (YAML's `.nan`, JSON's NaN), which the schema cannot see.
    """
    if isinstance(text, bytes):
        if len(text) > MAX_FILE_BYTES:
            raise RulesError([f"(file): larger than {MAX_FILE_BYTES // 1024} KiB"])
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RulesError([f"(file): not UTF-8: invalid byte at {exc.start}"]) from None
    if text.lstrip().startswith("{"):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RulesError([f"(file): not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"]) from None
        except RecursionError:
            raise RulesError(["(file): nested too deeply"]) from None
    else:
        doc = _yaml(text)
    problems = list(_unrepresentable(doc, ()))
    if problems:
        raise RulesError(problems)
    return doc


def _yaml(text: str) -> Any:
    import yaml

    class _NoAliases(yaml.SafeLoader):
        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise yaml.MarkedYAMLError("while reading the rules", None, "aliases (*name) are not allowed", event.start_mark)
            return super().compose_node(parent, index)

    try:
        return yaml.load(text, Loader=_NoAliases)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise RulesError([f"(file): not YAML: {exc.problem}{where}"]) from None
    except (yaml.YAMLError, RecursionError) as exc:
        raise RulesError([f"(file): not YAML: {type(exc).__name__}"]) from None


def _unrepresentable(value: Any, path: tuple) -> list[str]:
    if isinstance(value, dict):
        found = []
        for key, item in value.items():
            if not isinstance(key, str):
                found.append(f"{path_text(path)}: key {_short(key)} is not a string")
            else:
                found += _unrepresentable(item, (*path, key))
        return found
    if isinstance(value, list):
        return [problem for i, item in enumerate(value) for problem in _unrepresentable(item, (*path, i))]
    if isinstance(value, float) and not math.isfinite(value):
        return [f"{path_text(path)}: {value} is not a number"]
    if not isinstance(value, (str, int, float, bool, type(None))):
        return [f"{path_text(path)}: {type(value).__name__} values are not allowed"]
    return []


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def path_text(path: tuple | list) -> str:
    """`streams.cam1.lines[0].points`; keys that are not plain names in quotes: `streams["*"]`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _IDENT.fullmatch(part):
            text += f".{part}" if text else part
        else:
            text += f"[{json.dumps(part)}]"
    return text or "(root)"


def _short(value: Any, limit: int = 60) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


# ---- checking ------------------------------------------------------------------------------------

_validator = None


def _get_validator():
    global _validator
    if _validator is None:
        from jsonschema import Draft202012Validator

        _validator = Draft202012Validator(SCHEMA)
    return _validator


_KINDS = {"array": "a list", "object": "a mapping", "number": "a number", "string": "a string", "integer": "an integer"}


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return {dict: "a mapping", list: "a list", str: "a string", int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def _schema_errors(doc: Any) -> list[tuple[tuple, str]]:  # noqa: C901 one branch per jsonschema keyword, translated to words
    """jsonschema's errors as (path, one-line reason), in words an operator reads."""
    found = []
    for error in _get_validator().iter_errors(doc):
        path, v, instance = tuple(error.absolute_path), error.validator, error.instance
        if v == "additionalProperties":
            allowed = set(error.schema.get("properties", {}))
            found += [((*path, key), "unknown key") for key in instance if key not in allowed]
        elif v == "required":
            found += [((*path, key), "required") for key in error.validator_value if key not in instance]
        elif "propertyNames" in error.schema_path:
            found.append(((*path, instance), 'not a stream name: letters, digits, "_", "." and "-" (at most 256), or "*"'))
        elif v in ("minItems", "maxItems") and path[-1] == "points":
            found.append((path, "needs 2 points"))
        elif v == "minItems" and path[-1] == "polygon":
            found.append((path, "needs at least 3 points"))
        elif v in ("minItems", "maxItems") and error.schema.get("maxItems") == 2:
            found.append((path, f"a point is [x, y], got {_short(instance)}"))
        elif v in ("minimum", "maximum") and error.schema is _POINT["items"]:
            found.append((path, f"coordinates are normalized 0..1, got {_short(instance)}"))
        elif v == "type":
            wanted = error.validator_value if isinstance(error.validator_value, str) else error.validator_value[0]
            found.append((path, f"expected {_KINDS.get(wanted, wanted)}, got {_kind(instance)}"))
        elif v == "enum":
            found.append((path, f"{_short(instance)} is not one of {', '.join(map(str, error.validator_value))}"))
        elif v == "const":
            found.append((path, f"must be {json.dumps(error.validator_value)}, got {_short(instance)}"))
        elif v == "exclusiveMinimum":
            found.append((path, f"must be more than {error.validator_value}, got {_short(instance)}"))
        elif v in ("minimum", "maximum"):
            found.append((path, f"must be {'at least' if v == 'minimum' else 'at most'} {error.validator_value}, got {_short(instance)}"))
        elif v in ("minLength", "minItems") and error.validator_value == 1:
            found.append((path, "must not be empty"))
        elif v == "maxLength":
            found.append((path, f"longer than {error.validator_value} characters"))
        elif v == "uniqueItems":
            found.append((path, "lists an item twice"))
        else:
            found.append((path, error.message if len(error.message) <= 200 else f"fails {v}"))
    return found


def errors(doc: Any) -> list[str]:
    """Every error of a rules document, one line each: `<path>: <reason>`, sorted by path.

    The schema's errors first, then what a schema cannot say: a line of two equal points, an
    `in_side` point on the line, a polygon that crosses itself or has no area, two lines, zones or appeared rules
    of one stream with the same name (events name them). Items the schema refused are not checked further.
    """
    found = _schema_errors(doc)
    broken = {path for path, _ in found}

    def intact(path: tuple) -> bool:
        return not any(b[: len(path)] == path for b in broken)

    if isinstance(doc, dict) and isinstance(doc.get("streams"), dict):
        for stream, entry in doc["streams"].items():
            if isinstance(entry, dict):
                found += _semantic_errors(("streams", stream), entry, intact)
    found = list(dict.fromkeys(found))  # jsonschema reports `required` once per missing key, each naming them all
    found.sort(key=lambda item: _sort_key(item[0]))
    return [f"{path_text(path)}: {reason}" for path, reason in found]


def _sort_key(path: tuple) -> tuple:
    return tuple((0, p, "") if isinstance(p, int) else (1, 0, p) for p in path)


def _semantic_errors(base: tuple, entry: dict, intact) -> list[tuple[tuple, str]]:
    found: list[tuple[tuple, str]] = []
    names: dict[str, tuple] = {}
    for kind in ("lines", "zones", "appeared"):
        items = entry.get(kind)
        if not isinstance(items, list):
            continue
        for i, item in enumerate(items):
            path = (*base, kind, i)
            if not isinstance(item, dict):
                continue
            name = item.get("name")
            if isinstance(name, str) and intact((*path, "name")):
                if name in names:
                    found.append(((*path, "name"), f"{_short(name)} is already the name of {path_text(names[name][2:])}"))
                else:
                    names[name] = path
            if not intact(path):
                continue
            if kind == "appeared":
                continue
            if kind == "lines":
                a, b = item["points"]
                if a == b:
                    found.append(((*path, "points"), "the two points are equal"))
                elif _side(a, b, item["in_side"]) == 0:
                    found.append(((*path, "in_side"), 'is on the line: give a point on the "in" side'))
            else:
                problem = _polygon_problem(item["polygon"])
                if problem:
                    found.append(((*path, "polygon"), problem))
    return found


_EPS = 1e-12


def _cross(o: Point, a: Point, b: Point) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def _side(a: Point, b: Point, p: Point) -> int:
    """+1 or -1 for the two sides of the line through a and b, 0 on it."""
    c = _cross(a, b, p)
    return 0 if abs(c) <= _EPS else (1 if c > 0 else -1)


def _on_segment(a: Point, b: Point, p: Point) -> bool:
    return min(a[0], b[0]) - _EPS <= p[0] <= max(a[0], b[0]) + _EPS and min(a[1], b[1]) - _EPS <= p[1] <= max(a[1], b[1]) + _EPS


def _segments_meet(a: Point, b: Point, c: Point, d: Point) -> bool:
    d1, d2, d3, d4 = _side(c, d, a), _side(c, d, b), _side(a, b, c), _side(a, b, d)
    if d1 * d2 < 0 and d3 * d4 < 0:
        return True
    return (
        (d1 == 0 and _on_segment(c, d, a))
        or (d2 == 0 and _on_segment(c, d, b))
        or (d3 == 0 and _on_segment(a, b, c))
        or (d4 == 0 and _on_segment(a, b, d))
    )


def _polygon_problem(polygon: list) -> str | None:
    points = [tuple(p) for p in polygon]
    n = len(points)
    area = sum(points[i][0] * points[(i + 1) % n][1] - points[(i + 1) % n][0] * points[i][1] for i in range(n)) / 2
    for i in range(n):
        if points[i] == points[(i + 1) % n]:
            return f"points {i} and {(i + 1) % n} are equal"
    for i in range(n):
        for j in range(i + 1, n):
            if j == i + 1 or (i == 0 and j == n - 1):  # neighbours share a corner
                continue
            if _segments_meet(points[i], points[(i + 1) % n], points[j], points[(j + 1) % n]):
                return f"crosses itself (edges {i} and {j})"
    return "has no area" if abs(area) <= _EPS else None


def warnings(doc: Any, *, streams: list[str] | None = None, classes: list[str] | None = None) -> list[str]:
    """What is probably a mistake but not an error, one line each with its path: a stream name that
    is not one of `streams` (its rules wait for it), a class that is not one of `classes` (it never matches)."""
    found: list[str] = []
    if not isinstance(doc, dict) or not isinstance(doc.get("streams"), dict):
        return found
    known_streams, known_classes = set(streams or ()), set(classes or ())
    for stream, entry in doc["streams"].items():
        base = ("streams", stream)
        if streams is not None and stream != WILDCARD and stream not in known_streams:
            found.append(f"{path_text(base)}: no stream {_short(stream)} in this environment; its rules apply when it exists")
        if classes is None or not isinstance(entry, dict):
            continue
        for kind in ("lines", "zones", "appeared", "alerts"):
            for i, item in enumerate(entry.get(kind) or ()):
                for j, name in enumerate((item.get("classes") or ()) if isinstance(item, dict) else ()):
                    if isinstance(name, str) and name not in known_classes:
                        found.append(f"{path_text((*base, kind, i, 'classes', j))}: {_short(name)} is not a class of the model")
    return found


def check(doc: Any) -> None:
    problems = errors(doc)
    if problems:
        raise RulesError(problems)


def load(text: str | bytes) -> Rules:
    """Rules from a YAML or JSON text, defaults filled; RulesError listing every error otherwise."""
    return build(decode(text))


def build(doc: Any) -> Rules:
    check(doc)

    def classes(item: dict) -> tuple[str, ...] | None:
        return tuple(item["classes"]) if "classes" in item else None

    def point(value: list) -> Point:
        return (float(value[0]), float(value[1]))

    streams = {}
    for name, entry in doc["streams"].items():
        streams[name] = StreamRules(
            lines=tuple(
                Line(
                    name=line["name"],
                    points=(point(line["points"][0]), point(line["points"][1])),
                    in_side=point(line["in_side"]),
                    classes=classes(line),
                    min_far_side_s=float(line.get("min_far_side_s", MIN_FAR_SIDE_S)),
                    anchor=line.get("anchor", LINE_ANCHOR),
                )
                for line in entry.get("lines", ())
            ),
            zones=tuple(
                Zone(
                    name=zone["name"],
                    polygon=tuple(point(p) for p in zone["polygon"]),
                    classes=classes(zone),
                    dwell_s=float(zone["dwell_s"]) if "dwell_s" in zone else None,
                    anchor=zone.get("anchor", ZONE_ANCHOR),
                )
                for zone in entry.get("zones", ())
            ),
            alerts=tuple(
                Alert(
                    events=tuple(alert["events"]),
                    classes=classes(alert),
                    min_conf=float(alert.get("min_conf", 0.0)),
                    cooldown_s=float(alert.get("cooldown_s", COOLDOWN_S)),
                    clip=Clip(float(alert["clip"]["pre_s"]), float(alert["clip"]["post_s"])) if "clip" in alert else None,
                )
                for alert in entry.get("alerts", ())
            ),
            appeared=tuple(
                Appeared(name=item["name"], classes=classes(item), quiet_s=float(item.get("quiet_s", APPEARED_QUIET_S)))
                for item in entry.get("appeared", ())
            ),
        )
    return Rules(streams=MappingProxyType(streams))


# ---- the store -----------------------------------------------------------------------------------


def version_key(version: int) -> str:
    return f"{RULES_PREFIX}v{version:0{VERSION_DIGITS}d}.json"


@dataclass(frozen=True)
class Current:
    """The rules in force: their version, when they were applied, the document as written, and the
    ETag of `current.json` (to ask S3 for it again only when it changed)."""

    version: int
    applied_at: str
    doc: dict
    rules: Rules
    etag: str


class RulesConflict(RuntimeError):
    """Another apply made a newer version current while this one was being stored."""


def _code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def fetch_current(s3, bucket: str, known: Current | None = None) -> Current | None:
    """The rules in force in an environment's frames bucket, None when none were ever applied.

    With `known` (the last result), S3 is asked with its ETag and answers 304 while nothing changed:
    then `known` comes back, so a worker may call this every few seconds. A stored document that is
    not valid raises RulesError: the caller keeps the rules it has.
    """
    kwargs = {"IfNoneMatch": known.etag} if known is not None else {}
    try:
        response = s3.get_object(Bucket=bucket, Key=CURRENT_KEY, **kwargs)
    except Exception as exc:  # botocore's ClientError, imported lazily
        code = _code(exc)
        if code in ("304", "NotModified") and known is not None:
            return known
        if code in ("NoSuchKey", "404"):
            return None
        raise
    body = response["Body"].read()
    try:
        stored = json.loads(body)
        version, applied_at, doc = int(stored["version"]), str(stored["applied_at"]), stored["rules"]
    except (ValueError, KeyError, TypeError):
        raise RulesError([f"{CURRENT_KEY}: not a stored rules version"]) from None
    return Current(version=version, applied_at=applied_at, doc=doc, rules=build(doc), etag=response["ETag"])


def latest_version(s3, bucket: str) -> int:
    """The highest stored version number, 0 when none."""
    highest = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{RULES_PREFIX}v"):
        for item in page.get("Contents", ()):
            digits = item["Key"][len(RULES_PREFIX) + 1 : -len(".json")]
            if digits.isdigit():
                highest = max(highest, int(digits))
    return highest


def publish(s3, bucket: str, doc: dict, applied_at: str) -> int:
    """Store a valid document as the next version and make it current; returns its version.

    Versions are written with a conditional put (If-None-Match: *), so two applies never share a
    number, and `current.json` with If-Match on the ETag read before, so it never goes back to an
    older version; a newer one made current meanwhile raises RulesConflict (S3 conditional writes).
    """
    check(doc)
    version = latest_version(s3, bucket) + 1
    for _ in range(20):
        try:
            s3.put_object(Bucket=bucket, Key=version_key(version), Body=_stored(version, applied_at, doc), IfNoneMatch="*")
            break
        except Exception as exc:
            if _code(exc) not in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                raise
            version += 1
    else:
        raise RulesConflict("too many concurrent applies; try again")
    for _ in range(20):
        try:
            head = s3.head_object(Bucket=bucket, Key=CURRENT_KEY)
            in_force = int(json.loads(s3.get_object(Bucket=bucket, Key=CURRENT_KEY, IfMatch=head["ETag"])["Body"].read())["version"])
            condition = {"IfMatch": head["ETag"]}
        except Exception as exc:
            if _code(exc) not in ("NoSuchKey", "404", "PreconditionFailed", "412"):
                raise
            if _code(exc) in ("PreconditionFailed", "412"):
                continue
            in_force, condition = 0, {"IfNoneMatch": "*"}
        if in_force > version:
            raise RulesConflict(f"v{in_force} was applied meanwhile and stays in force; v{version} is stored but not current")
        try:
            s3.put_object(Bucket=bucket, Key=CURRENT_KEY, Body=_stored(version, applied_at, doc), **condition)
            return version
        except Exception as exc:
            if _code(exc) not in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                raise
    raise RulesConflict("too many concurrent applies; try again")


def _stored(version: int, applied_at: str, doc: dict) -> bytes:
    return json.dumps({"version": version, "applied_at": applied_at, "rules": doc}, sort_keys=True, indent=1).encode()


if __name__ == "__main__":
    print(json.dumps(SCHEMA, indent=2))
