"""Which tracker library for per-stream tracking (issue 24, item 1): Roboflow `trackers` ByteTrack against
`supervision` ByteTrack, on the same synthetic detections, cost per frame and id stability side by side.

Input (seeded, the same for every tracker): N objects (5, 20, 70) in a 1280x720 frame at 10 frames/s,
each a box of 40-120 px moving linearly (2-12 px per frame, bouncing off the edges), its detection
jittered by Gaussian noise (sigma 2 px), missed in 10% of frames (as a detector misses), confidence
uniform 0.55-0.95; plus 2 noise detections a frame that exist for that one frame only (a flicker of
the detector, confidence 0.3-0.95). 300 frames per run.

Trackers, each with its library's defaults:
  trackers     `trackers.ByteTrackTracker()` (2.6: unconfirmed tracks get id -1; ids after 2 frames)
  supervision  `supervision.ByteTrack()` (0.26.1, the last with a tracker: from 0.27 it lives in `trackers`;
               minimum_consecutive_frames=1, so a detection gets an id at once)
  sv-confirm   `supervision.ByteTrack(minimum_consecutive_frames=2)`: supervision asked to confirm first

Figures: ms per frame (update only; detections built before timing), and over the ground truth:
id switches (an object's id changes between two frames where it has one), ids per object (distinct
ids an object got; 1.00 is ideal), false ids (ids only ever given to one-frame noise detections:
each would count an object that was never there, supervision #2578), total ids issued against
the number of objects. Time is the best of `--repeats` runs (the machine is shared; the id
figures do not change between runs). Then trackers / supervision time ratios.

Usage: python -m bench.tracker_bench [--frames 300] [--objects 5,20,70] [--repeats 3]
Needs `pip install trackers supervision==0.26.1` (no deps: see docs/BENCHMARKS.md); not a test.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np

WIDTH, HEIGHT, FPS = 1280, 720, 10
MISS = 0.10
NOISE_PER_FRAME = 2
JITTER_PX = 2.0


@dataclass
class Frame:
    xyxy: np.ndarray
    confidence: np.ndarray
    truth: np.ndarray  # the object index of each detection; -1 for a one-frame noise detection


def scene(objects: int, frames: int, seed: int = 7) -> list[Frame]:
    rng = np.random.default_rng(seed)
    size = rng.uniform(40, 120, (objects, 2))
    pos = rng.uniform([0, 0], [WIDTH, HEIGHT], (objects, 2)) - size / 2
    speed = rng.uniform(2, 12, objects)
    angle = rng.uniform(0, 2 * np.pi, objects)
    vel = np.stack([np.cos(angle), np.sin(angle)], axis=1) * speed[:, None]
    out = []
    for _ in range(frames):
        pos += vel
        for axis, limit in ((0, WIDTH), (1, HEIGHT)):
            low, high = pos[:, axis] < 0, pos[:, axis] + size[:, axis] > limit
            vel[low | high, axis] *= -1
            pos[:, axis] = np.clip(pos[:, axis], 0, limit - size[:, axis])
        seen = rng.random(objects) >= MISS
        boxes = np.concatenate([pos, pos + size], axis=1)[seen] + rng.normal(0, JITTER_PX, (int(seen.sum()), 4))
        noise_size = rng.uniform(40, 120, (NOISE_PER_FRAME, 2))
        noise_pos = rng.uniform([0, 0], [WIDTH, HEIGHT], (NOISE_PER_FRAME, 2)) - noise_size / 2
        noise = np.concatenate([noise_pos, noise_pos + noise_size], axis=1)
        out.append(
            Frame(
                xyxy=np.concatenate([boxes, noise]).astype(np.float32),
                confidence=np.concatenate([rng.uniform(0.55, 0.95, len(boxes)), rng.uniform(0.3, 0.95, NOISE_PER_FRAME)]).astype(
                    np.float32
                ),
                truth=np.concatenate([np.flatnonzero(seen), np.full(NOISE_PER_FRAME, -1)]),
            )
        )
    return out


def _makers():
    import supervision as sv
    from trackers import ByteTrackTracker

    return {
        "trackers": (lambda: ByteTrackTracker(frame_rate=FPS), lambda t, d: t.update(d)),
        "supervision": (lambda: sv.ByteTrack(frame_rate=FPS), lambda t, d: t.update_with_detections(d)),
        "sv-confirm": (lambda: sv.ByteTrack(frame_rate=FPS, minimum_consecutive_frames=2), lambda t, d: t.update_with_detections(d)),
    }


def run(name: str, frames: list[Frame], objects: int) -> dict:
    import supervision as sv

    make, update = _makers()[name]
    tracker = make()
    inputs = [
        sv.Detections(xyxy=f.xyxy, confidence=f.confidence, class_id=np.zeros(len(f.xyxy), dtype=int), data={"truth": f.truth})
        for f in frames
    ]
    elapsed = 0.0
    ids: list[dict[int, int]] = []  # per frame: object -> id
    real: dict[int, bool] = {}  # id -> whether it was ever given to a real object
    for detections in inputs:
        start = time.perf_counter()
        result = update(tracker, detections)
        elapsed += time.perf_counter() - start
        seen: dict[int, int] = {}
        for truth, track in zip(result.data["truth"], result.tracker_id):
            if track is None or int(track) < 0:
                continue  # unconfirmed: no id, never counted
            real[int(track)] = real.get(int(track), False) or truth >= 0
            if truth >= 0:
                seen[int(truth)] = int(track)
        ids.append(seen)
    switches, per_object = 0, []
    for obj in range(objects):
        history = [frame[obj] for frame in ids if obj in frame]
        switches += sum(a != b for a, b in zip(history, history[1:]))
        per_object.append(len(set(history)))
    return {
        "ms_per_frame": elapsed * 1000 / len(frames),
        "id_switches": switches,
        "ids_per_object": float(np.mean(per_object)),
        "false_ids": sum(not ever for ever in real.values()),
        "ids_issued": len(real),
    }


def main(frames: int = 300, objects: tuple[int, ...] = (5, 20, 70), repeats: int = 3) -> dict:
    from importlib.metadata import version

    import supervision as sv
    import trackers  # noqa: F401 (fails early when not installed)

    print(f"trackers {version('trackers')}, supervision {sv.__version__}; {frames} frames at {FPS} fps, {WIDTH}x{HEIGHT}")
    names = list(_makers())
    print(f"{'objects':>7} {'tracker':<12} {'ms/frame':>9} {'switches':>9} {'ids/object':>11} {'false ids':>10} {'ids issued':>11}")
    results: dict = {}
    for n in objects:
        frames_n = scene(n, frames)
        for name in names:
            run(name, frames_n[:20], n)  # warm-up: imports and first calls
            runs = [run(name, frames_n, n) for _ in range(repeats)]
            r = results[(n, name)] = {**runs[0], "ms_per_frame": min(x["ms_per_frame"] for x in runs)}
            print(
                f"{n:>7} {name:<12} {r['ms_per_frame']:>9.3f} {r['id_switches']:>9} {r['ids_per_object']:>11.2f} {r['false_ids']:>10} {r['ids_issued']:>8} / {n}"
            )
    print("\ntime ratio trackers / supervision (ByteTrack, defaults):")
    for n in objects:
        print(f"  {n:>3} objects: {results[(n, 'trackers')]['ms_per_frame'] / results[(n, 'supervision')]['ms_per_frame']:.2f}x")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--objects", default="5,20,70")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    main(args.frames, tuple(int(x) for x in args.objects.split(",")), args.repeats)
