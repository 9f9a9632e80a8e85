"""Inference backends: every one keeps the fp32 model's accuracy on the shapes validation set,
`.pt` weights are converted once and cached by hash, size and backend, `auto` keeps the fastest
it measured, and a runtime without torch runs `.pt` weights from the cache."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from kinase_cli.workflows.samples import shapes_dataset
from support.accuracy import evaluate, load_split
from support.cli import ROOT
from support.worker_stack import SHAPES_ONNX, SHAPES_PT
from worker import detector as detectors
from worker import settings as worker_settings
from worker.detector import convert
from worker.detector.calibration import Calibration, frames
from worker.detector.ov import has_bf16

pytestmark = pytest.mark.slow
IMGSZ = 320  # the shapes model's training size; small keeps the test's CPU time modest
INT8 = ("onnxruntime-int8", "openvino-int8")


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """The cache the image build makes: `python -m worker.detector.convert` on the .pt, int8 calibrated
    on generated validation images (a different seed from the evaluation set)."""
    root = tmp_path_factory.mktemp("backends")
    calibration = shapes_dataset(root / "calibration", train=0, val=32, imgsz=IMGSZ, seed=101).parent / "images" / "val"
    evaluation = shapes_dataset(root / "evaluation", train=0, val=40, imgsz=IMGSZ, seed=202).parent
    cache = root / "cache"
    argv = [str(SHAPES_PT), "--imgsz", str(IMGSZ), "--backends", "onnxruntime,onnxruntime-int8,openvino-int8"]
    assert convert.main([*argv, "--calibration", str(calibration), "--cache", str(cache)]) == 0
    return cache, load_split(evaluation)


def test_every_backend_keeps_map50_within_001_of_fp32(converted):
    cache, (images, truths) = converted
    backends = ["onnxruntime", "onnxruntime-int8", "openvino", "openvino-int8", "pytorch"] + (["openvino-bf16"] if has_bf16() else [])
    scores = {b: evaluate(detectors.load(str(SHAPES_PT), imgsz=IMGSZ, backend=b, cache_dir=cache), images, truths) for b in backends}
    print("mAP50 on 40 generated validation images:", {b: round(v, 4) for b, v in scores.items()})
    fp32 = scores["onnxruntime"]
    assert fp32 > 0.9  # the model really detects the shapes, so a drop would show
    assert scores["pytorch"] == pytest.approx(fp32, abs=0.005)  # same network, other runtime
    for backend, score in scores.items():
        assert score >= fp32 - 0.01, backend


def test_pt_is_converted_once_and_cached_by_hash_size_and_backend(converted, caplog):
    cache, _ = converted
    folder = convert.Cache(SHAPES_PT, IMGSZ, cache).folder
    assert folder.name == f"shapes-yolo11n-{convert.digest(SHAPES_PT)}-{IMGSZ}"
    assert sorted(p.name for p in folder.iterdir()) == [
        "fp32.onnx",
        "onnxruntime-int8.check2.onnx",
        "openvino-int8.check2.bin",
        "openvino-int8.check2.xml",
    ]
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    with caplog.at_level(logging.INFO, logger="kinase.worker.detector"):
        for backend in ("onnxruntime", *INT8):
            assert detectors.load(str(SHAPES_PT), imgsz=IMGSZ, backend=backend, cache_dir=cache).backend == backend
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before
    assert not [r for r in caplog.records if "converted" in r.message or "quantized" in r.message]
    assert not convert.Cache(SHAPES_PT, IMGSZ * 2, cache).folder.exists()  # another size is another entry


def test_auto_keeps_the_fastest_it_measured_and_logs_it(converted, caplog):
    cache, _ = converted
    with caplog.at_level(logging.INFO, logger="kinase.worker.detector"):
        chosen = detectors.load(str(SHAPES_PT), imgsz=IMGSZ, cache_dir=cache)
    timings = chosen.timings
    assert {"onnxruntime", *INT8} <= set(timings)  # cached int8 models are candidates
    assert ("openvino-bf16" in timings) == has_bf16() != ("openvino" in timings)
    assert "pytorch" not in timings
    assert chosen.backend == min(timings, key=timings.get)
    line = next(r.message for r in caplog.records if r.message.startswith("backend auto:"))
    assert line.startswith(f"backend auto: {chosen.backend}, {timings[chosen.backend]:.1f} ms per 320x240 frame (")


def test_int8_without_calibration_or_cache_names_the_setting(tmp_path):
    with pytest.raises(detectors.DetectorError, match="openvino-int8 has no quantized model .* set KINASE_CALIBRATION"):
        detectors.load(str(SHAPES_PT), imgsz=IMGSZ, backend="openvino-int8", cache_dir=tmp_path)


def test_backend_setting_is_checked_before_anything_runs():
    env = {"KINASE_SOURCE": "kvs://cam", "KINASE_BUCKET": "b", "KINASE_QUEUE_URL": "http://localhost:1/q"}
    assert worker_settings.load({**env, "KINASE_BACKEND": "OpenVINO-int8"}).backend == "openvino-int8"
    assert worker_settings.load(env).backend == "auto"
    with pytest.raises(worker_settings.SettingsError, match="KINASE_BACKEND='tensorrt' must be auto or one of onnxruntime, "):
        worker_settings.load({**env, "KINASE_BACKEND": "tensorrt"})


def test_a_runtime_without_torch_runs_pt_weights_from_the_cache(converted, tmp_path):
    """As in the image: torch and ultralytics absent, the .pt's conversion made at build time."""
    cache, _ = converted
    code = (
        "import sys; sys.modules['torch'] = sys.modules['ultralytics'] = None\n"
        "from worker import detector\n"
        "for cache in sys.argv[2:]:\n"
        "    try:\n"
        "        d = detector.load(sys.argv[1], imgsz=320, backend='onnxruntime', cache_dir=cache)\n"
        "        print('ok', d.backend, sorted(d.names.values()))\n"
        "    except detector.DetectorError as exc:\n"
        "        print('error', exc)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, str(SHAPES_PT), str(cache), str(tmp_path / "empty")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = run.stdout.splitlines()
    assert lines[0] == "ok onnxruntime ['circle', 'square', 'triangle']", run.stderr
    assert lines[1].startswith("error shapes-yolo11n.pt is not converted for this image") and "convert at build time" in lines[1]


def test_agreement_counts_moved_or_vanished_boxes_not_threshold_flicker():
    a = {"class_id": 0, "conf": 0.9, "bbox": [0.5, 0.5, 0.2, 0.2]}
    b = {"class_id": 1, "conf": 0.8, "bbox": [0.2, 0.2, 0.1, 0.1]}
    moved_a_little = {**a, "bbox": [0.52, 0.5, 0.2, 0.2]}
    assert convert.agreement([[a, b]], [[moved_a_little, b]]) == 1.0
    assert convert.agreement([[a, b]], [[a, {**b, "conf": 0.2}]]) == 1.0  # b fell under 0.25 but is still there
    assert convert.agreement([[a, b]], [[a]]) == pytest.approx(2 / 3)  # b vanished
    assert convert.agreement([[a]], [[{**a, "class_id": 1}]]) == 0.0  # same box, other class
    assert convert.agreement([[a]], [[{**a, "bbox": [0.7, 0.5, 0.2, 0.2]}]]) == 0.0  # moved off
    assert convert.agreement([[]], [[]]) == 1.0


def test_an_int8_model_that_disagrees_with_fp32_is_refused_once_and_for_all(tmp_path):
    images, _ = load_split(shapes_dataset(tmp_path / "calibration", train=0, val=8, imgsz=IMGSZ, seed=303).parent)
    unlabelled = Calibration(images, None)  # a video's frames: only the agreement check is possible
    cache = convert.Cache(SHAPES_ONNX, IMGSZ, tmp_path / "cache")

    with pytest.raises(
        detectors.DetectorError,
        match=r"onnxruntime-int8 for shapes-yolo11n.onnx at 320 refused: agreement with fp32 [01]\.\d+ on 2 held-out calibration frames, under 1.5",
    ):
        convert.int8(cache, "onnxruntime-int8", lambda: unlabelled, minimum=1.5)  # no model can pass: the refusal path

    assert cache.refused("onnxruntime-int8").exists() and not cache.path("onnxruntime-int8").exists()
    assert [p.name for p in cache.folder.iterdir()] == ["onnxruntime-int8.check2.refused"]  # nothing half-written left
    with pytest.raises(detectors.DetectorError, match="refused"):
        convert.int8(cache, "onnxruntime-int8", lambda: pytest.fail("quantized again"))
    assert "onnxruntime-int8" not in detectors.candidates(str(SHAPES_ONNX), cache, "cpu", lambda: unlabelled)
    argv = [str(SHAPES_ONNX), "--imgsz", str(IMGSZ), "--backends", "onnxruntime-int8", "--cache", str(tmp_path / "cache")]
    assert convert.main(argv) == 0  # the image build goes on without it: the worker runs the other backends


def test_an_int8_model_left_by_an_older_check_is_not_used(tmp_path):
    """A cache filled by an earlier kinase, whose check was weaker, must not skip today's check."""
    cache = convert.Cache(SHAPES_ONNX, IMGSZ, tmp_path / "cache")
    cache.folder.mkdir(parents=True)
    (cache.folder / "onnxruntime-int8.onnx").write_bytes(b"quantized and passed by the 16-frame check")
    with pytest.raises(detectors.DetectorError, match="has no quantized model for shapes-yolo11n.onnx at 320 yet"):
        convert.int8(cache, "onnxruntime-int8", None)
    assert "onnxruntime-int8" not in detectors.candidates(str(SHAPES_ONNX), cache, "cpu", None)


def test_with_labelled_frames_int8_is_held_to_its_map50_against_fp32(tmp_path):
    """The model's validation images come with labels: the held-out check is then the mAP50 drop
    the accuracy target bounds (0.01), not the coarser agreement."""
    folder = shapes_dataset(tmp_path / "calibration", train=0, val=8, imgsz=IMGSZ, seed=303).parent / "images" / "val"
    labelled = frames(folder)
    assert labelled.truths is not None and len(labelled.truths) == len(labelled.images) == 8
    assert all(t and {"class_id", "bbox"} <= set(t[0]) for t in labelled.truths)
    plain = tmp_path / "plain"
    plain.mkdir()
    for image in folder.iterdir():
        (plain / image.name).write_bytes(image.read_bytes())
    assert frames(plain).truths is None  # images without label files: agreement only

    cache = convert.Cache(SHAPES_ONNX, IMGSZ, tmp_path / "cache")
    with pytest.raises(
        convert.Refused,
        match=r"refused: mAP50 [01]\.\d{4} against fp32's [01]\.\d{4} on 4 held-out labelled frames, a drop over -1",
    ):
        convert.int8(cache, "onnxruntime-int8", lambda: labelled, max_drop=-1)  # no model gains 1: the refusal path
    assert convert.int8(convert.Cache(SHAPES_ONNX, IMGSZ, tmp_path / "ok"), "onnxruntime-int8", lambda: labelled).exists()
