"""Per-stream object tracking (issue 24 item 1): Roboflow `trackers` ByteTrack behind the detector's dicts.

One `StreamTracker` per stream, never one shared by streams (ultralytics #22483: a tracker fed two
cameras matches one camera's boxes to the other's tracks). Why each choice:

- One library ByteTrack per class: ByteTrack matches boxes by IoU alone, so a person walking past a
  parked car could take over the car's track, and a box whose class flickers (car/truck) would steal
  the other class's id. Per class, a box that changes class ends its old track and starts a new one
  (a new id once confirmed): counts per class never mix.
- Ids are ours, not the library's: every per-class tracker draws from the stream's one counter, so
  an id is unique across classes and, being in the snapshot, for the stream's lifetime (restarts
  and lease hand-overs continue it; an id is never given to a second object).
- Only confirmed tracks (`confirm_frames` consecutive matches) give a `track_id`; the others give
  none, so a one-frame false detection never counts (supervision #2578).
- Time is the media clock (`frame_time`), passed to the library as timestamps: frames sampled out or
  dropped live widen the Kalman step by the real gap, and a track unmatched for more than `lost_s`
  SECONDS ends, whatever the frame rate.
- Boxes arrive normalised (0-1, so rules survive a resolution change) and are tracked on a fixed
  1920x1080 canvas: IoU does not depend on the scale, but the library's Kalman noises are tuned in
  pixels, which the canvas gives them whatever the camera's resolution.
- `snapshot()` writes, per live track, the fields the library reads (ids, miss clocks, the Kalman
  state and covariance as base64 little-endian float64: exact, so a restored tracker replays the
  same detections to the same ids, and a third the size of decimal JSON). Nothing is unpickled:
  the state comes back from S3 or DynamoDB. It reaches into the library's tracklets, so
  worker/requirements-nodeps.txt pins `trackers` exactly; tests/worker/test_tracking.py checks the
  replay.
"""

from __future__ import annotations

import base64
import math

import numpy as np
import supervision as sv
from trackers import ByteTrackTracker
from trackers.core.bytetrack.tracklet import ByteTrackTracklet

CANVAS = np.array([1920.0, 1080.0, 1920.0, 1080.0])
SNAPSHOT_VERSION = 1
_LIBRARY_FPS = 30.0  # the library's lost_track_buffer counts frames of a 30 fps video


class _Ids:
    """The stream's track id counter, shared by its per-class trackers."""

    def __init__(self, next_id: int = 1) -> None:
        self.next_id = next_id

    def allocate(self) -> int:
        self.next_id += 1
        return self.next_id - 1


class StreamTracker:
    """Tracks one stream's detections; `update` per frame in media-time order, `snapshot`/`restore` for the checkpoint."""

    def __init__(
        self,
        *,
        lost_s: float = 2.0,
        confirm_frames: int = 2,
        new_track_conf: float = 0.5,
        high_conf: float = 0.5,
        min_iou: float = 0.1,
        frame_rate: float = 10.0,
    ) -> None:
        if lost_s < 0 or confirm_frames < 1 or frame_rate <= 0:
            raise ValueError("lost_s >= 0, confirm_frames >= 1 and frame_rate > 0 are required")
        self._params = {
            "lost_track_buffer": math.ceil(lost_s * _LIBRARY_FPS),
            "frame_rate": frame_rate,
            "track_activation_threshold": new_track_conf,
            "minimum_consecutive_frames": confirm_frames,
            "minimum_iou_threshold": min_iou,
            "high_conf_det_threshold": high_conf,
        }
        self._lost_s = lost_s
        self._ids = _Ids()
        self._by_class: dict[int, ByteTrackTracker] = {}
        self._last_time: float | None = None

    def update(self, detections: list[dict], frame_time: float) -> list[dict]:
        """The frame's detections, in their order, as new dicts; those of a confirmed track gain `track_id`.

        A `frame_time` earlier than the previous one (a new stream incarnation, a clock jump) ends every
        track: their boxes could be anywhere now. The id counter goes on.
        """
        if self._last_time is not None and frame_time < self._last_time:
            self._by_class.clear()
        self._last_time = frame_time
        out = [dict(d) for d in detections]
        by_class: dict[int, list[int]] = {}
        for i, d in enumerate(detections):
            by_class.setdefault(int(d["class_id"]), []).append(i)
        for class_id in sorted(set(self._by_class) | set(by_class)):
            indices = by_class.get(class_id, [])
            tracker = self._by_class.get(class_id) or self._new_tracker()
            result = tracker.update(self._sv_detections(detections, indices), timestamp=frame_time)
            for index, track_id in zip(result.data.get("index", ()), result.tracker_id):  # empty: no data at all
                if track_id >= 0:
                    out[int(index)]["track_id"] = int(track_id)
            if tracker.tracks:
                self._by_class[class_id] = tracker
            else:
                self._by_class.pop(class_id, None)  # nothing to remember: a later box of the class starts afresh
        return out

    def snapshot(self) -> dict:
        """The state a restore needs, JSON-serialisable; the parameters are the constructor's, not in here."""
        return {
            "v": SNAPSHOT_VERSION,
            "next_id": self._ids.next_id,
            "time": self._last_time,
            "classes": {
                str(class_id): {"time": tracker._last_timestamp, "tracks": [_track_state(t) for t in tracker.tracks]}
                for class_id, tracker in sorted(self._by_class.items())
            },
        }

    def restore(self, state: dict) -> None:
        """Continue from a `snapshot()`: the same tracks, the same clocks, ids after the snapshot's."""
        if state.get("v") != SNAPSHOT_VERSION:
            raise ValueError(f"tracker snapshot version {state.get('v')!r}, expected {SNAPSHOT_VERSION}")
        self._ids = _Ids(int(state["next_id"]))
        self._last_time = state["time"]
        self._by_class = {}
        for class_id, saved in state["classes"].items():
            tracker = self._new_tracker()
            tracker._last_timestamp = saved["time"]
            tracker.tracks = [_tracklet(t) for t in saved["tracks"]]
            self._by_class[int(class_id)] = tracker

    def _new_tracker(self) -> ByteTrackTracker:
        tracker = ByteTrackTracker(**self._params)
        tracker.maximum_time_without_update = self._lost_s  # exact seconds, not rounded to 1/30 s
        tracker._allocate_tracker_id = self._ids.allocate
        return tracker

    @staticmethod
    def _sv_detections(detections: list[dict], indices: list[int]) -> sv.Detections:
        if not indices:
            return sv.Detections(xyxy=np.empty((0, 4)), confidence=np.empty(0), data={"index": np.empty(0, dtype=int)})
        xywh = np.array([detections[i]["bbox"] for i in indices], dtype=np.float64)
        xyxy = np.concatenate([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], axis=1) * CANVAS
        conf = np.array([detections[i]["conf"] for i in indices], dtype=np.float64)
        return sv.Detections(xyxy=xyxy, confidence=conf, data={"index": np.array(indices)})


def _track_state(t: ByteTrackTracklet) -> list:
    kf = t.state_estimator.kf
    filter_state = np.concatenate([kf.state.ravel(), kf.state_covariance.ravel()]).astype("<f8")
    return [
        t.tracker_id,
        t.age,
        t.time_since_update,
        t.time_since_update_seconds,
        t.number_of_successful_consecutive_updates,
        base64.b64encode(filter_state.tobytes()).decode("ascii"),
    ]


def _tracklet(saved: list) -> ByteTrackTracklet:
    track_id, age, since, since_s, consecutive, filter_b64 = saved
    t = ByteTrackTracklet(initial_bbox=np.zeros(4))
    filter_state = t.state_estimator.get_state()
    values = np.frombuffer(base64.b64decode(filter_b64), dtype="<f8")
    n = filter_state["state"].size
    filter_state["state"] = values[:n].reshape(filter_state["state"].shape)
    filter_state["state_covariance"] = values[n:].reshape(filter_state["state_covariance"].shape)
    t.state_estimator.set_state(filter_state)
    t.tracker_id, t.age, t.time_since_update = int(track_id), int(age), int(since)
    t.time_since_update_seconds, t.number_of_successful_consecutive_updates = float(since_s), int(consecutive)
    return t
