"""Which backend runs the model: the one asked for, or for `auto` the fastest of the candidates, measured here.

`auto` (the default) measures the candidates on a short warm-up and keeps the fastest: which one
wins depends on the CPU (bf16 wins on a Xeon with AMX, int8 on CPUs with VNNI only), and the CPU
behind a Fargate task is not known in advance. Candidates are the backends that start without a
slow conversion: fp32 and bf16 always, int8 when its quantized model is cached (the image build
makes them) or calibration frames are given; OpenVINO fp32 only where bf16 is not available.
PyTorch is left out on the CPU: it was 1.7x slower than ONNX Runtime fp32 wherever it was
measured, and importing torch alone takes seconds. Measuring costs about a second of start-up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from worker.backends import BACKENDS
from worker.detector.base import Detector, DetectorError
from worker.detector.build import build, has_openvino, ort_cuda
from worker.detector.convert import INT8_FILES, Cache
from worker.settings import var

if TYPE_CHECKING:
    from worker.settings import Settings

log = logging.getLogger("kinase.worker.detector")

WARMUP_RUNS = 3  # timed runs per candidate after one untimed (that one compiles, allocates)
PRUNE_FACTOR = 1.5  # a candidate whose first timed run is this much slower than the best so far is not run again


def candidates(model: str, cache: Cache | None, device: str, calibration) -> list[str]:
    """The backends `auto` measures, fastest-looking first (ties in the measurement keep this order)."""
    if device.startswith("cuda"):
        return ["cuda"]
    found: list[str] = []
    if device == "auto":
        from worker.detector.yolo import torch_cuda

        # torch takes seconds to import: ask it only where a GPU's device node exists
        if ort_cuda() or (Path(model).suffix.lower() == ".pt" and Path("/dev/nvidiactl").exists() and torch_cuda()):
            found.append("cuda")
    if cache is None:
        return found or ["pytorch"]
    openvino = has_openvino()
    if openvino:
        from worker.detector.ov import has_bf16

        if has_bf16():
            found.append("openvino-bf16")
    for backend in INT8_FILES:
        buildable = calibration is not None and not cache.refused(backend).exists()
        if (backend == "onnxruntime-int8" or openvino) and (cache.path(backend).exists() or buildable):
            found.append(backend)
    found.append("onnxruntime")
    if openvino and "openvino-bf16" not in found:
        found.append("openvino")  # with bf16 at hand, f32 only costs a compile: bf16 was 1.3-2.4x faster wherever measured
    return found


def probe_image(imgsz: int) -> np.ndarray:
    """A 4:3 frame at the model's size: the input shape most cameras give, so the compiled shape is reused."""
    return np.zeros((imgsz * 3 // 4, imgsz, 3), dtype=np.uint8)


def measure(detector: Detector, image: np.ndarray, best: float = float("inf"), runs: int = WARMUP_RUNS) -> float:
    """Fastest of the timed runs, in milliseconds per frame: other work on the cores only adds time, so the
    minimum is the estimate it disturbs least (as `timeit` advises). A candidate clearly slower than
    `best` stops after one timed run."""
    detector.detect(image)
    times: list[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        detector.detect(image)
        times.append((time.perf_counter() - started) * 1000.0)
        if times[0] > best * PRUNE_FACTOR:
            break
    return min(times)


def load(
    model: str,
    *,
    imgsz: int = 640,
    conf: float = 0.25,
    classes: Sequence[str] = (),
    device: str = "auto",
    backend: str = "auto",
    cache_dir: str | Path | None = None,
    calibration: Callable[[], Sequence[np.ndarray]] | None = None,
) -> Detector:
    """The detector for `backend`, or for `auto` the fastest of the candidates, measured here.

    `calibration` returns the frames int8 quantization is calibrated on, when a quantized model is
    not cached yet. The chosen detector has `timings` (backend: fastest ms of the warm-up) for `auto`.
    """
    if backend != "auto" and backend not in BACKENDS:
        raise DetectorError(f"{var('backend')}={backend!r} must be auto or one of {', '.join(BACKENDS)}")
    suffix = Path(model).suffix.lower()
    if suffix not in (".onnx", ".pt", ".yaml", ".yml"):
        raise DetectorError(f"{var('model')}={model!r}: use an .onnx, .pt or .yaml model")
    cache = Cache(model, imgsz, cache_dir) if Path(model).is_file() else None
    if suffix in (".yaml", ".yml") and cache is None:  # an Ultralytics config name, resolved by Ultralytics itself
        backend = "pytorch" if backend == "auto" else backend
    options = {"imgsz": imgsz, "conf": conf, "classes": classes, "cache": cache, "calibration": calibration}
    if backend != "auto":
        detector = build(backend, model, **options)
        detector.detect(probe_image(imgsz))
        detector.timings = {}
        return detector

    image = probe_image(imgsz)
    best: Detector | None = None
    timings: dict[str, float] = {}
    failures: list[tuple[str, str]] = []
    for name in candidates(model, cache, device, calibration):
        try:
            detector = build(name, model, **options)
            timings[name] = measure(detector, image, timings[best.backend] if best else float("inf"))
        except DetectorError as exc:
            failures.append((name, str(exc)))
            log.warning("backend %s not available: %s", name, exc)
            continue
        if best is None or timings[name] < timings[best.backend]:
            best = detector
        del detector  # a slower candidate's sessions and compiled models are freed before the next loads
    if best is None:
        reasons = {reason for _, reason in failures}
        if len(reasons) == 1:  # the same for every backend (a class filter the model lacks): say it once
            raise DetectorError(reasons.pop())
        raise DetectorError("no backend could run the model: " + "; ".join(f"{name}: {reason}" for name, reason in failures))
    others = ", ".join(f"{name} {ms:.1f} ms" for name, ms in sorted(timings.items(), key=lambda kv: kv[1]) if name != best.backend)
    log.info(
        "backend auto: %s, %.1f ms per %dx%d frame (%s)",
        best.backend,
        timings[best.backend],
        image.shape[1],
        image.shape[0],
        others or "the only candidate",
    )
    best.timings = timings
    return best


def for_settings(s: Settings) -> Detector:
    """The worker's detector. A forced int8 backend with no calibration set given and nothing cached
    calibrates on the first frames of a file source."""
    from worker.detector.calibration import frames

    path = s.calibration or (s.source if s.backend in INT8_FILES and s.source_kind.local else "")
    return load(
        s.model,
        imgsz=s.imgsz,
        conf=s.conf,
        classes=s.classes,
        device=s.device,
        backend=s.backend,
        cache_dir=s.model_cache or None,
        calibration=(lambda: frames(path)) if path else None,
    )
