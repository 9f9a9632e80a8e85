"""PyTorch through Ultralytics, on the CPU or a CUDA device. Imported only on this path, so the
runtime image never needs torch."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from worker.detector.base import MAX_DETECTIONS, NMS_IOU, Detector, DetectorError, class_ids, to_detections
from worker.settings import var


def torch_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


class UltralyticsDetector(Detector):
    def __init__(self, path: str, *, backend: str, imgsz: int, conf: float, classes: Sequence[str], device: str):
        try:
            import torch
            from ultralytics import YOLO
        except ImportError:
            raise DetectorError(
                f"{Path(path).name} needs ultralytics and torch, which this image does not ship; use an .onnx model"
            ) from None
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise DetectorError(f"{var('backend')}={backend} but torch sees no CUDA device")
        self.backend = backend
        try:
            self.model = YOLO(path, task="detect")
        except Exception as exc:  # ultralytics wraps loading errors in many types
            raise DetectorError(f"cannot load model {path}: {str(exc).splitlines()[0]}") from None
        self.names = {int(k): str(v) for k, v in self.model.names.items()}
        self.device = device
        self.imgsz = imgsz
        self.conf = conf
        self.keep = class_ids(self.names, classes) if classes else None
        self.name = Path(path).name

    def detect(self, image: np.ndarray) -> tuple[list[dict], float]:
        started = time.perf_counter()
        result = self.model.predict(
            image,
            imgsz=self.imgsz,
            conf=self.conf,
            iou=NMS_IOU,
            classes=self.keep,
            device=self.device,
            verbose=False,
            max_det=MAX_DETECTIONS,
        )[0]
        boxes = result.boxes
        xyxy = boxes.xyxy.cpu().numpy()
        h, w = image.shape[:2]
        detections = to_detections(xyxy, boxes.conf.cpu().numpy(), boxes.cls.cpu().numpy(), self.names, w, h)
        return detections, (time.perf_counter() - started) * 1000.0
