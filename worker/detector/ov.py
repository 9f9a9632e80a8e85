"""OpenVINO on the CPU: fp32, bf16 (the precision hint, where the CPU has bf16 instructions) and
int8 models quantized by NNCF.

A model exported with dynamic height and width is compiled for each input shape it meets (a
video has one): a static shape runs about 1.5x faster than OpenVINO's dynamic-shape path, and
compiling takes well under a second.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from worker.detector.base import DetectorError, TensorDetector, cpu_threads

MAX_SHAPES = 4  # compiled shapes kept; a source whose frame size keeps changing recompiles


def _core():
    import openvino as ov

    return ov.Core()


def has_bf16() -> bool:
    return "BF16" in _core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


class OvDetector(TensorDetector):
    def __init__(
        self,
        path: str | Path,
        *,
        backend: str,
        precision: str,
        imgsz: int,
        conf: float,
        classes: Sequence[str],
        names_from: str | Path | None = None,
    ):
        self.backend = backend
        self.core = _core()
        try:
            self.model = self.core.read_model(str(path))
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses with long messages
            raise DetectorError(f"cannot load model {path} in OpenVINO: {str(exc).splitlines()[0]}") from None
        self.config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": cpu_threads()}
        shape = self.model.inputs[0].get_partial_shape()
        dims = [d.get_length() if d.is_static else None for d in shape]
        self.setup(path, imgsz=imgsz, conf=conf, classes=classes, shape=dims, names_from=names_from or path)
        self._requests: dict[tuple, object] = {}

    def _request(self, shape: tuple):
        request = self._requests.get(shape)
        if request is None:
            model = self.model.clone()
            if not self.fixed:
                model.reshape({model.inputs[0]: list(shape)})
            if len(self._requests) >= MAX_SHAPES:
                self._requests.pop(next(iter(self._requests)))
            request = self._requests[shape] = self.core.compile_model(model, "CPU", self.config).create_infer_request()
        return request

    def run(self, blob: np.ndarray) -> np.ndarray:
        request = self._request(blob.shape)
        request.infer({0: blob})
        return request.get_output_tensor(0).data
