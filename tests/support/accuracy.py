"""mAP50 of a worker detector on a YOLO-format validation set (the generated shapes data, whose
labels are exact). Used by the backend accuracy test and by bench/worker_bench.py."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def xywh_to_xyxy(b) -> np.ndarray:
    xc, yc, w, h = b
    return np.array([xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2])


def iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
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


def map50(predictions: list[list[dict]], truths: list[list[dict]], n_classes: int) -> float:
    """Mean over classes of AP at IoU 0.5; boxes are normalised xywh, as the worker emits them."""
    aps = []
    for cls in range(n_classes):
        tp, conf, n_truth = [], [], 0
        for preds, gts in zip(predictions, truths):
            boxes = [xywh_to_xyxy(g["bbox"]) for g in gts if g["class_id"] == cls]
            n_truth += len(boxes)
            used = [False] * len(boxes)
            for d in sorted((d for d in preds if d["class_id"] == cls), key=lambda d: -d["conf"]):
                box = xywh_to_xyxy(d["bbox"])
                scores = [iou(box, g) if not used[i] else 0.0 for i, g in enumerate(boxes)]
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


def load_split(root: Path, split: str = "val") -> tuple[list[np.ndarray], list[list[dict]]]:
    """Images and their labels from a YOLO-format dataset (shapes_dataset writes one)."""
    images, truths = [], []
    for path in sorted((root / "images" / split).glob("*.jpg")):
        images.append(cv2.imread(str(path)))
        rows = (root / "labels" / split / f"{path.stem}.txt").read_text().split()
        truths.append([{"class_id": int(rows[i]), "bbox": [float(v) for v in rows[i + 1 : i + 5]]} for i in range(0, len(rows), 5)])
    return images, truths


def evaluate(detector, images: list[np.ndarray], truths: list[list[dict]]) -> float:
    """mAP50 of the detector on the images; conf 0.001 style evaluation is not needed for a relative
    comparison, so the detector's own threshold applies."""
    return map50([detector.detect(image)[0] for image in images], truths, len(detector.names))
