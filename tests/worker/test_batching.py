"""Cross-stream batching in the fleet worker (worker/fleet/batching.py) and the detector's batch call."""

from __future__ import annotations

import io
import threading

import cv2
import numpy as np
import pytest

from support.worker_stack import SHAPES_PT
from worker import detector as detectors
from worker import settings as worker_settings
from worker.fleet.batching import BatchingDetector
from worker.metrics import OUTCOMES
from worker.pipeline import Worker


class GatedBatches:
    """Records each network call's frames; the first call waits for `gate`, so the others queue up behind it."""

    name = "gated"
    batchable = True

    def __init__(self, fail: bool = False):
        self.gate = threading.Event()
        self.calls: list[list[str]] = []
        self.fail = fail

    def detect(self, image):
        return self.detect_batch([image])[0]

    def detect_batch(self, images):
        first = not self.calls
        self.calls.append(list(images))
        if first:
            self.gate.wait(30)
        if self.fail and not first:
            raise RuntimeError("network failed")
        return [([{"class": image}], 1.0) for image in images]


def queue_up(shared: BatchingDetector, inner: GatedBatches, labels: list[str]) -> tuple[list[threading.Thread], dict]:
    """One thread asks first and holds the detector; then each label asks, in order, behind it."""
    answers: dict[str, object] = {}

    def ask(label):
        try:
            answers[label] = shared.detect(label)
        except RuntimeError as exc:
            answers[label] = exc

    threads = [threading.Thread(target=ask, args=("first",))]
    threads[0].start()
    while not inner.calls:
        threading.Event().wait(0.01)
    for label in labels:
        thread = threading.Thread(target=ask, args=(label,))
        thread.start()
        threads.append(thread)
        while len(shared._pending) < len(threads) - 1:  # queued before the next one asks
            threading.Event().wait(0.01)
    return threads, answers


def test_waiting_frames_of_different_streams_run_in_one_call_oldest_first():
    inner = GatedBatches()
    shared = BatchingDetector(inner, max_batch=4, max_wait=5.0)
    assert shared.name == "gated"
    labels = [f"stream-{i}" for i in range(5)]
    threads, answers = queue_up(shared, inner, labels)
    inner.gate.set()
    for thread in threads:
        thread.join(30)
    assert inner.calls == [["first"], labels[:4], labels[4:]]
    assert answers == {label: ([{"class": label}], 1.0) for label in ["first", *labels]}
    assert shared.batches == {1: 2, 4: 1}


def test_a_model_without_a_batch_axis_is_served_one_frame_at_a_time():
    inner = GatedBatches()
    inner.batchable = False
    shared = BatchingDetector(inner, max_batch=4, max_wait=5.0)
    assert shared.max_batch == 1
    labels = [f"stream-{i}" for i in range(3)]
    threads, answers = queue_up(shared, inner, labels)
    inner.gate.set()
    for thread in threads:
        thread.join(30)
    assert inner.calls == [["first"], *([label] for label in labels)]
    assert answers["stream-2"] == ([{"class": "stream-2"}], 1.0)


def test_a_failed_batch_raises_in_every_stream_of_it_and_the_next_batch_still_runs():
    inner = GatedBatches(fail=True)
    shared = BatchingDetector(inner, max_batch=2, max_wait=5.0)
    labels = ["a", "b", "c"]
    threads, answers = queue_up(shared, inner, labels)
    inner.gate.set()
    for thread in threads:
        thread.join(30)
    assert inner.calls == [["first"], ["a", "b"], ["c"]]
    assert all(isinstance(answers[label], RuntimeError) for label in labels)
    assert answers["first"] == ([{"class": "first"}], 1.0)


@pytest.fixture(scope="module")
def dynamic_model(tmp_path_factory):
    """The shapes `.pt` exported with a dynamic batch axis, as the worker's conversion exports it."""
    from ultralytics import YOLO

    folder = tmp_path_factory.mktemp("dynamic")
    (folder / SHAPES_PT.name).write_bytes(SHAPES_PT.read_bytes())
    return YOLO(str(folder / SHAPES_PT.name)).export(format="onnx", imgsz=320, dynamic=True, simplify=True, verbose=False)


def test_detect_batch_finds_what_detect_finds_frame_by_frame(dynamic_model, tmp_path, make_clip):
    video = make_clip(frames=3, size=(320, 240), seed=31, shapes=3).path
    cap = cv2.VideoCapture(str(video))
    images = [cap.read()[1] for _ in range(3)]
    detector = detectors.load(dynamic_model, imgsz=320, backend="onnxruntime")
    assert detector.batchable and not detectors.load(str(SHAPES_PT.with_suffix(".onnx")), imgsz=320).batchable
    batched = detector.detect_batch(images)
    assert len(batched) == 3
    for image, (found, ms) in zip(images, batched):
        alone = detector.detect(image)[0]
        assert ms > 0 and len(found) == len(alone) > 0
        for a, b in zip(sorted(found, key=lambda d: d["bbox"]), sorted(alone, key=lambda d: d["bbox"])):
            assert a["class"] == b["class"] and np.allclose(a["bbox"], b["bbox"], atol=1e-3)


@pytest.mark.slow
def test_every_frame_read_is_accounted_for_when_streams_share_batches(aws_env, dynamic_model, tmp_path, make_clip):
    """Three one-stream pipelines (as the fleet runs them) share one batching detector; each stream's
    frames are all read, inferred in batches with the others' and delivered."""
    media = aws_env
    shared = BatchingDetector(detectors.load(dynamic_model, imgsz=320, backend="onnxruntime"), max_batch=3, max_wait=30.0)
    workers = []
    for i in range(3):
        video = make_clip(frames=20, fps=15, size=(320, 240), seed=40 + i).path
        target = media.fresh()
        env = media.worker_env(target, str(video), model=dynamic_model, backend="onnxruntime")
        workers.append((Worker(worker_settings.load(env), session=media.new_session(), metrics_out=io.StringIO(), detector=shared), target))
    codes = {}
    threads = [threading.Thread(target=lambda w=w: codes.setdefault(id(w), w.run())) for w, _ in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert list(codes.values()) == [0, 0, 0]
    for worker, target in workers:
        totals = worker.metrics.totals
        assert worker.metrics.balance() == 0
        assert totals["FramesRead"] == totals["FramesDelivered"] == totals["FramesProcessed"] == 20
        assert sum(totals[name] for name in OUTCOMES) == 20
        assert len(media.messages(target.queue_url, expect=20)) == 20
    assert max(shared.batches) > 1 and sum(size * n for size, n in shared.batches.items()) == 60


def test_warm_up_runs_every_batch_size_once_before_the_streams_start():
    inner = GatedBatches()
    inner.gate.set()
    BatchingDetector(inner, max_batch=3, max_wait=0.0).warm("probe")
    assert inner.calls == [["probe", "probe"], ["probe", "probe", "probe"]]
