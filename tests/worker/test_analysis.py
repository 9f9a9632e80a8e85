"""StreamAnalyser on synthetic tracks: exact events for lines, zones, dwell, first sightings and alerts.

A track is a list of (time, track_id, class, bbox); boxes are 0.1 x 0.2, so a box centred at
(x, y) has its bottom centre (the zones' anchor) at (x, y + 0.1).
"""

from __future__ import annotations

import json
from collections import defaultdict

from worker import rules
from worker.events import contract
from worker.events.analysis import FrameInfo, StreamAnalyser

STREAM = "cam"
DOOR = {"name": "door", "points": [[0.5, 0.2], [0.5, 0.8]], "in_side": [0.9, 0.5]}
BAY = {"name": "bay", "polygon": [[0.2, 0.2], [0.6, 0.2], [0.6, 0.6], [0.2, 0.6]]}


def stream_rules(**entry) -> rules.StreamRules:
    return rules.build({"schema": rules.SCHEMA_ID, "streams": {STREAM: entry}}).rules_for(STREAM)


def box(x: float, y: float) -> list[float]:
    return [x, y, 0.1, 0.2]


def walk(track_id: int, cls: str, start: float, end: float, points: list[tuple[float, float]], fps: float = 5.0, conf: float = 0.9):
    """Observations of one track moving linearly through `points` between `start` and `end`, at `fps`."""
    steps = round((end - start) * fps)
    legs = len(points) - 1
    out = []
    for i in range(steps + 1):
        u = i / steps * legs if steps else 0.0
        leg = min(int(u), legs - 1) if legs else 0
        f = u - leg
        (x0, y0), (x1, y1) = points[leg], points[min(leg + 1, legs)]
        out.append((round(start + i / fps, 6), track_id, cls, box(x0 + (x1 - x0) * f, y0 + (y1 - y0) * f), conf))
    return out


def frames(*tracks, extra_times=()):
    """The observations of all tracks grouped into frames by time, plus empty frames at `extra_times`."""
    by_time: dict[float, list[dict]] = defaultdict(list)
    for track in tracks:
        for t, track_id, cls, bbox, conf in track:
            by_time[t].append({"class": cls, "class_id": 0, "conf": conf, "bbox": bbox, "track_id": track_id})
    for t in extra_times:
        by_time.setdefault(t, [])
    for t in sorted(by_time):
        info = FrameInfo(
            frame_id=f"{STREAM}/clip/{round(t * 1000):08d}", frame_time=t, snapshot_key=f"frames/{t}.jpg", width=640, height=480
        )
        yield info, by_time[t]


def run(analyser: StreamAnalyser, sequence) -> list[dict]:
    return [event for frame, tracked in sequence for event in analyser.update(frame, tracked)]


def brief(events: list[dict]) -> list[tuple]:
    return [(e["type"], e["time"], e["track_id"], e.get("direction") or e.get("zone"), e["counts"]) for e in events]


def at(t: float) -> str:
    return contract.iso(t)


# ---- lines ---------------------------------------------------------------------------------------


def test_crossings_count_in_both_directions_once_the_far_side_held():
    analyser = StreamAnalyser(stream_rules(lines=[DOOR]), STREAM)
    inward = walk(1, "person", 0.0, 2.0, [(0.2, 0.5), (0.8, 0.5)])  # x = 0.5 at t = 1.0
    outward = walk(2, "car", 10.0, 12.0, [(0.8, 0.4), (0.2, 0.4)])
    events = run(analyser, frames(inward, outward))
    # first far-side sighting at 1.2 (x 0.56; at 1.0 the centre is on the line), held 0.5 s at 1.8
    assert brief(events) == [
        ("line_crossed", at(1.8), 1, "in", {"in": {"person": 1}, "out": {}}),
        ("line_crossed", at(11.8), 2, "out", {"in": {"person": 1}, "out": {"car": 1}}),
    ]
    assert [(e["line"], e["rule"], e["class"], e["frame_id"], e["snapshot_key"]) for e in events] == [
        ("door", "door", "person", "cam/clip/00001800", "frames/1.8.jpg"),
        ("door", "door", "car", "cam/clip/00011800", "frames/11.8.jpg"),
    ]
    assert analyser.counts() == {"lines": {"door": {"in": {"person": 1}, "out": {"car": 1}}}, "zones": {}}
    for event in events:
        assert contract.parse(contract.dumps(event)) == event


def test_walking_up_to_the_line_and_back_never_counts():
    analyser = StreamAnalyser(stream_rules(lines=[DOOR]), STREAM)
    up_and_back = walk(1, "person", 0.0, 4.0, [(0.2, 0.5), (0.49, 0.5), (0.2, 0.5)])
    # over the line for 0.4 s (two frames at 5 fps, 0.2 s apart), then back: short of 0.5 s
    over_briefly = walk(2, "person", 10.0, 11.0, [(0.3, 0.5), (0.55, 0.5), (0.55, 0.5), (0.3, 0.5)])
    assert run(analyser, frames(up_and_back, over_briefly)) == []
    assert analyser.counts()["lines"]["door"] == {"in": {}, "out": {}}


def test_jitter_across_the_line_every_frame_never_counts():
    analyser = StreamAnalyser(stream_rules(lines=[DOOR]), STREAM)
    jitter = [(i / 10, 1, "person", box(0.49 if i % 2 else 0.51, 0.5), 0.9) for i in range(100)]
    assert run(analyser, frames(jitter)) == []


def test_crossing_the_lines_extension_outside_the_segment_never_counts():
    short = {**DOOR, "points": [[0.5, 0.2], [0.5, 0.4]]}
    analyser = StreamAnalyser(stream_rules(lines=[short]), STREAM)
    below = walk(1, "person", 0.0, 2.0, [(0.2, 0.7), (0.8, 0.7)])
    back_through = walk(1, "person", 5.0, 8.0, [(0.8, 0.7), (0.8, 0.3), (0.2, 0.3), (0.2, 0.3)])
    events = run(analyser, frames(below, back_through))
    # the first pass goes under the segment and counts nothing; it then goes back through it: "out"
    assert [(e["direction"], e["track_id"]) for e in events] == [("out", 1)]


def test_a_lines_classes_filter_what_it_counts():
    analyser = StreamAnalyser(stream_rules(lines=[{**DOOR, "classes": ["person"]}]), STREAM)
    car = walk(1, "car", 0.0, 2.0, [(0.2, 0.5), (0.8, 0.5)])
    person = walk(2, "person", 0.0, 2.0, [(0.2, 0.3), (0.8, 0.3)])
    assert [(e["track_id"], e["class"]) for e in run(analyser, frames(car, person))] == [(2, "person")]


def test_untracked_detections_never_count():
    analyser = StreamAnalyser(stream_rules(lines=[DOOR]), STREAM)
    sequence = [
        (frame, [{k: v for k, v in d.items() if k != "track_id"} for d in dets])
        for frame, dets in frames(walk(1, "person", 0.0, 2.0, [(0.2, 0.5), (0.8, 0.5)]))
    ]
    assert run(analyser, sequence) == []


# ---- zones ---------------------------------------------------------------------------------------


def test_zone_enter_dwell_once_per_stay_and_leave():
    analyser = StreamAnalyser(stream_rules(zones=[{**BAY, "dwell_s": 2}]), STREAM)
    # one sighting a second; the anchor (y + 0.1) is inside at t = 2..5 and 10..12
    ys = [0.0, 0.05, 0.3, 0.3, 0.3, 0.3, 0.6, 0.8, 0.9, 0.9, 0.3, 0.3, 0.3, 0.9, 0.9]
    events = run(analyser, frames([(float(t), 1, "person", box(0.4, y), 0.9) for t, y in enumerate(ys)]))
    occupied, empty = {"occupancy": {"person": 1}}, {"occupancy": {}}
    assert brief(events) == [
        # inside at 2 and 3: entered at 3 (held 1 s >= 0.5 s)
        ("zone_entered", at(3.0), 1, "bay", occupied),
        ("dwell", at(4.0), 1, "bay", occupied),  # 2 s after the stay began at 2
        ("zone_left", at(7.0), 1, "bay", empty),  # outside at 6 (y 0.7) and 7
        ("zone_entered", at(11.0), 1, "bay", occupied),
        ("dwell", at(12.0), 1, "bay", occupied),
        ("zone_left", at(14.0), 1, "bay", empty),
    ]
    assert [e["dwell_s"] for e in events if e["type"] == "dwell"] == [2.0, 2.0]


def test_occupancy_counts_the_objects_inside_per_class():
    analyser = StreamAnalyser(stream_rules(zones=[BAY]), STREAM)
    a = walk(1, "person", 0.0, 3.0, [(0.3, 0.3), (0.3, 0.3)])
    b = walk(2, "person", 0.0, 3.0, [(0.4, 0.3), (0.4, 0.3)])
    c = walk(3, "car", 0.0, 3.0, [(0.5, 0.3), (0.5, 0.3)])
    outside = walk(4, "car", 0.0, 3.0, [(0.9, 0.9), (0.9, 0.9)])
    events = run(analyser, frames(a, b, c, outside))
    assert [(e["track_id"], e["counts"]) for e in events] == [
        (1, {"occupancy": {"person": 1}}),
        (2, {"occupancy": {"person": 2}}),
        (3, {"occupancy": {"person": 2, "car": 1}}),
    ]
    assert analyser.counts() == {"lines": {}, "zones": {"bay": {"occupancy": {"person": 2, "car": 1}}}}


def test_a_box_on_the_zone_border_does_not_flap():
    analyser = StreamAnalyser(stream_rules(zones=[BAY]), STREAM)
    border = [(i / 10, 1, "person", box(0.4, 0.49 if i % 2 else 0.51), 0.9) for i in range(100)]  # anchor y 0.59 / 0.61
    assert run(analyser, frames(border)) == []


def test_a_track_that_ends_inside_leaves_the_zone_after_the_trackers_lost_time():
    analyser = StreamAnalyser(stream_rules(zones=[BAY]), STREAM, track_lost_s=2.0)
    vanishes = walk(1, "person", 0.0, 1.0, [(0.4, 0.3), (0.4, 0.3)])  # last seen at 1.0
    other = walk(2, "car", 0.0, 6.0, [(0.9, 0.9), (0.9, 0.9)])  # frames go on
    events = run(analyser, frames(vanishes, other))
    assert brief(events) == [
        ("zone_entered", at(0.6), 1, "bay", {"occupancy": {"person": 1}}),
        ("zone_left", at(3.2), 1, "bay", {"occupancy": {}}),  # the first frame more than 2 s after 1.0
    ]
    assert events[1]["frame_id"] == "cam/clip/00003200" and events[1]["class"] == "person"


# ---- first sightings -----------------------------------------------------------------------------


def test_object_appeared_after_a_quiet_period_only():
    analyser = StreamAnalyser(stream_rules(appeared=[{"name": "arrivals", "classes": ["person"], "quiet_s": 30}]), STREAM)
    first = walk(1, "person", 0.0, 10.0, [(0.3, 0.3), (0.4, 0.3)], fps=1)
    second = walk(2, "person", 5.0, 20.0, [(0.6, 0.3), (0.7, 0.3)], fps=1)  # a person was seen 1 s ago
    soon_after = walk(3, "person", 45.0, 46.0, [(0.3, 0.3), (0.3, 0.3)], fps=1)  # 25 s quiet: not enough
    much_later = walk(4, "person", 80.0, 81.0, [(0.3, 0.3), (0.3, 0.3)], fps=1)  # 34 s quiet
    two_at_once = walk(5, "person", 200.0, 201.0, [(0.3, 0.3)] * 2, fps=1) + walk(6, "person", 200.0, 201.0, [(0.6, 0.3)] * 2, fps=1)
    car = walk(7, "car", 100.0, 101.0, [(0.3, 0.3), (0.3, 0.3)], fps=1)
    events = run(analyser, frames(first, second, soon_after, much_later, two_at_once, car))
    assert [(e["type"], e["time"], e["track_id"], e["rule"], e["counts"]) for e in events] == [
        ("object_appeared", at(0.0), 1, "arrivals", {"visible": {"person": 1}}),
        ("object_appeared", at(80.0), 4, "arrivals", {"visible": {"person": 1}}),
        ("object_appeared", at(200.0), 5, "arrivals", {"visible": {"person": 2}}),
    ]


# ---- rules swap, snapshot, determinism -----------------------------------------------------------


def test_a_rules_swap_keeps_the_counts_of_lines_and_zones_that_keep_their_name():
    analyser = StreamAnalyser(stream_rules(lines=[DOOR, {**DOOR, "name": "gate"}], zones=[BAY]), STREAM)
    run(analyser, frames(walk(1, "person", 0.0, 2.0, [(0.2, 0.5), (0.8, 0.5)]), walk(2, "car", 0.0, 2.0, [(0.3, 0.3), (0.3, 0.3)])))
    assert analyser.counts()["lines"]["door"] == {"in": {"person": 1}, "out": {}}
    moved_door = {**DOOR, "points": [[0.6, 0.2], [0.6, 0.8]], "in_side": [0.9, 0.5]}
    analyser.set_rules(stream_rules(lines=[moved_door, {**DOOR, "name": "new"}], zones=[BAY]))
    assert analyser.counts() == {
        "lines": {"door": {"in": {"person": 1}, "out": {}}, "new": {"in": {}, "out": {}}},
        "zones": {"bay": {"occupancy": {"car": 1}}},
    }
    # the car stays a member (no second zone_entered); a new crossing adds to the kept count
    events = run(
        analyser, frames(walk(2, "car", 2.2, 3.0, [(0.3, 0.3), (0.3, 0.3)]), walk(3, "person", 3.0, 5.0, [(0.2, 0.7), (0.8, 0.7)]))
    )
    assert [(e["type"], e["rule"], e["counts"]) for e in events] == [
        ("line_crossed", "new", {"in": {"person": 1}, "out": {}}),  # x 0.5 first
        ("line_crossed", "door", {"in": {"person": 2}, "out": {}}),
    ]


ALERTS = [{"events": ["line_crossed", "dwell"], "classes": ["person"], "min_conf": 0.5, "cooldown_s": 60}]


def scenario():
    """Many tracks over lines, a zone with dwell, first sightings and alerts, at 5 fps for 100 s."""
    tracks = []
    for k in range(8):
        start = k * 12.0
        tracks.append(
            walk(
                10 + k, "person" if k % 3 else "car", start, start + 4, [(0.1, 0.3 + k * 0.05), (0.9, 0.3 + k * 0.05)], conf=0.4 + k * 0.07
            )
        )
        tracks.append(walk(30 + k, "person", start + 1, start + 9, [(0.3, 0.1), (0.3, 0.3), (0.3, 0.3), (0.3, 0.9)], conf=0.8))
        tracks.append(walk(50 + k, "car", start + 2, start + 4, [(0.4, 0.4), (0.4, 0.4)]))  # ends inside the zone
    entry = {
        "lines": [DOOR],
        "zones": [{**BAY, "dwell_s": 2}],
        "appeared": [{"name": "arrivals", "quiet_s": 5}],
        "alerts": ALERTS,
    }
    return stream_rules(**entry), list(frames(*tracks, extra_times=[100.0 + i for i in range(5)]))


def test_snapshot_and_restore_mid_sequence_gives_the_same_events_and_ids():
    rules_, sequence = scenario()
    whole = run(StreamAnalyser(rules_, STREAM), sequence)
    assert len(whole) > 30 and len({e["event_id"] for e in whole}) == len(whole)
    assert {e["type"] for e in whole} == {"line_crossed", "zone_entered", "zone_left", "dwell", "object_appeared"}
    # cuts: early; while a car that vanished inside the zone waits to be taken as ended; mid-stay
    for cut_time in (1.4, 12 * 2 + 5.0, 12 * 4 + 6.5):
        cut = next(i for i, (frame, _) in enumerate(sequence) if frame.frame_time >= cut_time)
        first = StreamAnalyser(rules_, STREAM)
        before = run(first, sequence[:cut])
        snapshot = first.snapshot()
        text = json.dumps(snapshot)
        assert before + run(first, sequence[cut:]) == whole
        assert json.dumps(snapshot) == text  # a copy: what the analyser does next does not change it
        second = StreamAnalyser(rules_, STREAM)
        second.restore(json.loads(text))
        assert before + run(second, sequence[cut:]) == whole
    # a restart that redoes frames from before its snapshot re-emits those frames' events with the same ids
    replayed = StreamAnalyser(rules_, STREAM)
    assert run(replayed, sequence) == whole


def test_cooldown_makes_one_alert_of_many_events_and_survives_a_restore():
    rules_ = stream_rules(lines=[DOOR], alerts=ALERTS)
    crowd = [walk(k, "person", k * 2.0, k * 2.0 + 2, [(0.2, 0.3 + k * 0.05), (0.8, 0.3 + k * 0.05)]) for k in range(1, 6)]
    later = walk(9, "person", 70.0, 72.0, [(0.2, 0.5), (0.8, 0.5)])
    weak = walk(8, "person", 140.0, 142.0, [(0.2, 0.5), (0.8, 0.5)], conf=0.3)  # below min_conf
    car = walk(7, "car", 150.0, 152.0, [(0.2, 0.5), (0.8, 0.5)])  # not an alert class
    last = walk(6, "person", 160.0, 162.0, [(0.2, 0.5), (0.8, 0.5)])
    sequence = list(frames(*crowd, later, weak, car, last))
    analyser = StreamAnalyser(rules_, STREAM)
    events = run(analyser, sequence)
    assert [(e["track_id"], e["alert"]) for e in events] == [
        (1, True),
        (2, False),
        (3, False),
        (4, False),
        (5, False),
        (9, True),
        (8, False),
        (7, False),
        (6, True),
    ]
    # cooldown state is in the snapshot: a worker that takes over at t = 4.5 still holds the next ones back
    cut = next(i for i, (frame, _) in enumerate(sequence) if frame.frame_time >= 4.5)  # after the first alert (3.8)
    first = StreamAnalyser(rules_, STREAM)
    before = run(first, sequence[:cut])
    second = StreamAnalyser(rules_, STREAM)
    second.restore(json.loads(json.dumps(first.snapshot())))
    assert before + run(second, sequence[cut:]) == events


def test_camera_events_are_marked_by_the_streams_alert_rules():
    analyser = StreamAnalyser(stream_rules(alerts=[{"events": ["camera_offline"], "cooldown_s": 300}]), STREAM)
    offline = [analyser.camera("camera_offline", t) for t in (1000.0, 1100.0, 1400.0)]
    online = analyser.camera("camera_online", 1001.0)
    assert [e["alert"] for e in offline] == [True, False, True] and online["alert"] is False
    assert offline[0]["event_id"] == contract.camera("camera_offline", STREAM, 1000.0)["event_id"] != offline[1]["event_id"]


def test_hostile_names_are_carried_as_plain_data():
    hostile = "[bold red]x[/]\x1b[2J<script>alert(1)</script>\u202e"
    analyser = StreamAnalyser(stream_rules(lines=[{**DOOR, "name": hostile}], zones=[{**BAY, "name": hostile + "z"}]), STREAM)
    events = run(analyser, frames(walk(1, hostile, 0.0, 2.0, [(0.2, 0.5), (0.8, 0.5)])))
    assert events and {e["rule"] for e in events} <= {hostile, hostile + "z"}
    crossed = next(e for e in events if e["type"] == "line_crossed")
    assert crossed["line"] == hostile and crossed["class"] == hostile and crossed["counts"] == {"in": {hostile: 1}, "out": {}}
    assert contract.parse(contract.dumps(crossed)) == crossed
    assert hostile in analyser.counts()["lines"]
