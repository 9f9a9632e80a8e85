"""Box overlap and mAP50 of detections against YOLO-format labels, on the normalised
[x_center, y_center, width, height] boxes the worker emits. The int8 conversion measures its own
loss with them on labelled calibration images; the demo's score, the backend accuracy test and
the worker benchmark use them too."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two normalised [x_center, y_center, width, height] boxes."""
    w = min(a[0] + a[2] / 2, b[0] + b[2] / 2) - max(a[0] - a[2] / 2, b[0] - b[2] / 2)
    h = min(a[1] + a[3] / 2, b[1] + b[3] / 2) - max(a[1] - a[3] / 2, b[1] - b[3] / 2)
    inter = max(0.0, w) * max(0.0, h)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def average_precision(tp: np.ndarray, conf: np.ndarray, n_truth: int) -> float:
    """Area under the precision envelope over recall (all points, as VOC 2010+ and COCO do it)."""
    if n_truth == 0:
        return float("nan")
    if len(tp) == 0:
        return 0.0
    order = np.argsort(-conf, kind="stable")
    hits = np.cumsum(tp[order])
    recall = hits / n_truth
    precision = hits / np.arange(1, len(hits) + 1)
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[1.0], precision, [0.0]])
    p = np.flip(np.maximum.accumulate(np.flip(p)))
    steps = np.where(r[1:] != r[:-1])[0]
    return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))


def map50(predictions: Sequence[list[dict]], truths: Sequence[list[dict]], n_classes: int) -> float:
    """Mean over classes of AP at IoU 0.5; boxes are normalised xywh, as the worker emits them."""
    aps = []
    for cls in range(n_classes):
        tp, conf, n_truth = [], [], 0
        for preds, gts in zip(predictions, truths):
            boxes = [g["bbox"] for g in gts if g["class_id"] == cls]
            n_truth += len(boxes)
            used = [False] * len(boxes)
            for d in sorted((d for d in preds if d["class_id"] == cls), key=lambda d: -d["conf"]):
                scores = [iou(d["bbox"], g) if not used[i] else 0.0 for i, g in enumerate(boxes)]
                best = int(np.argmax(scores)) if scores else -1
                hit = best >= 0 and scores[best] >= 0.5
                if hit:
                    used[best] = True
                tp.append(1.0 if hit else 0.0)
                conf.append(d["conf"])
        ap = average_precision(np.array(tp), np.array(conf), n_truth)
        if not np.isnan(ap):
            aps.append(ap)
    return float(np.mean(aps)) if aps else 0.0


def label_path(image: Path) -> Path:
    """YOLO layout: `.../images/<split>/x.jpg` is labelled by `.../labels/<split>/x.txt`."""
    parts = list(image.parts)
    index = len(parts) - 1 - parts[::-1].index("images") if "images" in parts else None
    if index is None:
        return image.with_suffix(".txt")
    parts[index] = "labels"
    return Path(*parts).with_suffix(".txt")


def read_labels(path: Path) -> list[dict]:
    """One YOLO label file: `class xc yc w h` per line, normalised."""
    rows = path.read_text().split()
    return [{"class_id": int(rows[i]), "bbox": [float(v) for v in rows[i + 1 : i + 5]]} for i in range(0, len(rows), 5)]
