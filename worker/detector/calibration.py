"""Calibration frames for int8 quantization: images from a folder (the model's own validation images)
or frames of a video (the first frames of the source). Never fetched from anywhere."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from worker.detector.base import DetectorError
from worker.settings import var

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
FRAMES = 64  # enough for min/max ranges of a small detector; quantization time grows with it


def frames(path: str | Path, count: int = FRAMES) -> list[np.ndarray]:
    """Up to `count` BGR images, spread evenly over the folder or over the video's first 4 x `count` frames."""
    path = Path(path)
    images: list[np.ndarray] = []
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        step = max(1, len(files) // count)
        images = [img for img in (cv2.imread(str(p)) for p in files[::step][:count]) if img is not None]
    elif path.is_file():
        cap = cv2.VideoCapture(str(path))
        read = []
        while len(read) < count * 4:
            ok, image = cap.read()
            if not ok:
                break
            read.append(image)
        cap.release()
        step = max(1, len(read) // count)
        images = read[::step][:count]
    if not images:
        raise DetectorError(f"{var('calibration')}={str(path)!r}: no images or video frames there to calibrate int8 with")
    return images
