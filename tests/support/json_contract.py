"""The `--json` rules of docs/OPERATIONS.md ("Machine output"), as checks a test can run on any output.

One envelope `{"kinase": 1, "command": ..., "data": ...}`; snake_case keys at every depth, except
in the maps the document names as keyed by data (stack outputs, worker variables, ack events,
class names); times as ISO 8601 UTC with milliseconds and a Z.
"""

from __future__ import annotations

import json
import re

SNAKE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
TIME_KEYS = ("timestamp", "frame_time")
UNIT_SUFFIXES = ("_ms", "_s", "_seconds")

# A stream's running counts (kinase.frame/1 `counts`): keyed by line, zone and class names.
COUNTS = (("lines",), ("lines", "*", "in"), ("lines", "*", "out"), ("zones",), ("zones", "*", "occupancy"))


def _counts_at(*path: str) -> tuple[tuple[str, ...], ...]:
    return tuple((*path, *inside) for inside in COUNTS)


# Where keys are names kinase does not choose, by command: paths of keys, "*" for any list item or key.
DATA_MAPS: dict[str, tuple[tuple[str, ...], ...]] = {
    "status": _counts_at("counts") + _counts_at("fleet", "streams", "*", "counts"),
    "fleet status": _counts_at("streams", "*", "counts"),
    "stream ls": _counts_at("streams", "*", "counts"),
    "outputs": ((),),
    "deploy": ((),),
    "run-task": (("overrides",),),
    "stream put": (("acks",),),
    "demo": (
        ("put", "acks"),
        ("watch", "classes"),
        ("watch", "counts"),
        ("accuracy", "per_class"),
        ("events", "streams"),
        ("events", "truth", "lines"),
        ("events", "truth", "zones"),
    ),
    "rules show": (("rules", "streams"),),
}


def is_time_key(key: str) -> bool:
    return key.endswith("_at") or key in TIME_KEYS


def _declared(declared: tuple[str, ...], path: tuple[str, ...]) -> bool:
    return len(declared) == len(path) and all(d in ("*", p) for d, p in zip(declared, path, strict=True))


def problems(value, data_maps: tuple[tuple[str, ...], ...] = (), path: tuple[str, ...] = ()) -> list[str]:
    """Every place where `value` breaks the key or time rules, as readable strings (empty when it keeps them)."""
    found: list[str] = []
    where = ".".join(path) or "data"
    if isinstance(value, list):
        for item in value:
            found += problems(item, data_maps, (*path, "*"))
    elif isinstance(value, dict):
        keyed_by_data = any(_declared(declared, path) for declared in data_maps)
        for key, item in value.items():
            if not keyed_by_data and not SNAKE.match(key):
                found.append(f"{where}: key {key!r} is not snake_case")
            if not keyed_by_data and is_time_key(key) and item is not None and not (isinstance(item, str) and ISO_UTC.match(item)):
                found.append(f"{where}.{key}: {item!r} is not an ISO 8601 UTC time")
            if (
                not keyed_by_data
                and ("time" in key or key.endswith("_at"))
                and isinstance(item, (int, float))
                and not isinstance(item, bool)
                and not key.endswith(UNIT_SUFFIXES)
            ):
                found.append(f"{where}.{key}: a time as a bare number ({item!r})")
            found += problems(item, data_maps, (*path, key))
    return found


def envelope(stdout: str, command: str) -> dict:
    """The one envelope on stdout, checked; returns its `data`."""
    lines = stdout.strip().splitlines()
    assert len(lines) == 1, f"{command}: expected one JSON line on stdout, got {len(lines)}: {stdout[:500]}"
    obj = json.loads(lines[0])
    assert set(obj) == {"kinase", "command", "data"}, obj.keys()
    assert obj["kinase"] == 1 and obj["command"] == command, (obj["kinase"], obj["command"])
    bad = problems(obj["data"], DATA_MAPS.get(command, ()))
    assert not bad, f"{command}: {bad}"
    return obj["data"]


def json_lines(stdout: str, what: str) -> list[dict]:
    """A streaming command's output: one JSON object per line, each keeping the same rules."""
    objects = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    for obj in objects:
        bad = problems(obj)
        assert not bad, f"{what}: {bad}"
    return objects
