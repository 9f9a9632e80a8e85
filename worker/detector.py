"""YOLO detection behind one interface, for two runtimes.

`.onnx` models run on ONNX Runtime with the letterbox and NMS done here in numpy/OpenCV: that is
the path the Fargate image ships (no torch, ~2.5x faster than PyTorch on its CPUs). `.pt` and
`.yaml` models go through Ultralytics (CPU or CUDA); it is imported only on that path, so the
runtime image never needs it.
"""

from __future__ import annotations

import ast
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger("kinase.worker.detector")

STRIDE = 32
NMS_IOU = 0.7  # Ultralytics' default, so both runtimes give the same boxes
MAX_DETECTIONS = 300


class DetectorError(RuntimeError):
    """The model cannot be loaded or does not fit the settings; the message is one line."""


class Detector:
    names: dict[int, str]
    imgsz: int
    name: str
    runtime: str

    def detect(self, image: np.ndarray) -> tuple[list[dict], float]:
        """Detections (class, class_id, conf, bbox as normalised xywh) and inference milliseconds."""
        raise NotImplementedError


def class_ids(names: dict[int, str], wanted: Sequence[str]) -> list[int] | None:
    if not wanted:
        return None
    by_name = {n.lower(): i for i, n in names.items()}
    missing = [w for w in wanted if w.lower() not in by_name]
    if missing:
        raise DetectorError(f"KINASE_CLASSES names {', '.join(missing)}, not in the model (it has: {', '.join(names.values())})")
    return sorted(by_name[w.lower()] for w in wanted)


def letterbox(image: np.ndarray, height: int, width: int) -> tuple[np.ndarray, float, float, float]:
    """Resize keeping the aspect ratio and pad with grey to (height, width), centred, as Ultralytics does."""
    h, w = image.shape[:2]
    ratio = min(height / h, width / w)
    nh, nw = int(round(h * ratio)), int(round(w * ratio))
    resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR) if (nh, nw) != (h, w) else image
    pad_y, pad_x = (height - nh) / 2, (width - nw) / 2
    top, left = int(round(pad_y - 0.1)), int(round(pad_x - 0.1))
    out = cv2.copyMakeBorder(resized, top, height - nh - top, left, width - nw - left, cv2.BORDER_CONSTANT, value=(114, 114, 114))
    return out, ratio, left, top


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float) -> np.ndarray:
    """Class-aware non-maximum suppression over xyxy boxes; returns kept indices, best first."""
    if len(boxes) == 0:
        return np.empty(0, dtype=np.int64)
    offset = classes[:, None].astype(np.float32) * (float(boxes.max()) + 1.0)
    b = boxes + offset
    x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    areas = (x2 - x1).clip(0) * (y2 - y1).clip(0)
    order = scores.argsort()[::-1]
    keep: list[int] = []
    while order.size and len(keep) < MAX_DETECTIONS:
        i = order[0]
        keep.append(int(i))
        rest = order[1:]
        w = (np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest])).clip(0)
        h = (np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest])).clip(0)
        inter = w * h
        overlap = inter / (areas[i] + areas[rest] - inter + 1e-9)
        order = rest[overlap <= iou]
    return np.array(keep, dtype=np.int64)


def _to_detections(xyxy: np.ndarray, scores: np.ndarray, classes: np.ndarray, names: dict[int, str], w: int, h: int) -> list[dict]:
    result = []
    for (x1, y1, x2, y2), conf, cls in zip(xyxy, scores, classes):
        x1, x2 = float(np.clip(x1, 0, w)), float(np.clip(x2, 0, w))
        y1, y2 = float(np.clip(y1, 0, h)), float(np.clip(y2, 0, h))
        if x2 <= x1 or y2 <= y1:
            continue
        cid = int(cls)
        result.append(
            {
                "class": names.get(cid, str(cid)),
                "class_id": cid,
                "conf": float(conf),
                "bbox": [(x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h],
            }
        )
    return result


class OnnxDetector(Detector):
    runtime = "onnxruntime"

    def __init__(self, path: str, *, imgsz: int, conf: float, classes: Sequence[str], device: str):
        import onnxruntime as ort

        providers = ["CPUExecutionProvider"]
        if device != "cpu" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        elif device.startswith("cuda"):
            raise DetectorError(f"KINASE_DEVICE={device} but this onnxruntime has no CUDA provider")
        options = ort.SessionOptions()
        # Spinning intra-op threads wait for work by burning CPU, which the upload threads need;
        # on a small shared CPU (Fargate: 2 vCPU) not spinning is as fast and uses ~15% less CPU.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(path, options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise DetectorError(f"cannot load ONNX model {path}: {str(exc).splitlines()[0]}") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        try:
            self.names = {int(k): str(v) for k, v in ast.literal_eval(meta.get("names", "{}")).items()}
        except (ValueError, SyntaxError):
            self.names = {}
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        shape = inp.shape
        self.fixed = isinstance(shape[2], int) and isinstance(shape[3], int)
        if self.fixed:
            self.height, self.width = shape[2], shape[3]
            if imgsz != self.width:
                log.info("model input is fixed at %dx%d; KINASE_IMGSZ=%d ignored", self.width, self.height, imgsz)
        else:
            self.height = self.width = imgsz
        self.imgsz = self.width
        self.conf = conf
        self.keep = class_ids(self.names, classes) if classes else None
        self.name = Path(path).name
        self.detect(np.zeros((self.height, self.width, 3), dtype=np.uint8))

    def input_size(self, h: int, w: int) -> tuple[int, int]:
        """A fixed-size model takes its size; a dynamic one the smallest stride-32 rectangle around the
        scaled frame, as Ultralytics does (640x480 video: 640x480, a quarter less work than 640x640)."""
        if self.fixed:
            return self.height, self.width
        ratio = self.imgsz / max(h, w)
        return (-(-round(h * ratio) // STRIDE) * STRIDE, -(-round(w * ratio) // STRIDE) * STRIDE)

    def detect(self, image: np.ndarray) -> tuple[list[dict], float]:
        started = time.perf_counter()
        h, w = image.shape[:2]
        padded, ratio, left, top = letterbox(image, *self.input_size(h, w))
        blob = cv2.dnn.blobFromImage(padded, 1 / 255.0, swapRB=True)
        out = self.session.run(None, {self.input_name: blob})[0][0]
        if out.shape[-1] == 6 and out.shape[0] != 6:  # end-to-end export: rows of x1 y1 x2 y2 conf cls
            rows = out[(out[:, 4] >= self.conf) & (np.isin(out[:, 5].astype(np.int64), self.keep) if self.keep is not None else True)]
            xyxy, scores, cls = rows[:, :4].copy(), rows[:, 4], rows[:, 5].astype(np.int64)
        else:  # (4 + classes, anchors): xywh then one score per class
            pred = out.T
            cls_scores = pred[:, 4:]
            cls = cls_scores.argmax(1)
            scores = cls_scores[np.arange(len(cls)), cls]
            mask = scores >= self.conf
            if self.keep is not None:
                mask &= np.isin(cls, self.keep)
            pred, cls, scores = pred[mask], cls[mask], scores[mask]
            xyxy = np.empty((len(pred), 4), dtype=np.float32)
            xyxy[:, 0] = pred[:, 0] - pred[:, 2] / 2
            xyxy[:, 1] = pred[:, 1] - pred[:, 3] / 2
            xyxy[:, 2] = pred[:, 0] + pred[:, 2] / 2
            xyxy[:, 3] = pred[:, 1] + pred[:, 3] / 2
            kept = nms(xyxy, scores, cls, NMS_IOU)
            xyxy, scores, cls = xyxy[kept], scores[kept], cls[kept]
        xyxy[:, [0, 2]] = (xyxy[:, [0, 2]] - left) / ratio
        xyxy[:, [1, 3]] = (xyxy[:, [1, 3]] - top) / ratio
        detections = _to_detections(xyxy, scores, cls, self.names, w, h)
        return detections, (time.perf_counter() - started) * 1000.0


class UltralyticsDetector(Detector):
    runtime = "ultralytics"

    def __init__(self, path: str, *, imgsz: int, conf: float, classes: Sequence[str], device: str):
        try:
            import torch
            from ultralytics import YOLO
        except ImportError:
            raise DetectorError(
                f"{Path(path).name} needs ultralytics and torch, which this image does not ship; use an .onnx model"
            ) from None
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        elif device.startswith("cuda") and not torch.cuda.is_available():
            raise DetectorError(f"KINASE_DEVICE={device} but torch sees no CUDA device")
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
        self.detect(np.zeros((imgsz, imgsz, 3), dtype=np.uint8))

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
        detections = _to_detections(xyxy, boxes.conf.cpu().numpy(), boxes.cls.cpu().numpy(), self.names, w, h)
        return detections, (time.perf_counter() - started) * 1000.0


def load(model: str, *, imgsz: int = 640, conf: float = 0.25, classes: Sequence[str] = (), device: str = "auto") -> Detector:
    suffix = Path(model).suffix.lower()
    if suffix == ".onnx":
        return OnnxDetector(model, imgsz=imgsz, conf=conf, classes=classes, device=device)
    if suffix in (".pt", ".yaml", ".yml"):
        return UltralyticsDetector(model, imgsz=imgsz, conf=conf, classes=classes, device=device)
    raise DetectorError(f"KINASE_MODEL={model!r}: use an .onnx, .pt or .yaml model")
