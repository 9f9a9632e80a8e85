"""StreamTracker (worker/events/tracking.py): ids on known paths, confirmation, gaps in seconds,
per-class tracks, and snapshot -> JSON -> restore replaying to the same ids."""

from __future__ import annotations

import json

import pytest

from worker.events.tracking import StreamTracker

FPS = 10
PERSON, CAR = 0, 2


def det(x: float, y: float, class_id: int = PERSON, conf: float = 0.9, w: float = 0.06, h: float = 0.1) -> dict:
    return {"class": {PERSON: "person", CAR: "car"}[class_id], "class_id": class_id, "conf": conf, "bbox": [x, y, w, h]}


def walk(start: tuple[float, float], step: tuple[float, float], frames: int) -> list[tuple[float, float]]:
    return [(start[0] + step[0] * i, start[1] + step[1] * i) for i in range(frames)]


def run(tracker: StreamTracker, frames: list[list[dict]], t0: float = 0.0) -> list[list[dict]]:
    return [tracker.update(dets, t0 + i / FPS) for i, dets in enumerate(frames)]


def ids_of(out: list[list[dict]], position: int) -> list[int | None]:
    return [frame[position].get("track_id") for frame in out]


def test_objects_on_known_paths_keep_one_id_each_from_confirmation():
    paths = [walk((0.1, 0.2), (0.01, 0.0), 30), walk((0.9, 0.5), (-0.01, 0.005), 30), walk((0.5, 0.9), (0.0, -0.015), 30)]
    out = run(StreamTracker(), [[det(*p[i]) for p in paths] for i in range(30)])

    per_object = [ids_of(out, k) for k in range(3)]
    assert all(ids[0] is None for ids in per_object)  # one sighting is not a track yet
    assert [len(set(ids[1:])) for ids in per_object] == [1, 1, 1]
    assert len({ids[1] for ids in per_object}) == 3


def test_output_is_the_input_in_order_plus_track_id_and_the_input_is_untouched():
    frames = [[det(0.2 + 0.01 * i, 0.3, conf=0.8), det(0.7, 0.6 - 0.01 * i, CAR, conf=0.7)] for i in range(3)]
    sent = json.loads(json.dumps(frames))
    out = run(StreamTracker(), frames)

    assert frames == sent
    for got, given in zip(out[2], frames[2]):
        assert {k: v for k, v in got.items() if k != "track_id"} == given
        assert isinstance(got["track_id"], int)


def test_two_objects_crossing_paths_keep_their_ids():
    left_to_right = walk((0.2, 0.50), (0.02, 0.0), 30)
    right_to_left = walk((0.8, 0.53), (-0.02, 0.0), 30)
    out = run(StreamTracker(), [[det(*a), det(*b)] for a, b in zip(left_to_right, right_to_left)])

    a, b = ids_of(out, 0), ids_of(out, 1)
    assert len(set(a[1:])) == 1 and len(set(b[1:])) == 1
    assert a[1] != b[1]


def test_an_object_seen_in_one_frame_gets_no_id():
    path = walk((0.1, 0.2), (0.01, 0.0), 10)
    frames = [[det(*p)] for p in path]
    frames[5] = [*frames[5], det(0.7, 0.7)]
    out = run(StreamTracker(), frames)

    assert "track_id" not in out[5][1]
    assert {d["track_id"] for frame in out[1:] for d in frame if "track_id" in d} == {out[1][0]["track_id"]}


@pytest.mark.parametrize(("gap_s", "same_id"), [(1.5, True), (3.0, False)])
def test_a_gap_shorter_than_lost_s_keeps_the_id_a_longer_one_ends_it(gap_s, same_id):
    """The gap is media time (frames sampled out or dropped), not a count of update calls."""
    tracker = StreamTracker(lost_s=2.0)
    step = (0.005, 0.0)
    before = run(tracker, [[det(*p)] for p in walk((0.1, 0.4), step, 10)])
    resume_at = 0.9 + gap_s
    moved = int(round(resume_at * FPS))
    after = run(tracker, [[det(*p)] for p in walk((0.1 + step[0] * moved, 0.4), step, 5)], t0=resume_at)

    old_id = before[-1][0]["track_id"]
    if same_id:
        assert ids_of(after, 0) == [old_id] * 5
    else:
        assert "track_id" not in after[0][0]  # a new track, unconfirmed on its first frame
        assert len(set(ids_of(after, 0)[1:])) == 1 and after[1][0]["track_id"] > old_id


def test_a_box_that_changes_class_takes_neither_its_old_id_nor_the_other_class_ids():
    person = walk((0.3, 0.5), (0.01, 0.0), 12)
    car = walk((0.32, 0.5), (0.01, 0.0), 12)  # the car's box overlaps the person's throughout
    frames = [[det(*p), det(*c, CAR)] for p, c in zip(person, car)]
    frames[6:] = [[det(*p, CAR), det(*c, CAR)] for p, c in zip(person[6:], car[6:])]  # the detector now calls the person a car
    out = run(StreamTracker(), frames)

    person_id, car_id = out[5][0]["track_id"], out[5][1]["track_id"]
    assert person_id != car_id
    assert [f[1]["track_id"] for f in out[6:]] == [car_id] * 6
    assert "track_id" not in out[6][0]
    assert {f[0]["track_id"] for f in out[7:]}.isdisjoint({person_id, car_id})


def test_snapshot_through_json_restores_to_the_same_ids_and_new_ids_after_every_old_one():
    paths = [walk((0.1 + 0.15 * k, 0.2 + 0.05 * k), (0.008, 0.004 * (k - 2)), 40) for k in range(5)]
    frames = [[det(*p[i], class_id=PERSON if k % 2 else CAR, conf=0.55 + 0.08 * k) for k, p in enumerate(paths)] for i in range(40)]
    frames[22] = frames[22][1:]  # a miss: a lost track is in the snapshot
    original = StreamTracker()
    first = run(original, frames[:20])
    state = json.loads(json.dumps(original.snapshot()))
    rest = run(original, frames[20:], t0=2.0)

    restored = StreamTracker()
    restored.restore(state)
    replay = run(restored, frames[20:], t0=2.0)

    assert replay == rest
    used = {d["track_id"] for frame in first + rest for d in frame if "track_id" in d}
    newcomer = run(restored, [[*frames[-1], det(0.5, 0.05)], [*frames[-1], det(0.51, 0.05)]], t0=4.0)
    assert newcomer[1][-1]["track_id"] > max(used)


def test_snapshot_of_an_idle_tracker_still_carries_the_id_counter():
    tracker = StreamTracker()
    out = run(tracker, [[det(0.2 + 0.01 * i, 0.5)] for i in range(3)])
    run(tracker, [[]], t0=10.0)  # long after: every track has ended
    state = json.loads(json.dumps(tracker.snapshot()))

    restored = StreamTracker()
    restored.restore(state)
    again = run(restored, [[det(0.2 + 0.01 * i, 0.5)] for i in range(3)], t0=11.0)
    assert again[2][0]["track_id"] > out[2][0]["track_id"]


def test_restore_refuses_another_snapshot_version():
    with pytest.raises(ValueError, match="version"):
        StreamTracker().restore({"v": 99, "next_id": 1, "time": None, "classes": {}})


def test_time_going_back_ends_the_tracks_and_ids_go_on():
    tracker = StreamTracker()
    before = run(tracker, [[det(0.2 + 0.01 * i, 0.5)] for i in range(3)], t0=100.0)
    after = run(tracker, [[det(0.2 + 0.01 * i, 0.5)] for i in range(3)], t0=0.0)

    assert "track_id" not in after[0][0]
    assert after[2][0]["track_id"] > before[2][0]["track_id"]


def test_twenty_objects_all_tracked_with_distinct_stable_ids():
    paths = [walk((0.05 + 0.18 * (k % 5), 0.1 + 0.2 * (k // 5)), (0.004, 0.003), 25) for k in range(20)]
    out = run(StreamTracker(), [[det(*p[i], w=0.05, h=0.08) for p in paths] for i in range(25)])

    per_object = [ids_of(out, k) for k in range(20)]
    assert all(None not in ids[1:] and len(set(ids[1:])) == 1 for ids in per_object)
    assert len({ids[1] for ids in per_object}) == 20
