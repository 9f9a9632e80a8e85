"""What a stream's tracked objects do with its rules: line crossings, zone stays, first sightings.

One `StreamAnalyser` per stream, fed each analysed frame's tracked detections (those with a
`track_id`; unconfirmed ones never count) in frame order. It is pure Python and its state is small
and JSON-serialisable (`snapshot()`), because it runs on every frame beside the detector (issue 24:
tracking and rules at most 5% of a frame's CPU at 20 objects) and its state goes into the checkpoint.
Everything depends only on the frames given, never on the wall clock, so restoring a snapshot and
replaying the same frames gives the same events with the same ids. docs/EVENTS.md says how each
event is decided; the numbers are in worker/rules.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from worker.events import contract
from worker.events.alerts import Alerts
from worker.rules import ZONE_SETTLE_S, Appeared, Line, StreamRules, Zone

# How long a track may go unseen before the analyser takes it as ended (it leaves its zones): the
# tracker's own lost time (StreamTracker's lost_s), which the pipeline passes; this is its default.
TRACK_LOST_S = 2.0


@dataclass(frozen=True)
class FrameInfo:
    """The analysed frame: its id and time (kinase.frame/1), the S3 key of its annotated JPEG (None
    when the upload policy keeps it out of S3), and its size."""

    frame_id: str
    frame_time: float
    snapshot_key: str | None
    width: int
    height: int


def _anchor(bbox, anchor: str) -> tuple[float, float]:
    x, y, _, h = bbox
    if anchor == "center":
        return x, y
    return (x, y + h / 2) if anchor == "bottom_center" else (x, y - h / 2)


def _per_class(counts: dict[str, int]) -> dict[str, int]:
    return {cls: n for cls, n in counts.items() if n}


class _LineState:
    """One line's geometry, precomputed, its counts, and each track's side of it.

    A track's entry is [side, far_since, crossed, x, y]: the side it is established on (+1 the in
    side, -1 the other), since when it has been seen on the far side (None when it is not), whether
    its move to the far side went through the segment, and its last point on the established side.
    """

    __slots__ = ("rule", "ax", "ay", "bx", "by", "dx", "dy", "in_sign", "classes", "counts", "tracks")

    def __init__(self, rule: Line):
        self.rule = rule
        (self.ax, self.ay), (self.bx, self.by) = rule.points
        self.dx, self.dy = self.bx - self.ax, self.by - self.ay
        self.in_sign = 1.0 if self._cross(*rule.in_side) > 0 else -1.0
        self.classes = frozenset(rule.classes) if rule.classes is not None else None
        self.counts: dict[str, dict[str, int]] = {"in": {}, "out": {}}
        self.tracks: dict[int, list] = {}

    def geometry(self) -> list:
        return [self.rule.points, self.rule.in_side, self.rule.anchor]

    def _cross(self, x: float, y: float) -> float:
        return self.dx * (y - self.ay) - self.dy * (x - self.ax)

    def side(self, x: float, y: float) -> int:
        c = self._cross(x, y) * self.in_sign
        return 1 if c > 0 else (-1 if c < 0 else 0)

    def through_segment(self, x0: float, y0: float, x1: float, y1: float) -> bool:
        """Whether a move between two points on opposite sides of the line passes between its ends
        (not over the line's extension): the ends lie on opposite sides of the move, or on it."""
        mx, my = x1 - x0, y1 - y0
        a = mx * (self.ay - y0) - my * (self.ax - x0)
        b = mx * (self.by - y0) - my * (self.bx - x0)
        return a * b <= 0


class _ZoneState:
    """One zone's polygon and each track's membership: [member, since, pending_since, dwell_done, class]."""

    __slots__ = ("rule", "polygon", "x0", "y0", "x1", "y1", "classes", "tracks")

    def __init__(self, rule: Zone):
        self.rule = rule
        self.polygon = rule.polygon
        xs, ys = [p[0] for p in rule.polygon], [p[1] for p in rule.polygon]
        self.x0, self.y0, self.x1, self.y1 = min(xs), min(ys), max(xs), max(ys)
        self.classes = frozenset(rule.classes) if rule.classes is not None else None
        self.tracks: dict[int, list] = {}

    def contains(self, x: float, y: float) -> bool:
        if x < self.x0 or x > self.x1 or y < self.y0 or y > self.y1:
            return False
        inside = False
        polygon = self.polygon
        px, py = polygon[-1]
        for qx, qy in polygon:
            if (qy > y) != (py > y) and x < (px - qx) * (y - qy) / (py - qy) + qx:
                inside = not inside
            px, py = qx, qy
        return inside

    def occupancy(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for member, _, _, _, cls in self.tracks.values():
            if member:
                counts[cls] = counts.get(cls, 0) + 1
        return counts


class _AppearedState:
    __slots__ = ("rule", "classes", "last_seen")

    def __init__(self, rule: Appeared):
        self.rule = rule
        self.classes = frozenset(rule.classes) if rule.classes is not None else None
        self.last_seen: dict[str, float] = {}


class StreamAnalyser:
    """Events and running counts of one stream under its rules (worker.rules.StreamRules).

    `track_lost_s` is the tracker's lost time: a track not seen for longer is taken as ended, and
    leaves the zones it was in (zone_left at the first frame after that time).
    """

    def __init__(self, stream_rules: StreamRules, stream_name: str, *, track_lost_s: float = TRACK_LOST_S):
        self.stream_name = stream_name
        self.track_lost_s = track_lost_s
        self._lines: dict[str, _LineState] = {}
        self._zones: dict[str, _ZoneState] = {}
        self._appeared: dict[str, _AppearedState] = {}
        self._alerts = Alerts(())
        # track id -> [last seen, class, conf, bbox]: what a zone_left of an ended track says
        self._seen: dict[int, list] = {}
        self.set_rules(stream_rules)

    # ---- rules ---------------------------------------------------------------------------------

    def set_rules(self, stream_rules: StreamRules) -> None:
        """Swap the rules in force. A line or zone that keeps its name keeps its counts, and its
        tracks' states while its geometry is unchanged (a moved line's tracks settle again on their
        next sightings, counting nothing); a zone keeps its members of the classes it still counts,
        which leave by the usual rule if the polygon moved away from them."""
        old_lines, old_zones, old_appeared = self._lines, self._zones, self._appeared
        self._lines = {line.name: _LineState(line) for line in stream_rules.lines}
        self._zones = {zone.name: _ZoneState(zone) for zone in stream_rules.zones}
        self._appeared = {item.name: _AppearedState(item) for item in stream_rules.appeared}
        for name, state in self._lines.items():
            if name in old_lines:
                state.counts = old_lines[name].counts
                if old_lines[name].geometry() == state.geometry():
                    state.tracks = old_lines[name].tracks
        for name, state in self._zones.items():
            if name in old_zones:
                state.tracks = {t: s for t, s in old_zones[name].tracks.items() if state.classes is None or s[4] in state.classes}
        for name, state in self._appeared.items():
            if name in old_appeared:
                state.last_seen = old_appeared[name].last_seen
        self._alerts.set_rules(stream_rules.alerts)

    # ---- per frame -----------------------------------------------------------------------------

    def update(self, frame: FrameInfo, tracked: list[dict]) -> list[dict]:
        """The events of one frame, in order: first sightings, then per detection its lines' and
        zones' events, then zone_left of tracks that ended; each marked alert or not."""
        t = frame.frame_time
        events: list[dict] = []
        tracked = [d for d in tracked if "track_id" in d]
        if self._appeared:
            self._first_sightings(frame, tracked, events)
        for det in tracked:
            track_id, cls, bbox = int(det["track_id"]), det["class"], det["bbox"]
            self._seen[track_id] = [t, cls, det["conf"], list(bbox)]
            for line in self._lines.values():
                if line.classes is None or cls in line.classes:
                    self._observe_line(line, frame, track_id, det, *_anchor(bbox, line.rule.anchor), events)
            for zone in self._zones.values():
                if zone.classes is None or cls in zone.classes:
                    self._observe_zone(zone, frame, track_id, det, *_anchor(bbox, zone.rule.anchor), events)
        self._end_lost_tracks(frame, events)
        for event in events:
            self._alerts.mark(event, t)
        return events

    def _event(self, type_: str, frame: FrameInfo, track_id: int, cls: str, conf: float, bbox, rule: str, counts: dict, **fields) -> dict:
        return contract.build(
            type=type_,
            stream_name=self.stream_name,
            time=frame.frame_time,
            frame_id=frame.frame_id,
            snapshot_key=frame.snapshot_key,
            track_id=track_id,
            cls=cls,
            conf=conf,
            bbox=bbox,
            rule=rule,
            counts=counts,
            **fields,
        )

    def _observe_line(self, line: _LineState, frame: FrameInfo, track_id: int, det: dict, x: float, y: float, events: list) -> None:
        side = line.side(x, y)
        if side == 0:
            return
        state = line.tracks.get(track_id)
        if state is None:
            line.tracks[track_id] = [side, None, False, x, y]
            return
        if side == state[0]:
            state[1], state[3], state[4] = None, x, y
            return
        t = frame.frame_time
        if state[1] is None:
            state[1], state[2] = t, line.through_segment(state[3], state[4], x, y)
        if t - state[1] < line.rule.min_far_side_s:
            return
        crossed = state[2]
        line.tracks[track_id] = [side, None, False, x, y]
        if crossed:
            direction = "in" if side == 1 else "out"
            per_class = line.counts[direction]
            per_class[det["class"]] = per_class.get(det["class"], 0) + 1
            counts = {"in": dict(line.counts["in"]), "out": dict(line.counts["out"])}
            name = line.rule.name
            events.append(
                self._event(
                    "line_crossed", frame, track_id, det["class"], det["conf"], det["bbox"], name, counts, line=name, direction=direction
                )
            )

    def _observe_zone(self, zone: _ZoneState, frame: FrameInfo, track_id: int, det: dict, x: float, y: float, events: list) -> None:
        inside = zone.contains(x, y)
        state = zone.tracks.get(track_id)
        if state is None:
            if not inside:
                return
            state = zone.tracks[track_id] = [False, 0.0, None, False, det["class"]]
        t, name = frame.frame_time, zone.rule.name
        if inside == state[0]:
            if not inside:
                del zone.tracks[track_id]  # it stepped in and out before settling: nothing to remember
                return
            state[2] = None
        else:
            if state[2] is None:
                state[2] = t
            if t - state[2] < ZONE_SETTLE_S:
                return
            if inside:
                state[:] = [True, state[2], None, False, det["class"]]
            else:
                state[0] = False
                del zone.tracks[track_id]
            counts = {"occupancy": zone.occupancy()}
            kind = "zone_entered" if inside else "zone_left"
            events.append(self._event(kind, frame, track_id, state[4], det["conf"], det["bbox"], name, counts, zone=name))
        if state[0] and not state[3] and zone.rule.dwell_s is not None and t - state[1] >= zone.rule.dwell_s:
            state[3] = True
            counts = {"occupancy": zone.occupancy()}
            events.append(
                self._event("dwell", frame, track_id, state[4], det["conf"], det["bbox"], name, counts, zone=name, dwell_s=t - state[1])
            )

    def _first_sightings(self, frame: FrameInfo, tracked: list[dict], events: list) -> None:
        t = frame.frame_time
        first: dict[str, dict] = {}
        visible: dict[str, int] = {}
        for det in tracked:
            first.setdefault(det["class"], det)
            visible[det["class"]] = visible.get(det["class"], 0) + 1
        for state in self._appeared.values():
            for cls, det in first.items():
                if state.classes is not None and cls not in state.classes:
                    continue
                last = state.last_seen.get(cls)
                state.last_seen[cls] = t
                if last is None or t - last >= state.rule.quiet_s:
                    counts = {"visible": {cls: visible[cls]}}
                    events.append(
                        self._event("object_appeared", frame, int(det["track_id"]), cls, det["conf"], det["bbox"], state.rule.name, counts)
                    )

    def _end_lost_tracks(self, frame: FrameInfo, events: list) -> None:
        horizon = frame.frame_time - self.track_lost_s
        ended = sorted(track_id for track_id, seen in self._seen.items() if seen[0] < horizon)
        for track_id in ended:
            _, _, conf, bbox = self._seen.pop(track_id)
            for line in self._lines.values():
                line.tracks.pop(track_id, None)
            for zone in self._zones.values():
                state = zone.tracks.pop(track_id, None)
                if state is not None and state[0]:
                    counts = {"occupancy": zone.occupancy()}
                    name = zone.rule.name
                    events.append(self._event("zone_left", frame, track_id, state[4], conf, bbox, name, counts, zone=name))

    def camera(self, type_: str, time: float) -> dict:
        """camera_offline or camera_online (the pipeline decides when), marked alert or not under
        the same cooldowns as the analyser's own events."""
        event = contract.camera(type_, self.stream_name, time)
        self._alerts.mark(event, time)
        return event

    # ---- counts and state ----------------------------------------------------------------------

    def counts(self) -> dict:
        """The stream's running counts (kinase.frame/1 `counts`): crossings per line, direction and
        class since the line was created, and each zone's occupancy per class now."""
        return {
            "lines": {name: {"in": dict(line.counts["in"]), "out": dict(line.counts["out"])} for name, line in self._lines.items()},
            "zones": {name: {"occupancy": zone.occupancy()} for name, zone in self._zones.items()},
        }

    def snapshot(self) -> dict:
        """Everything the analyser remembers, as a JSON-serialisable copy (track ids as strings, JSON's keys)."""
        return {
            "lines": {
                name: {
                    "geometry": _jsonable(line.geometry()),
                    "counts": {direction: dict(per_class) for direction, per_class in line.counts.items()},
                    "tracks": {str(t): list(s) for t, s in line.tracks.items()},
                }
                for name, line in self._lines.items()
            },
            "zones": {name: {"tracks": {str(t): list(s) for t, s in zone.tracks.items()}} for name, zone in self._zones.items()},
            "appeared": {name: dict(state.last_seen) for name, state in self._appeared.items()},
            "seen": {str(t): [last, cls, conf, list(bbox)] for t, (last, cls, conf, bbox) in self._seen.items()},
            "alerts": self._alerts.snapshot(),
        }

    def restore(self, state: dict) -> None:
        """Take up a snapshot under the rules in force: what it says of lines, zones and appeared
        rules the rules no longer have is dropped, as on a rules swap."""
        for name, saved in state.get("lines", {}).items():
            line = self._lines.get(name)
            if line is not None:
                line.counts = {d: dict(saved["counts"].get(d, {})) for d in ("in", "out")}
                if saved.get("geometry") == _jsonable(line.geometry()):
                    line.tracks = {int(t): list(s) for t, s in saved["tracks"].items()}
        for name, saved in state.get("zones", {}).items():
            zone = self._zones.get(name)
            if zone is not None:
                tracks = {int(t): list(s) for t, s in saved["tracks"].items()}
                zone.tracks = {t: s for t, s in tracks.items() if zone.classes is None or s[4] in zone.classes}
        for name, saved in state.get("appeared", {}).items():
            if name in self._appeared:
                self._appeared[name].last_seen = dict(saved)
        self._seen = {int(t): list(s) for t, s in state.get("seen", {}).items()}
        self._alerts.restore(state.get("alerts", {}))


def _jsonable(value):
    """Tuples as lists, as a JSON round trip gives them back, so saved and current geometry compare."""
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return value
