"""Calibration frames for int8 quantization: images from a folder (the model's own validation images,
with their labels when the folder is a YOLO dataset's) or frames of a video (the first frames of the
source). Never fetched from anywhere."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from worker.detector.accuracy import label_path, read_labels
from worker.detector.base import DetectorError
from worker.settings import var

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
FRAMES = 64  # enough for min/max ranges of a small detector; quantization time grows with it


class Calibration(NamedTuple):
    images: list[np.ndarray]
    truths: list[list[dict]] | None  # each image's labels, when every image has a YOLO label file


def frames(path: str | Path, count: int = FRAMES) -> Calibration:
    """Up to `count` BGR images, spread evenly over the folder or over the video's first 4 x `count` frames."""
    path = Path(path)
    images: list[np.ndarray] = []
    truths: list[list[dict]] | None = None
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        step = max(1, len(files) // count)
        read = [(p, img) for p, img in ((p, cv2.imread(str(p))) for p in files[::step][:count]) if img is not None]
        images = [img for _, img in read]
        if read and all(label_path(p).is_file() for p, _ in read):
            truths = [read_labels(label_path(p)) for p, _ in read]
    elif path.is_file():
        cap = cv2.VideoCapture(str(path))
        decoded = []
        while len(decoded) < count * 4:
            ok, image = cap.read()
            if not ok:
                break
            decoded.append(image)
        cap.release()
        step = max(1, len(decoded) // count)
        images = decoded[::step][:count]
    if not images:
        raise DetectorError(f"{var('calibration')}={str(path)!r}: no images or video frames there to calibrate int8 with")
    return Calibration(images, truths)
