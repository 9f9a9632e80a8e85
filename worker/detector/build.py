"""One backend on a model's weights: ONNX Runtime (CPU or CUDA, fp32 or int8), OpenVINO (fp32, bf16 or
int8) or Ultralytics (PyTorch), converting and caching the weights first where the backend needs it
(`convert.py`). The runtimes are imported only when their backend is built."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from worker.backends import BACKENDS
from worker.detector.base import Detector, DetectorError
from worker.detector.convert import INT8_FILES, Cache, fp32_onnx, int8
from worker.settings import var


def has_openvino() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def build(
    backend: str,
    model: str,
    *,
    imgsz: int,
    conf: float,
    classes: Sequence[str],
    cache: Cache | None,
    calibration: Callable[[], Sequence[np.ndarray]] | None = None,
) -> Detector:
    """One backend on these weights, converting (and caching) first if it needs to."""
    suffix = Path(model).suffix.lower()
    torch_weights = suffix in (".pt", ".yaml", ".yml")
    if backend == "pytorch" or (backend == "cuda" and torch_weights and not ort_cuda()):
        if not torch_weights:
            raise DetectorError(f"{var('backend')}={backend} runs .pt weights through Ultralytics; {Path(model).name} is not one")
        from worker.detector.yolo import UltralyticsDetector

        return UltralyticsDetector(
            model, backend=backend, imgsz=imgsz, conf=conf, classes=classes, device="cpu" if backend == "pytorch" else "cuda"
        )
    if cache is None:
        raise DetectorError(f"{var('model')}={model!r}: use an .onnx, .pt or .yaml model")
    quantized = int8(cache, backend, calibration) if backend in INT8_FILES else None
    fp32 = fp32_onnx(cache)
    if backend in ("onnxruntime", "onnxruntime-int8", "cuda"):
        from worker.detector.ort import OrtDetector

        path = quantized or fp32
        detector = OrtDetector(path, backend=backend, imgsz=imgsz, conf=conf, classes=classes, names_from=fp32, cuda=backend == "cuda")
        detector.name = Path(model).name  # the weights the user named (messages carry it), not the converted file
        return detector
    if backend in ("openvino", "openvino-bf16", "openvino-int8"):
        if not has_openvino():
            raise DetectorError(f"{var('backend')}={backend} but openvino is not installed")
        from worker.detector.ov import OvDetector, has_bf16

        if backend == "openvino-bf16" and not has_bf16():
            raise DetectorError(f"{var('backend')}=openvino-bf16 but this CPU has no bf16 instructions")
        path = quantized or fp32
        precision = "bf16" if backend == "openvino-bf16" else "f32"
        detector = OvDetector(path, backend=backend, precision=precision, imgsz=imgsz, conf=conf, classes=classes, names_from=fp32)
        detector.name = Path(model).name
        return detector
    raise DetectorError(f"{var('backend')}={backend!r} must be auto or one of {', '.join(BACKENDS)}")


def ort_cuda() -> bool:
    from worker.detector.ort import cuda_available

    return cuda_available()
