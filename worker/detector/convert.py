"""Convert weights once for a backend and keep the result.

A `.pt` is exported to ONNX (dynamic height and width, as `yolo export format=onnx dynamic=True`
writes it) with Ultralytics, which needs torch: the image build runs this, so the runtime image
finds the result in its cache and needs no torch. int8 models are quantized from that ONNX with
calibration frames: ONNX Runtime's static QDQ quantizer (per-channel) or NNCF for OpenVINO.
Both leave the detection head's box decoding (DFL, the anchor arithmetic, the sigmoid) in float,
where 8 bits would move the boxes.

Cache entries are keyed by the weights' SHA-256, the input size and the backend, and written
under a temporary name then renamed, so workers starting together never read half a file.

    python -m worker.detector.convert models/shapes-yolo11n.pt --imgsz 640 \\
        --backends onnxruntime,onnxruntime-int8,openvino-int8 --calibration VAL_IMAGES_DIR
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from worker.detector.accuracy import iou, map50
from worker.detector.base import DetectorError
from worker.settings import var

if TYPE_CHECKING:
    from worker.detector.calibration import Calibration

log = logging.getLogger("kinase.worker.detector")

DEFAULT_CACHE = Path.home() / ".cache" / "kinase" / "models"
# The int8 check's version is in the names of what it decides (models and refusals), so a model an
# older, weaker check let through (16 held-out frames, then 32: docs/BENCHMARKS.md) is checked again.
INT8_CHECK = "check2"
INT8_FILES = {"onnxruntime-int8": f"onnxruntime-int8.{INT8_CHECK}.onnx", "openvino-int8": f"openvino-int8.{INT8_CHECK}.xml"}
_HEAD = re.compile(r"^/model\.(\d+)/")
AGREEMENT_MIN = 0.95  # `agreement` of an int8 model with fp32 on held-out unlabelled calibration frames
MAP50_DROP_MAX = 0.01  # mAP50 an int8 model may lose against fp32 on held-out labelled calibration frames
CHECK_CONF = 0.1  # the held-out check looks this low, so a detection crossing 0.25 is not a miss


class Refused(DetectorError):
    """A quantized model lost too much against fp32 and is not used; the message says by how much."""


def digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


class Cache:
    """One folder per (weights, input size); one file per backend inside it."""

    def __init__(self, weights: str | Path, imgsz: int, root: str | Path | None = None):
        self.weights = Path(weights)
        self.imgsz = imgsz
        self.root = Path(root) if root else DEFAULT_CACHE
        self.folder = self.root / f"{self.weights.stem}-{digest(self.weights)}-{imgsz}"

    def path(self, backend: str) -> Path:
        return self.folder / (INT8_FILES.get(backend) or "fp32.onnx")

    def refused(self, backend: str) -> Path:
        """Where a quantized model that lost too much accuracy is recorded as refused."""
        return self.folder / f"{backend}.{INT8_CHECK}.refused"

    def writable_folder(self) -> Path:
        """The cache folder, or one under the temp dir when the cache is read-only (an image's cache at
        run time as a non-root user): a conversion is then lost at exit but still works."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            probe = self.folder / f".probe-{os.getpid()}"
            probe.touch()
            probe.unlink()
            return self.folder
        except OSError:
            fallback = Path(tempfile.gettempdir()) / "kinase-models" / self.folder.name
            log.warning("model cache %s is not writable; converting into %s", self.root, fallback.parent)
            fallback.mkdir(parents=True, exist_ok=True)
            self.folder = fallback
            return fallback


def _publish(tmp: Path, final: Path, *siblings: str) -> Path:
    for suffix in siblings:
        os.replace(tmp.with_suffix(suffix), final.with_suffix(suffix))
    os.replace(tmp, final)
    return final


def fp32_onnx(cache: Cache) -> Path:
    """The fp32 ONNX model for these weights: the file itself when it is one, else the cached export."""
    weights = cache.weights
    if weights.suffix.lower() == ".onnx":
        return weights
    final = cache.path("onnxruntime")
    if final.exists():
        return final
    try:
        from ultralytics import YOLO
    except ImportError:
        raise DetectorError(
            f"{weights.name} is not converted for this image (no {final}) and converting it needs ultralytics and torch, "
            "which the runtime image does not ship: convert at build time (python -m worker.detector.convert) or pass an .onnx model"
        ) from None
    folder = cache.writable_folder()
    final = cache.path("onnxruntime")
    started = time.perf_counter()
    ultralytics_log = logging.getLogger("ultralytics")
    level = ultralytics_log.level
    # the worker's stdout carries its metrics lines: Ultralytics' export report goes nowhere near it
    with tempfile.TemporaryDirectory(dir=folder) as work, contextlib.redirect_stdout(sys.stderr):
        copy = Path(work) / weights.name
        shutil.copyfile(weights, copy)
        ultralytics_log.setLevel(logging.WARNING)
        try:
            exported = YOLO(str(copy), task="detect").export(
                format="onnx", imgsz=cache.imgsz, opset=17, simplify=True, dynamic=True, verbose=False
            )
        except Exception as exc:  # ultralytics raises many types while exporting
            raise DetectorError(f"cannot export {weights.name} to ONNX: {str(exc).splitlines()[0]}") from None
        finally:
            ultralytics_log.setLevel(level)
        tmp = folder / f".fp32-{os.getpid()}.onnx"
        shutil.move(exported, tmp)
        _publish(tmp, final)
    log.info("converted %s to ONNX in %.1f s: %s", weights.name, time.perf_counter() - started, final)
    return final


def head_prefix(names: Sequence[str]) -> str | None:
    """`/model.N/` of the last module in an Ultralytics export: the Detect head."""
    numbers = [int(m.group(1)) for m in map(_HEAD.match, names) if m]
    return f"/model.{max(numbers)}/" if numbers else None


def _found(wanted: Sequence[dict], among: Sequence[dict]) -> int:
    """How many of `wanted` have a box of the same class at IoU >= 0.5 in `among`, each used once."""
    used: set[int] = set()
    for d in wanted:
        scores = [(iou(d["bbox"], c["bbox"]), i) for i, c in enumerate(among) if i not in used and c["class_id"] == d["class_id"]]
        best, index = max(scores, default=(0.0, -1))
        if best >= 0.5:
            used.add(index)
    return len(used)


def agreement(reference: Sequence[list[dict]], candidate: Sequence[list[dict]], conf: float = 0.25) -> float:
    """How well two models' detections agree, over all frames: the share of each side's detections
    at `conf` or more that the other side also has (same class, IoU >= 0.5) at any confidence it
    reported. Detections near the threshold may flicker across it without counting as a miss;
    boxes that moved or vanished count. 1.0 when neither found anything."""
    matched = total = 0
    for ref, cand in zip(reference, candidate):
        for one, other in ((ref, cand), (cand, ref)):
            strong = [d for d in one if d["conf"] >= conf]
            matched += _found(strong, other)
            total += len(strong)
    return 1.0 if total == 0 else matched / total


def ort_int8(fp32: Path, blobs: Sequence[np.ndarray], out: Path) -> None:
    """Static QDQ quantization, per-channel int8 weights and uint8 activations, MinMax-calibrated;
    convolutions only (the attention block's MatMuls and the head's decoding stay float)."""
    try:
        import onnx
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    except ImportError:
        raise DetectorError(
            "onnxruntime-int8 needs the onnx package to quantize (pip install onnx), or a model quantized at build time"
        ) from None

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(blobs)

        def get_next(self):
            blob = next(self.items, None)
            return None if blob is None else {input_name: blob}

    model = onnx.load(str(fp32))
    input_name = model.graph.input[0].name
    head = head_prefix([n.name for n in model.graph.node])
    exclude = [n.name for n in model.graph.node if head and n.name.startswith(head) and not n.name.startswith(head + "cv")]
    quantize_static(
        str(fp32),
        str(out),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["Conv"],
        nodes_to_exclude=exclude,
    )


def ov_int8(fp32: Path, blobs: Sequence[np.ndarray], out: Path) -> None:
    """NNCF post-training quantization (mixed preset: symmetric weights, asymmetric activations)."""
    try:
        import nncf
        import openvino as ov
    except ImportError:
        raise DetectorError("openvino-int8 needs nncf to quantize (pip install nncf), or a model quantized at build time") from None
    nncf.set_log_level(logging.WARNING)
    model = ov.Core().read_model(str(fp32))
    head = head_prefix([op.get_friendly_name() for op in model.get_ops()])
    ignored = nncf.IgnoredScope(patterns=[f"{re.escape(head)}(?!cv).*"], validate=False) if head else None
    quantized = nncf.quantize(
        model,
        nncf.Dataset(list(blobs)),
        preset=nncf.QuantizationPreset.MIXED,
        subset_size=len(blobs),
        ignored_scope=ignored,
    )
    ov.save_model(quantized, str(out), compress_to_fp16=False)


def int8(
    cache: Cache,
    backend: str,
    calibration: Callable[[], Calibration] | None,
    minimum: float = AGREEMENT_MIN,
    max_drop: float = MAP50_DROP_MAX,
) -> Path:
    """The cached int8 model, quantized now from the calibration frames if it is not there yet.

    Some calibration frames are held out and the int8 model is checked there against fp32. With
    labelled frames (a YOLO dataset's images) the check is the one that matters: its mAP50 may be at
    most `max_drop` below fp32's, measured on every 2nd frame (16 of 64 could not see a drop of 0.025
    at 640 that 32 show: docs/BENCHMARKS.md). Unlabelled frames (a video's) allow only a coarser check: it
    must find what fp32 finds (`agreement` >= `minimum`). A model that fails is refused, and the
    refusal is recorded beside the cache so it is not quantized again at every start."""
    final = cache.path(backend)
    if final.exists():
        return final
    refused = cache.refused(backend)
    if refused.exists():
        raise Refused(refused.read_text().strip())
    if calibration is None:
        raise DetectorError(
            f"{backend} has no quantized model for {cache.weights.name} at {cache.imgsz} yet: set {var('calibration')} "
            "(a folder of the model's validation images, or a video) or quantize at build time"
        )
    from worker.detector.ort import OrtDetector

    fp32 = fp32_onnx(cache)
    started = time.perf_counter()
    images, truths = calibration()
    split = len(images) >= 8
    every = 2 if truths else 4
    held = images[::every] if split else images
    held_truths = (truths[::every] if split else truths) if truths else None
    calibrate = [image for i, image in enumerate(images) if i % every] if split else images
    reference = OrtDetector(fp32, backend="onnxruntime", imgsz=cache.imgsz, conf=CHECK_CONF, classes=())
    blobs = [reference.blob(image)[0] for image in calibrate]
    folder = cache.writable_folder()
    final, refused = cache.path(backend), cache.refused(backend)
    tmp = folder / f".{backend}-{os.getpid()}{final.suffix}"
    with contextlib.redirect_stdout(sys.stderr):  # NNCF's progress bars; stdout is for metrics
        if backend == "onnxruntime-int8":
            ort_int8(fp32, blobs, tmp)
            quantized = OrtDetector(tmp, backend=backend, imgsz=cache.imgsz, conf=CHECK_CONF, classes=(), names_from=fp32)
        else:
            from worker.detector.ov import OvDetector

            ov_int8(fp32, blobs, tmp)
            quantized = OvDetector(tmp, backend=backend, precision="f32", imgsz=cache.imgsz, conf=CHECK_CONF, classes=(), names_from=fp32)
    ours = [reference.detect(image)[0] for image in held]
    theirs = [quantized.detect(image)[0] for image in held]
    if held_truths is not None:
        n_classes = len(reference.names)
        base, got = map50(ours, held_truths, n_classes), map50(theirs, held_truths, n_classes)
        passed = base - got <= max_drop
        measured = f"mAP50 {got:.4f} against fp32's {base:.4f} on {len(held)} held-out labelled frames"
        bound = f"a drop over {max_drop}"
    else:
        score = agreement(ours, theirs)
        passed = score >= minimum
        measured = f"agreement with fp32 {score:.3f} on {len(held)} held-out calibration frames"
        bound = f"under {minimum}"
    del quantized
    siblings = (".bin",) if backend == "openvino-int8" else ()
    if not passed:
        for path in (tmp, *(tmp.with_suffix(s) for s in siblings)):
            path.unlink(missing_ok=True)
        reason = f"{backend} for {cache.weights.name} at {cache.imgsz} refused: {measured}, {bound} (delete {refused} to try again)"
        refused.write_text(reason + "\n")
        raise Refused(reason)
    _publish(tmp, final, *siblings)
    log.info(
        "quantized %s for %s on %d frames in %.1f s (%s): %s",
        cache.weights.name,
        backend,
        len(blobs),
        time.perf_counter() - started,
        measured,
        final,
    )
    return final


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", type=Path)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--backends", default="onnxruntime", help="comma-separated: onnxruntime, onnxruntime-int8, openvino-int8")
    parser.add_argument("--calibration", type=Path, help="a folder of images or a video to calibrate int8 with")
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get(var("model_cache")) or DEFAULT_CACHE))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
    from worker.detector.calibration import frames

    cache = Cache(args.weights, args.imgsz, args.cache)
    calibration = (lambda: frames(args.calibration)) if args.calibration else None
    try:
        for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
            if backend in INT8_FILES:
                try:
                    print(int8(cache, backend, calibration))
                except Refused as exc:  # not an error: the worker runs the other backends
                    log.warning("%s", exc)
            elif backend in ("onnxruntime", "openvino", "openvino-bf16"):
                print(fp32_onnx(cache))
            else:
                raise DetectorError(f"--backends: {backend!r} has nothing to convert")
    except DetectorError as exc:
        log.error("error: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
