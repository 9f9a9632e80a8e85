"""The demo's scoring against the generated ground truth, and its contact sheet of annotated frames."""

from __future__ import annotations

from pathlib import Path

from kinase_cli.watch.saver import destination
from worker.contract import parse_iso


def accuracy(messages: list[dict], truth: list[list[dict]], producer_start: float, fps: int) -> dict:
    """Match each frame's detections to the generated truth (same class, IoU >= 0.5)."""
    from worker.detector.accuracy import iou  # the detector package loads numpy: not on `kinase --help`'s path

    truths = found = detections = correct = 0
    per_class: dict[str, dict[str, int]] = {}
    for message in messages:
        index = round((parse_iso(message["frame_time"]) - producer_start) * fps)
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
