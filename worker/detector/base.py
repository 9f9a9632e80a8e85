"""What every backend shares: the letterbox, YOLO's output decoding and NMS, done here in numpy and
OpenCV so that each backend only runs the network and all of them give the same boxes."""

from __future__ import annotations

import ast
import os
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from worker.settings import var

STRIDE = 32
NMS_IOU = 0.7  # Ultralytics' default, so every backend gives the boxes `yolo predict` gives
MAX_DETECTIONS = 300


def cpu_threads() -> int:
    """The cores this process may run on (its affinity, as taskset or a container's cpuset sets it):
    runtimes size their thread pools by the machine's cores, and more threads than cores contend."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class DetectorError(RuntimeError):
    """The model cannot be loaded or does not fit the settings; the message is one line."""


class Detector:
    names: dict[int, str]
    imgsz: int
    name: str
    backend: str

    @property
    def runtime(self) -> str:
        return self.backend

    batchable = False  # `detect_batch` runs several frames through the network in one call

    def detect(self, image: np.ndarray) -> tuple[list[dict], float]:
        """Detections (class, class_id, conf, bbox as normalised xywh) and inference milliseconds."""
        raise NotImplementedError

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[tuple[list[dict], float]]:
        """`detect` for each frame; a backend whose model takes a batch overrides it with one network call."""
        return [self.detect(image) for image in images]


def class_ids(names: dict[int, str], wanted: Sequence[str]) -> list[int] | None:
    if not wanted:
        return None
    by_name = {n.lower(): i for i, n in names.items()}
    missing = [w for w in wanted if w.lower() not in by_name]
    if missing:
        raise DetectorError(f"{var('classes')} names {', '.join(missing)}, not in the model (it has: {', '.join(names.values())})")
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


def to_detections(xyxy: np.ndarray, scores: np.ndarray, classes: np.ndarray, names: dict[int, str], w: int, h: int) -> list[dict]:
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


def onnx_metadata(path: str | Path) -> dict[str, str]:
    """The `metadata_props` of an ONNX file (Ultralytics writes names, imgsz, stride there), read from
    the protobuf wire format directly: the runtime image has no `onnx` package, and OpenVINO does
    not carry them over."""
    data = Path(path).read_bytes()

    def varint(pos: int) -> tuple[int, int]:
        value = shift = 0
        while True:
            byte = data[pos]
            value |= (byte & 0x7F) << shift
            pos += 1
            if not byte & 0x80:
                return value, pos
            shift += 7

    def fields(start: int, end: int):
        pos = start
        while pos < end:
            tag, pos = varint(pos)
            wire = tag & 7
            if wire == 0:
                _, pos = varint(pos)
                continue
            if wire == 1:
                pos += 8
                continue
            if wire == 5:
                pos += 4
                continue
            if wire != 2:
                raise ValueError(f"unexpected protobuf wire type {wire}")
            size, pos = varint(pos)
            yield tag >> 3, pos, pos + size
            pos += size

    meta: dict[str, str] = {}
    try:
        for number, start, end in fields(0, len(data)):
            if number == 14:  # ModelProto.metadata_props: StringStringEntryProto (key = 1, value = 2)
                entry = {n: data[s:e].decode("utf-8", "replace") for n, s, e in fields(start, end)}
                meta[entry.get(1, "")] = entry.get(2, "")
    except (IndexError, ValueError):
        return {}
    return meta


def names_from_metadata(meta: dict[str, str]) -> dict[int, str]:
    try:
        return {int(k): str(v) for k, v in ast.literal_eval(meta.get("names", "{}")).items()}
    except (ValueError, SyntaxError):
        return {}


class TensorDetector(Detector):
    """A backend that runs an exported YOLO network on a (1, 3, H, W) float blob; the pre- and
    post-processing are here. `fixed` models have one input size; dynamic ones take Ultralytics'
    minimal stride-32 rectangle around the scaled frame."""

    fixed: bool
    height: int
    width: int

    def setup(self, path: str | Path, *, imgsz: int, conf: float, classes: Sequence[str], shape: Sequence, names_from: str | Path):
        self.names = names_from_metadata(onnx_metadata(names_from))
        self.fixed = len(shape) == 4 and all(isinstance(d, int) and d > 0 for d in shape[2:])
        self.batchable = len(shape) == 4 and not (isinstance(shape[0], int) and shape[0] > 0)  # a dynamic batch axis
        if self.fixed:
            self.height, self.width = int(shape[2]), int(shape[3])
        else:
            self.height = self.width = imgsz
        self.imgsz = self.width
        self.conf = conf
        self.keep = class_ids(self.names, classes) if classes else None
        self.name = Path(path).name

    def run(self, blob: np.ndarray) -> np.ndarray:
        """The network's first output for one blob."""
        raise NotImplementedError

    def input_size(self, h: int, w: int) -> tuple[int, int]:
        """A fixed-size model takes its size; a dynamic one the smallest stride-32 rectangle around the
        scaled frame, as Ultralytics does (640x480 video: 640x480, a quarter less work than 640x640)."""
        if self.fixed:
            return self.height, self.width
        ratio = self.imgsz / max(h, w)
        return (-(-round(h * ratio) // STRIDE) * STRIDE, -(-round(w * ratio) // STRIDE) * STRIDE)

    def blob(self, image: np.ndarray) -> tuple[np.ndarray, float, float, float]:
        padded, ratio, left, top = letterbox(image, *self.input_size(*image.shape[:2]))
        return cv2.dnn.blobFromImage(padded, 1 / 255.0, swapRB=True), ratio, left, top

    def detect(self, image: np.ndarray) -> tuple[list[dict], float]:
        started = time.perf_counter()
        blob, ratio, left, top = self.blob(image)
        detections = self.decode(self.run(blob)[0], ratio, left, top, image.shape[:2])
        return detections, (time.perf_counter() - started) * 1000.0

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[tuple[list[dict], float]]:
        """One network call for frames of one size where the model's batch axis is dynamic (a `.pt`
        converted here has one; the shipped fixed-size ONNX does not). Each frame's milliseconds are
        the call's divided by the frames in it."""
        if len(images) < 2 or not self.batchable or len({image.shape for image in images}) > 1:
            return [self.detect(image) for image in images]
        started = time.perf_counter()
        prepared = [self.blob(image) for image in images]
        out = self.run(np.concatenate([blob for blob, *_ in prepared]))
        found = [self.decode(out[i], *placement, image.shape[:2]) for i, ((_, *placement), image) in enumerate(zip(prepared, images))]
        ms = (time.perf_counter() - started) * 1000.0 / len(images)
        return [(detections, ms) for detections in found]

    def decode(self, out: np.ndarray, ratio: float, left: float, top: float, size: tuple[int, int]) -> list[dict]:
        """One frame's network output as detections in the frame's own (height, width) `size`."""
        h, w = size
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
        return to_detections(xyxy, scores, cls, self.names, w, h)
