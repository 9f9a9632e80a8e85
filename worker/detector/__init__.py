"""YOLO detection behind one interface, on the fastest backend the machine has.

Backends (KINASE_BACKEND): `onnxruntime` (fp32), `onnxruntime-int8` (static QDQ, per-channel),
`openvino` (fp32), `openvino-bf16` (where the CPU has bf16 instructions), `openvino-int8` (NNCF),
`pytorch` (Ultralytics on the CPU) and `cuda` (ONNX Runtime's CUDA provider, or Ultralytics on a
CUDA device). The ONNX and OpenVINO backends share the letterbox, decoding and NMS in
`base.py`, so they give the same boxes; `build.py` makes one backend on a model (a `.pt` is
converted to their formats once and cached, `convert.py`); `choice.py` picks the backend, measuring
the candidates for `auto`. The runtimes themselves: `ort.py`, `ov.py`, `yolo.py`.
"""

from __future__ import annotations

from worker.backends import BACKENDS
from worker.detector.base import MAX_DETECTIONS, NMS_IOU, STRIDE, Detector, DetectorError, TensorDetector, class_ids, letterbox, nms
from worker.detector.choice import candidates, for_settings, load, measure, probe_image

__all__ = [
    "BACKENDS",
    "MAX_DETECTIONS",
    "NMS_IOU",
    "STRIDE",
    "Detector",
    "DetectorError",
    "TensorDetector",
    "candidates",
    "class_ids",
    "for_settings",
    "letterbox",
    "load",
    "measure",
    "nms",
    "probe_image",
]
