"""The demo's scoring against the generated ground truth (detections per frame, events counted per line and
zone), and its contact sheet of annotated frames."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from kinase_cli.watch.saver import destination
from worker.contract import parse_iso


def frame_index(time: str, producer_start: float, fps: int) -> int:
    """The position in the generated video of the frame at `time` (ISO): frames are timed from the producer's start."""
    return round((parse_iso(time) - producer_start) * fps)


def accuracy(messages: list[dict], truth: list[list[dict]], producer_start: float, fps: int) -> dict:
    """Match each frame's detections to the generated truth (same class, IoU >= 0.5)."""
    from worker.detector.accuracy import iou  # the detector package loads numpy: not on `kinase --help`'s path

    truths = found = detections = correct = 0
    per_class: dict[str, dict[str, int]] = {}
    for message in messages:
        index = frame_index(message["frame_time"], producer_start, fps)
        if not 0 <= index < len(truth):
            continue
        expected = truth[index]
        detections += len(message["summary"])
        unmatched = list(message["summary"])
        for t in expected:
            counts = per_class.setdefault(t["class"], {"truth": 0, "found": 0})
            counts["truth"] += 1
            truths += 1
            best = max(unmatched, key=lambda d: iou(d["bbox"], t["bbox"]) if d["class"] == t["class"] else -1, default=None)
            if best is not None and best["class"] == t["class"] and iou(best["bbox"], t["bbox"]) >= 0.5:
                unmatched.remove(best)
                counts["found"] += 1
                found += 1
        correct += len(message["summary"]) - len(unmatched)
    return {
        "truth_objects": truths,
        "found": found,
        "recall": round(found / truths, 4) if truths else None,
        "precision": round(correct / detections, 4) if detections else None,
        "per_class": per_class,
    }


def event_counts(events: list[dict], truth: dict, stream: str, producer_start: float, fps: int, frames: int) -> dict:
    """The events of this run of `stream` counted as the truth is (event_samples.tally: per line, direction and
    class; per zone, entries, exits and dwells per class), and by type. Events of other streams, or of an
    earlier run on a kept stack, are left out."""
    from kinase_cli.workflows.event_samples import tally

    ours = [e for e in events if e["stream_name"] == stream and 0 <= frame_index(e["time"], producer_start, fps) < frames]
    counted = tally(ours)
    return {
        "exact": counted == truth,
        "truth": truth,
        "streams": {stream: counted},
        "types": dict(sorted(Counter(e["type"] for e in ours).items())),
    }


def contact_sheet(messages: list[dict], workdir: Path, tiles: int = 6) -> str | None:
    """A 3x2 grid of annotated frames spread over the run: the picture people want to look at."""
    import cv2
    import numpy as np

    ordered = sorted(messages, key=lambda m: m["frame_time"])
    picks = [ordered[i * (len(ordered) - 1) // max(tiles - 1, 1)] for i in range(tiles)] if len(ordered) >= tiles else ordered
    images = []
    for message in picks:
        img = cv2.imread(str(destination(workdir / "frames", message["key"])))
        if img is not None:
            images.append(cv2.resize(img, (320, 240)))
    if not images:
        return None
    while len(images) % 3:
        images.append(np.zeros_like(images[0]))
    rows = [np.hstack(images[i : i + 3]) for i in range(0, len(images), 3)]
    path = workdir / "contact-sheet.jpg"
    cv2.imwrite(str(path), np.vstack(rows))
    return str(path)
