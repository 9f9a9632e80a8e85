"""The generated events video (kinase_cli/workflows/event_samples.py): its counts are what its objects'
boxes really do, its objects keep apart, and the shapes model finds every object in every frame with the
right class, which is what exact counts downstream (tracking, lines, zones) stand on."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import av
import pytest

from kinase_cli.workflows.event_samples import DWELL_S, LINE_X, RULES, ZONE, events_video, tally
from support.worker_stack import SHAPES_ONNX
from worker import detector as detectors
from worker import rules
from worker.detector.accuracy import iou
from worker.events.analysis import FrameInfo, StreamAnalyser
from worker.events.tracking import StreamTracker

RULES_FILE = Path(__file__).parents[1] / "support" / "events.rules.yaml"


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return events_video(tmp_path_factory.mktemp("events") / "events.mp4", seed=0)


def tracks(video) -> dict[int, list[tuple[int, list[float], str]]]:
    """Each object's (frame, bbox, class) in frame order, from the per-frame truth."""
    found: dict[int, list[tuple[int, list[float], str]]] = {}
    for i, objects in enumerate(video.frames):
        for o in objects:
            found.setdefault(o["actor"], []).append((i, o["bbox"], o["class"]))
    return found


def runs(values: list) -> list[tuple[object, int]]:
    return [(value, len(list(group))) for value, group in itertools.groupby(values)]


def reference_counts(video, min_far_side_s: float = rules.MIN_FAR_SIDE_S) -> dict:
    """The counts from the truth boxes alone: a side of the line counts once the centre stays on it for
    `min_far_side_s`, a zone visit is a run of frames with the bottom centre inside, a dwell one that lasts `DWELL_S`."""
    (zx0, zy0), (zx1, zy1) = ZONE[0], ZONE[2]
    counts = {"lines": {"door": {"in": {}, "out": {}}}, "zones": {"bay": {"entered": {}, "left": {}, "dwell": {}}}}

    def add(table: dict, cls: str) -> None:
        table[cls] = table.get(cls, 0) + 1

    for seen in tracks(video).values():
        name = seen[0][2]
        held = [side for side, n in runs([b[0] > LINE_X for _, b, _ in seen]) if (n - 1) / video.fps >= min_far_side_s]
        for before, after in zip(held, held[1:]):
            if before != after:
                add(counts["lines"]["door"]["in" if after else "out"], name)
        inside = [zx0 < b[0] < zx1 and zy0 < b[1] + b[3] / 2 < zy1 for _, b, _ in seen]
        for is_inside, n in runs(inside):
            if is_inside:
                add(counts["zones"]["bay"]["entered"], name)
                add(counts["zones"]["bay"]["left"], name)
                if n / video.fps >= DWELL_S:
                    add(counts["zones"]["bay"]["dwell"], name)
    return counts


def test_counts_are_what_the_boxes_do_with_every_kind_of_move(video):
    assert video.counts == reference_counts(video)
    door, bay = video.counts["lines"]["door"], video.counts["zones"]["bay"]
    assert sum(door["in"].values()) >= 2 and sum(door["out"].values()) >= 2
    assert sum(bay["entered"].values()) > sum(bay["dwell"].values()) >= 2
    kinds = {(a.kind, a.side) for a in video.actors}
    assert {("approach", -1), ("approach", 1), ("jitter", -1), ("jitter", 1), ("cross", -1), ("cross", 1)} <= kinds
    # the jitters' boxes do cross the line, each time for too short a while to count
    flicker = reference_counts(video, min_far_side_s=0)["lines"]["door"]
    jitters = sum(1 for a in video.actors if a.kind == "jitter")
    assert sum(flicker["in"].values()) - sum(door["in"].values()) >= jitters


@pytest.mark.parametrize("fps", [5, 15])
def test_counts_hold_at_other_frame_rates(tmp_path, fps):
    other = events_video(tmp_path / "other.mp4", fps=fps, duration=20, seed=1)
    assert len(other.frames) == 20 * fps
    assert other.counts == reference_counts(other)
    assert sum(n for direction in other.counts["lines"]["door"].values() for n in direction.values()) >= 2


def test_events_are_spread_over_the_whole_video(video):
    crossings = [e["frame"] / video.fps for e in video.events if e["type"] == "line_crossed"]
    duration = len(video.frames) / video.fps
    assert all(any(k * duration / 3 <= t < (k + 1) * duration / 3 for t in crossings) for k in range(3))
    assert all(e["frame"] < len(video.frames) for e in video.events)
    assert len(crossings) == sum(n for direction in video.counts["lines"]["door"].values() for n in direction.values())


def test_objects_keep_apart_inside_the_frame_and_move_little_per_frame(video):
    width, height = video.size
    for objects in video.frames:
        for o in objects:
            x, y, w, h = o["bbox"]
            margins = ((x - w / 2) * width, (1 - x - w / 2) * width, (y - h / 2) * height, (1 - y - h / 2) * height)
            assert min(margins) >= 0.02 * height  # never cut by the border
        for a, b in itertools.combinations(objects, 2):
            gap_x = abs(a["bbox"][0] - b["bbox"][0]) - (a["bbox"][2] + b["bbox"][2]) / 2
            gap_y = abs(a["bbox"][1] - b["bbox"][1]) - (a["bbox"][3] + b["bbox"][3]) / 2
            assert max(gap_x * width, gap_y * height) >= 0.05 * height
    for seen in tracks(video).values():
        frames = [i for i, _, _ in seen]
        assert frames == list(range(frames[0], frames[-1] + 1))  # no gaps while an object is in view
        assert min(iou(a, b) for (_, a, _), (_, b, _) in zip(seen, seen[1:])) >= 0.6


def test_the_video_is_h264_with_a_key_frame_every_second(video):
    with av.open(str(video.path)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.width, stream.height) == ("h264", *video.size)
        keys = [i for i, packet in enumerate(p for p in container.demux(stream) if p.size) if packet.is_keyframe]
    assert keys == list(range(0, len(video.frames), video.fps))


def test_the_rules_file_is_the_videos_rules():
    doc = rules.decode(RULES_FILE.read_text())
    assert rules.errors(doc) == []
    assert doc == RULES


@pytest.fixture(scope="module")
def detections(video, tmp_path_factory) -> list[list[dict]]:
    """The worker's detector on every frame of the video: the ONNX shapes model at 320, conf 0.25 (its defaults)."""
    detector = detectors.load(str(SHAPES_ONNX), imgsz=320, backend="onnxruntime", cache_dir=tmp_path_factory.mktemp("models"))
    with av.open(str(video.path)) as container:
        return [detector.detect(frame.to_ndarray(format="bgr24"))[0] for frame in container.decode(video=0)]


@pytest.mark.slow
def test_shapes_model_finds_every_object_in_every_frame_with_its_class(video, detections):
    """Another class on the same object comes weaker than the right one, and nothing is found where no object is."""
    assert len(detections) == len(video.frames)
    objects = found = 0
    wrong: list = []
    for i, (found_here, truth) in enumerate(zip(detections, video.frames)):
        for t in truth:
            on_it = [d for d in found_here if iou(d["bbox"], t["bbox"]) >= 0.5]
            right = max((d["conf"] for d in on_it if d["class"] == t["class"]), default=0.0)
            objects, found = objects + 1, found + (right > 0)
            wrong += [(i, t["actor"], d["class"], d["conf"], right) for d in on_it if d["class"] != t["class"] and d["conf"] >= right]
        stray = [d for d in found_here if not any(iou(d["bbox"], t["bbox"]) >= 0.5 for t in truth)]
        assert not stray, (i, stray)
    print(f"detection rate {found}/{objects} objects in {len(detections)} frames")
    assert found == objects
    assert not wrong


def analyse(video, detections, every: int = 1) -> tuple[list[dict], dict, list[list[dict]]]:
    """Detections -> StreamTracker -> StreamAnalyser on every `every`-th frame, as the worker samples;
    returns the events, the final counts and each analysed frame's tracked detections (None where skipped)."""
    tracker = StreamTracker(frame_rate=video.fps / every)
    analyser = StreamAnalyser(rules.build(video.rules).rules_for("cam"), "cam")
    events: list[dict] = []
    tracked: list = [None] * len(detections)
    width, height = video.size
    for i in range(0, len(detections), every):
        tracked[i] = tracker.update(detections[i], i / video.fps)
        events += analyser.update(FrameInfo(str(i), i / video.fps, None, width, height), tracked[i])
    return events, analyser.counts(), tracked


@pytest.mark.slow
@pytest.mark.parametrize("every", [1, 2], ids=["every-frame", "every-2nd-frame"])
def test_tracking_and_rules_give_exactly_the_ground_truth(video, detections, every):
    events, counts, tracked = analyse(video, detections, every)

    assert tally(events) == video.counts
    assert counts["lines"] == video.counts["lines"]
    assert counts["zones"] == {"bay": {"occupancy": {}}}
    assert len({e["event_id"] for e in events}) == len(events)
    # one track id per object, never shared: the spacing kept the tracker from swapping or splitting ids
    ids: dict[int, set[int]] = {}
    for i, frame in enumerate(tracked):
        for d in frame or ():
            if "track_id" in d:
                (actor,) = [t["actor"] for t in video.frames[i] if t["class"] == d["class"] and iou(t["bbox"], d["bbox"]) >= 0.5]
                ids.setdefault(actor, set()).add(d["track_id"])
    assert sorted(ids) == [a.index for a in video.actors]
    assert all(len(found) == 1 for found in ids.values()), ids
    assert len(set().union(*ids.values())) == len(video.actors)
    # each event is its object's: the crossing of the right actor, after its centre passed the line
    for e in (e for e in events if e["type"] == "line_crossed"):
        (actor,) = [a for a, found in ids.items() if e["track_id"] in found]
        (expected,) = [x for x in video.events if x["actor"] == actor and x["type"] == "line_crossed"]
        assert (e["direction"], e["class"]) == (expected["direction"], expected["class"])
        assert int(e["frame_id"]) >= expected["frame"]


@pytest.mark.slow
def test_a_restart_from_a_checkpoint_neither_loses_nor_doubles_an_event(video, detections):
    """As a killed worker's successor: it restores the state saved at a fragment's end and redoes what came
    after it; the published events, deduplicated by event_id, are those of a run without the kill."""
    whole, _, _ = analyse(video, detections)
    width, height = video.size
    # each checkpoint falls where an object has started an event that the analyser decides after it (a far
    # side or a zone change waiting to hold): killed before that event was published, its successor must
    # publish it; killed after, it publishes it again under the same id
    for checkpoint_s, killed_s in ((7, 7.5), (7, 9), (12, 12.2), (12, 13), (25, 25.2), (25, 27)):
        tracker, analyser = StreamTracker(frame_rate=video.fps), StreamAnalyser(rules.build(video.rules).rules_for("cam"), "cam")
        published: dict[str, dict] = {}
        saved = None
        for i in range(round(killed_s * video.fps)):
            if i == checkpoint_s * video.fps:
                saved = json.loads(json.dumps({"tracker": tracker.snapshot(), "analyser": analyser.snapshot()}))
            tracked = tracker.update(detections[i], i / video.fps)
            published |= {e["event_id"]: e for e in analyser.update(FrameInfo(str(i), i / video.fps, None, width, height), tracked)}
        tracker, analyser = StreamTracker(frame_rate=video.fps), StreamAnalyser(rules.build(video.rules).rules_for("cam"), "cam")
        tracker.restore(saved["tracker"])
        analyser.restore(saved["analyser"])
        for i in range(checkpoint_s * video.fps, len(detections)):
            tracked = tracker.update(detections[i], i / video.fps)
            published |= {e["event_id"]: e for e in analyser.update(FrameInfo(str(i), i / video.fps, None, width, height), tracked)}
        assert sorted(published) == sorted(e["event_id"] for e in whole), (checkpoint_s, killed_s)
        assert tally(list(published.values())) == video.counts
        assert analyser.counts()["lines"] == video.counts["lines"]
