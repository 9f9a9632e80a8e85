"""ONNX Runtime: fp32 and int8 (static QDQ) models on the CPU, and the CUDA provider where there is one."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from worker.detector.base import DetectorError, TensorDetector, cpu_threads
from worker.settings import var


def cuda_available() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


class OrtDetector(TensorDetector):
    def __init__(
        self,
        path: str | Path,
        *,
        backend: str,
        imgsz: int,
        conf: float,
        classes: Sequence[str],
        names_from: str | Path | None = None,
        cuda: bool = False,
    ):
        import onnxruntime as ort

        self.backend = backend
        providers = ["CPUExecutionProvider"]
        if cuda:
            if not cuda_available():
                raise DetectorError(f"{var('backend')}=cuda but this onnxruntime has no CUDA provider")
            providers.insert(0, "CUDAExecutionProvider")
        options = ort.SessionOptions()
        # Spinning intra-op threads wait for work by burning CPU, which the decode and upload threads
        # need; on a small shared CPU (Fargate: 2 vCPU) not spinning is as fast and uses ~15% less CPU.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.intra_op_num_threads = cpu_threads()
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise DetectorError(f"cannot load ONNX model {path}: {str(exc).splitlines()[0]}") from None
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.setup(path, imgsz=imgsz, conf=conf, classes=classes, shape=inp.shape, names_from=names_from or path)

    def run(self, blob: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: blob})[0]
