"""What events cost a frame (issue 24 item 7: tracking + rules at most 5% of a frame's CPU with 20
objects in view): `StreamTracker.update` (worker/events/tracking.py) and, when worker.events.analysis
is there, `StreamAnalyser.update` under one line and one zone, against the CPU of a frame.

Detections: bench/tracker_bench.py's seeded scene (N objects moving linearly in 1280x720 at 10
frames/s, 2 px jitter, 10% misses, 2 one-frame noise boxes a frame), as the detector's dicts
(normalised boxes, class person). Times are CPU (time.process_time) per frame, best of `--repeats`
runs, with this process pinned to the last core (os.sched_setaffinity) as the other benchmarks pin
the measured worker.

A frame's CPU, two figures, a verdict against each (target: at most 5% at 20 objects):
  worker     the whole worker's CPU per frame in docs/BENCHMARKS.md (section "Worker", the quiet
             run: 0.0452 s, openvino-bf16, yolo11n.pt, 640x480): decode, detect, draw, JPEG,
             upload, message. A figure of another run on another day.
  detector   the worker's detector measured here, in the same run and on the same core: the shapes
             model (models/shapes-yolo11n.onnx) at 640 on ONNX Runtime fp32, CPU of one detect,
             best of 20. A frame costs more than its detection, so this share is an upper bound.

Usage: python -m bench.events_bench [--frames 300] [--objects 5,20,70] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from bench.tracker_bench import FPS, HEIGHT, WIDTH, scene

ROOT = Path(__file__).resolve().parent.parent
SHAPES_ONNX = ROOT / "models" / "shapes-yolo11n.onnx"
WORKER_FRAME_CPU_MS = 45.2  # docs/BENCHMARKS.md, "Worker against `yolo predict`": CPU s per frame 0.0452
TARGET = 0.05  # of a frame's CPU, at 20 objects
RULES = """
schema: kinase.rules/1
streams:
  "*":
    lines:
      - name: door
        points: [[0.5, 0.0], [0.5, 1.0]]
        in_side: [0.9, 0.5]
    zones:
      - name: bay
        polygon: [[0.625, 0.0], [0.875, 0.0], [0.875, 1.0], [0.625, 1.0]]
        dwell_s: 5
    alerts:
      - events: [line_crossed, dwell]
        min_conf: 0.5
        cooldown_s: 60
"""


def detector_dicts(objects: int, frames: int) -> list[list[dict]]:
    """The scene's boxes as the detector hands them to the stages: normalised centre and size."""
    out = []
    for frame in scene(objects, frames):
        dets = []
        for (x1, y1, x2, y2), conf in zip(frame.xyxy.tolist(), frame.confidence.tolist()):
            bbox = [(x1 + x2) / 2 / WIDTH, (y1 + y2) / 2 / HEIGHT, (x2 - x1) / WIDTH, (y2 - y1) / HEIGHT]
            dets.append({"class": "person", "class_id": 0, "conf": conf, "bbox": bbox})
        out.append(dets)
    return out


def analyser_step():
    """A function (frame index, frame time, tracked detections) -> events running a fresh
    StreamAnalyser under RULES, or None when worker.events.analysis is not in this tree."""
    try:
        from worker.events.analysis import FrameInfo, StreamAnalyser
    except ImportError:
        return None
    from worker import rules

    analyser = StreamAnalyser(rules.load(RULES).rules_for("bench"), "bench")
    return lambda i, t, tracked: analyser.update(FrameInfo(f"bench-{i}", t, None, WIDTH, HEIGHT), tracked)


def run(frames: list[list[dict]], with_rules: bool) -> dict:
    from worker.events.tracking import StreamTracker

    tracker = StreamTracker(frame_rate=FPS)
    analyse = analyser_step() if with_rules else None
    track_s = rules_s = 0.0
    events = 0
    for i, dets in enumerate(frames):
        t = i / FPS
        start = time.process_time()
        tracked = tracker.update(dets, t)
        mid = time.process_time()
        if analyse is not None:
            events += len(analyse(i, t, tracked))
        track_s += mid - start
        rules_s += time.process_time() - mid
    n = len(frames)
    return {"track_ms": track_s * 1000 / n, "rules_ms": rules_s * 1000 / n if analyse else None, "events": events}


def detector_cpu_ms(runs: int = 20) -> float:
    """CPU ms of one detect with the shapes model on ONNX Runtime fp32, best of `runs` after warm-up."""
    from worker import detector as detectors

    detector = detectors.load(str(SHAPES_ONNX), imgsz=640, backend="onnxruntime", device="cpu")
    image = detectors.probe_image(640)
    for _ in range(3):
        detector.detect(image)
    best = float("inf")
    for _ in range(runs):
        start = time.process_time()
        detector.detect(image)
        best = min(best, time.process_time() - start)
    return best * 1000


def main(frames: int = 300, objects: tuple[int, ...] = (5, 20, 70), repeats: int = 3) -> dict:
    from importlib.metadata import version

    cores = sorted(os.sched_getaffinity(0))
    before = set(cores)
    os.sched_setaffinity(0, {cores[-1]})
    try:
        with_rules = analyser_step() is not None
        detect_ms = detector_cpu_ms()
        print(f"trackers {version('trackers')}; {frames} frames at {FPS} fps, {WIDTH}x{HEIGHT}; pinned to CPU {cores[-1]}")
        print(
            f"rules: {'worker.events.analysis, one line and one zone' if with_rules else 'none (worker.events.analysis not in this tree)'}"
        )
        print(
            f"frame CPU: detector here {detect_ms:.1f} ms (shapes-yolo11n.onnx, onnxruntime fp32, 640); worker {WORKER_FRAME_CPU_MS} ms (docs)"
        )
        print(f"{'objects':>7} {'track ms':>9} {'rules ms':>9} {'events':>7} {'share of detector':>18} {'share of worker':>16}")
        results = {}
        for n in objects:
            frames_n = detector_dicts(n, frames)
            run(frames_n[:20], with_rules)  # warm-up: imports and first calls
            runs = [run(frames_n, with_rules) for _ in range(repeats)]
            best = min(runs, key=lambda r: r["track_ms"] + (r["rules_ms"] or 0.0))
            total = best["track_ms"] + (best["rules_ms"] or 0.0)
            r = results[n] = {**best, "total_ms": total, "of_detector": total / detect_ms, "of_worker": total / WORKER_FRAME_CPU_MS}
            rules_ms = "-" if best["rules_ms"] is None else f"{best['rules_ms']:.3f}"
            print(f"{n:>7} {best['track_ms']:>9.3f} {rules_ms:>9} {best['events']:>7} {r['of_detector']:>17.1%} {r['of_worker']:>15.1%}")
    finally:
        os.sched_setaffinity(0, before)
    rows = []
    if 20 in results:
        what = "tracking + rules" if with_rules else "tracking"
        for against, share, note in (
            ("worker frame CPU (docs)", results[20]["of_worker"], f"{WORKER_FRAME_CPU_MS} ms, another run"),
            ("detector CPU here", results[20]["of_detector"], f"{detect_ms:.1f} ms, this run: a frame costs more"),
        ):
            rows.append(
                (f"{what} / {against}, 20 objects", f"{share:.1%}", f"<= {TARGET:.0%}", "met" if share <= TARGET else "MISSED", note)
            )
        print()
        for name, figure, target, verdict, note in rows:
            print(f"{name}: {figure} (target {target}): {verdict} ({note})")
    return {"results": results, "detector_ms": detect_ms, "rows": rows}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--objects", default="5,20,70")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    main(args.frames, tuple(int(x) for x in args.objects.split(",")), args.repeats)
