"""A worker detector's mAP50 on a YOLO-format validation set (the generated shapes data, whose labels
are exact). Used by the backend accuracy test and by bench/worker_bench.py."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from worker.detector.accuracy import label_path, map50, read_labels


def load_split(root: Path, split: str = "val") -> tuple[list[np.ndarray], list[list[dict]]]:
    """Images and their labels from a YOLO-format dataset (shapes_dataset writes one)."""
    paths = sorted((root / "images" / split).glob("*.jpg"))
    return [cv2.imread(str(p)) for p in paths], [read_labels(label_path(p)) for p in paths]


def evaluate(detector, images: list[np.ndarray], truths: list[list[dict]]) -> float:
    """mAP50 of the detector on the images; conf 0.001 style evaluation is not needed for a relative
    comparison, so the detector's own threshold applies."""
    return map50([detector.detect(image)[0] for image in images], truths, len(detector.names))
