"""Generated videos with exact event ground truth: shapes that cross a counting line both ways, walk up
to it and turn back, jitter across it, and visit or dwell in a zone.

The counts of `kinase.rules/1` events (lines, zones, dwell) can only be checked exactly against a
video whose every crossing is known. Each object here follows a scripted path, and its path is built
so that its events do not depend on detector noise, tracker confirmation delays or frame sampling:

- a crossing starts 0.36 of the width before the line and ends 0.36 after it (over 2 s on each side,
  far longer than any confirmation delay or `min_far_side_s`);
- an object that turns back stops with its centre 0.06 of the width before the line;
- a jitter puts the centre 0.015 of the width past the line on every other frame for at most
  `JITTER_S` (0.4 s, under the default `min_far_side_s` of 0.5 s), so no sampling of it ever sees
  the far side held that long;
- a dwell stays in the zone over `DWELL_S` + 3 s, a visit about 1 s: over the zone's settle time
  (worker.rules.ZONE_SETTLE_S, 0.5 s), under `DWELL_S` - 0.5 s.

Spacing, so that a tracker keeps every object's id (tests/worker/test_event_samples.py checks it):
objects move in three horizontal lanes whose boxes are 0.06 of the height apart, one object per lane
at a time, so two boxes never touch; an object walks 0.16 of the width a second (0.016 a frame at
10 fps: consecutive boxes of one object, 0.15 wide, overlap with IoU >= 0.8; a jitter's jumps of 0.03
with IoU >= 0.6); and a lane's next object appears `GAP_S` (2 s) after the last one vanished, which
walked away from where the next appears. Objects appear and vanish whole inside the frame, never across
its border, where a detector loses them.

The shapes model finds every object of this video in every frame with its class at the default 640x480
(the test measures it). Smaller frames blur the shapes: at 320x240 it also reports circles as squares.

Rules, normalised (`RULES`): the vertical line `door` at x = 0.5, "in" to the right; the zone `bay`
left of the line in the bottom lane, with `dwell_s` = `DWELL_S`. No line or zone filters classes.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kinase_cli.workflows.samples import CLASSES, COLORS, Shape, background, draw, write_video

LINE_X = 0.5
DWELL_S = 2.0
JITTER_S = 0.4  # the longest a jitter keeps the centre past the line: under the default min_far_side_s (0.5 s)
HALF_SIZE = 0.1  # a shape's half size, as a fraction of the frame's height (the model was trained on 0.06-0.14)
SPEED = 0.16  # fraction of the width per second
GAP_S = 2.0  # in one lane, between an object vanishing and the next appearing
LINE_LANES = (0.13, 0.39)  # the centres' y of the two lanes that cross the line
ZONE_LANE = 0.75
EDGE = 0.14  # where line-lane objects appear and vanish: this far from the frame's sides
ZONE_EDGE = 0.10  # where zone-lane objects appear and vanish
# The shapes model's one weak colour: on green shapes it sometimes also reports a circle as a square (or
# back) with conf >= 0.5, which a tracker can take for a second object. Counts here test tracking and
# rules, not the detector's colour vision.
PALETTE = tuple(c for c in COLORS if c != (40, 200, 40))
ZONE = ((0.24, 0.55), (0.46, 0.55), (0.46, 0.97), (0.24, 0.97))  # holds a box's centre, top and bottom alike

RULES = {
    "schema": "kinase.rules/1",
    "streams": {
        "*": {
            "lines": [{"name": "door", "points": [[LINE_X, 0.0], [LINE_X, 1.0]], "in_side": [0.9, 0.5]}],
            "zones": [{"name": "bay", "polygon": [list(p) for p in ZONE], "dwell_s": DWELL_S}],
        }
    },
}

# Each line lane repeats its own order of moves: both lanes cross both ways, and between them every move
# starts from both sides. A side is where the object appears: -1 left of the line, +1 right of it.
LINE_ROTATIONS = (
    (("cross", -1), ("approach", 1), ("cross", 1), ("jitter", -1)),
    (("jitter", 1), ("cross", 1), ("approach", -1), ("cross", -1)),
)
ZONE_ROTATION = ("dwell", "visit")
LANE_STARTS_S = (0.3, 2.5, 1.0)  # line lanes 0, 1, then the zone lane: crossings fall at different times


@dataclass(frozen=True)
class Actor:
    """One object: its class, colour, lane, first frame and its centre's x in each frame it is seen."""

    index: int
    kind: str
    side: int
    cls: int
    color: tuple[int, int, int]
    y: float
    start: int
    xs: tuple[float, ...]

    def x(self, frame: int) -> float | None:
        offset = frame - self.start
        return self.xs[offset] if 0 <= offset < len(self.xs) else None


@dataclass(frozen=True)
class EventVideo:
    """A generated video and its ground truth.

    `frames[i]`: the objects in frame i (`class`, `class_id`, normalised `bbox` [xc, yc, w, h] and
    `actor`, the object's index in `actors`). `events`: every event the rules must give, in frame order
    (`type`, `line` and `direction` or `zone`, `class`, `actor`, and `frame`: where the centre first is past
    the line, or where the object entered the zone or reached `dwell_s` in it; an analyser may report a
    crossing later, once the far side has held). `counts`: the totals of `events`, per line, direction
    and class, and per zone (`entered`, `left`, `dwell`) and class; classes with no event are left out.
    """

    path: Path
    fps: int
    size: tuple[int, int]
    frames: list[list[dict]]
    actors: list[Actor]
    events: list[dict]
    counts: dict
    rules: dict


def events_video(
    path: str | Path,
    *,
    fps: int = 10,
    duration: float = 30.0,
    size: tuple[int, int] = (640, 480),
    seed: int = 0,
    codec: str = "h264",
    gop: int | None = None,
) -> EventVideo:
    """Write the video (H.264, a key frame every `gop` frames, by default each second: one Kinesis Video
    fragment per second after `kinase stream put`); returns its ground truth. Objects keep appearing until
    the end, so every part of a long video has crossings; the seed picks classes, colours and the background."""
    width, height = size
    total = int(round(duration * fps))
    rng = np.random.default_rng(seed)
    bg = background(rng, width, height)
    actors = _schedule(rng, fps, total)
    r = HALF_SIZE * height
    frames: list[list[dict]] = []

    def images():
        for i in range(total):
            img = bg.copy()
            seen = []
            for actor in actors:
                x = actor.x(i)
                if x is not None:
                    shape = Shape(actor.cls, actor.color, x * width, actor.y * height, r)
                    draw(img, shape)
                    seen.append(
                        {"class": CLASSES[actor.cls], "class_id": actor.cls, "bbox": shape.bbox(width, height), "actor": actor.index}
                    )
            frames.append(seen)
            yield img

    write_video(path, images(), fps=fps, size=size, codec=codec, gop=gop)
    events = sorted((e for actor in actors for e in _events(actor, fps)), key=lambda e: (e["frame"], e["actor"]))
    return EventVideo(Path(path), fps, size, frames, actors, events, tally(events), RULES)


def _schedule(rng: np.random.Generator, fps: int, total: int) -> list[Actor]:
    """Every lane's objects one after another, `GAP_S` apart, for as long as the video lasts."""
    lanes = [(y, rotation) for y, rotation in zip(LINE_LANES, LINE_ROTATIONS)] + [(ZONE_LANE, tuple((k, -1) for k in ZONE_ROTATION))]
    actors: list[Actor] = []
    for (y, rotation), start_s in zip(lanes, LANE_STARTS_S):
        start, turn = int(round(start_s * fps)), 0
        while True:
            kind, side = rotation[turn % len(rotation)]
            xs = _path(kind, side, fps)
            if start + len(xs) > total:
                break
            cls, color = int(rng.integers(0, len(CLASSES))), PALETTE[int(rng.integers(0, len(PALETTE)))]
            actors.append(Actor(len(actors), kind, side, cls, color, y, start, tuple(xs)))
            start, turn = start + len(xs) + int(round(GAP_S * fps)), turn + 1
    return actors


def _walk(x0: float, x1: float, fps: int) -> list[float]:
    """The centre's x in each frame after x0 up to x1, at `SPEED`."""
    n = max(1, math.ceil(abs(x1 - x0) / SPEED * fps))
    return [x0 + (x1 - x0) * i / n for i in range(1, n + 1)]


def _hold(x: float, seconds: float, fps: int) -> list[float]:
    return [x] * int(round(seconds * fps))


def _path(kind: str, side: int, fps: int) -> list[float]:
    if kind in ("dwell", "visit"):
        inside = (ZONE[0][0] + ZONE[1][0]) / 2 if kind == "dwell" else ZONE[0][0] + 0.06
        stay = DWELL_S + 2.0 if kind == "dwell" else 0.3
        return [ZONE_EDGE, *_walk(ZONE_EDGE, inside, fps), *_hold(inside, stay, fps), *_walk(inside, ZONE_EDGE, fps)]
    start = LINE_X + side * (LINE_X - EDGE)
    if kind == "cross":
        return [start, *_walk(start, LINE_X - side * (LINE_X - EDGE), fps)]
    if kind == "approach":
        stop = LINE_X + side * 0.06
        return [start, *_walk(start, stop, fps), *_hold(stop, 0.5, fps), *_walk(stop, start, fps)]
    near, far = LINE_X + side * 0.015, LINE_X - side * 0.015
    far_frames = int(JITTER_S * fps / 2) + 1  # every other frame, the first and last far ones JITTER_S apart at most
    jitter = [far, near] * (far_frames - 1) + [far]
    return [start, *_walk(start, near, fps), *jitter, near, *_walk(near, start, fps)]


def _inside(x: float, y: float) -> bool:
    (x0, y0), (x1, y1) = ZONE[0], ZONE[2]
    return x0 < x < x1 and y0 < y < y1


def _events(actor: Actor, fps: int) -> list[dict]:
    base = {"class": CLASSES[actor.cls], "actor": actor.index}
    if actor.kind == "cross":
        crossed = next(i for i, x in enumerate(actor.xs) if (x - LINE_X) * actor.side < 0)
        direction = "in" if actor.side < 0 else "out"  # "in" is the right side
        return [{"type": "line_crossed", "line": "door", "direction": direction, "frame": actor.start + crossed, **base}]
    if actor.kind not in ("dwell", "visit"):
        return []
    inside = [i for i, x in enumerate(actor.xs) if _inside(x, actor.y)]
    found = [{"type": "zone_entered", "zone": "bay", "frame": actor.start + inside[0], **base}]
    if actor.kind == "dwell":
        found.append({"type": "dwell", "zone": "bay", "frame": actor.start + inside[0] + int(round(DWELL_S * fps)), **base})
    found.append({"type": "zone_left", "zone": "bay", "frame": actor.start + inside[-1] + 1, **base})
    return found


def tally(events: list[dict]) -> dict:
    """Events counted as `EventVideo.counts` is: `{"lines": {line: {"in": {class: n}, "out": ...}},
    "zones": {zone: {"entered": ..., "left": ..., "dwell": ...}}}`, the video's line and zone always there,
    classes with no event left out. Takes this module's events and `kinase.event/1` events alike (other
    types are not counted), so a test compares what the worker published with the truth in one assert."""
    kinds = {"zone_entered": "entered", "zone_left": "left", "dwell": "dwell"}
    lines: dict[str, dict[str, Counter]] = {"door": {"in": Counter(), "out": Counter()}}
    zones: dict[str, dict[str, Counter]] = {"bay": {kind: Counter() for kind in kinds.values()}}
    for e in events:
        if e["type"] == "line_crossed":
            lines.setdefault(e["line"], {"in": Counter(), "out": Counter()})[e["direction"]][e["class"]] += 1
        elif e["type"] in kinds:
            zones.setdefault(e["zone"], {kind: Counter() for kind in kinds.values()})[kinds[e["type"]]][e["class"]] += 1
    return {"lines": _plain(lines), "zones": _plain(zones)}


def _plain(table: dict[str, dict[str, Counter]]) -> dict:
    return {name: {key: dict(sorted(counter.items())) for key, counter in item.items()} for name, item in table.items()}
