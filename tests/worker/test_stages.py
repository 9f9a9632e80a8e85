"""The per-frame stages (worker/stages): order, what a stage sees and changes, and its state in the checkpoint."""

from __future__ import annotations

import io
import threading
import time

import boto3
import numpy as np

from support.stages import Numbering
from support.worker_stack import SHAPES_ONNX
from worker import layout, pipeline
from worker import settings as worker_settings
from worker.checkpoint import CheckpointStore, Ledger
from worker.frames import FragmentEnd, Frame
from worker.metrics import Metrics
from worker.sources.incarnation import Incarnation
from worker.stages import STAGES, Context, Stages

ARN = "arn:aws:kinesisvideo:us-east-1:123456789012:stream/cam-1/1700000000000"
PATHS = ["worker.stages.detect:Detect", "support.stages:Numbering", "worker.stages.deliver:Deliver"]


class TwoBoxes:
    """A detector that finds the same two boxes in every frame."""

    def detect(self, image):
        return [{"class": "circle", "class_id": 0, "conf": 0.9, "bbox": [0.5, 0.5, 0.1, 0.1]}] * 2, 1.5


class Delivery:
    """Keeps what the deliver stage hands over; the test says when each frame is delivered."""

    def __init__(self, ledger: Ledger):
        self.ledger, self.failed, self.submitted = ledger, threading.Event(), []

    def submit(self, frame, detections, inference_ms, extra=None):
        self.ledger.submitted(frame)
        self.submitted.append((frame, detections, extra))


class MemoryStore:
    def __init__(self):
        self.saved: list[dict] = []

    def save(self, position: dict) -> dict:
        self.saved.append(position)
        return position


class MemoryS3:
    def __init__(self):
        self.objects: dict[str, bytes] = {}

    def put_object(self, Bucket, Key, Body, ContentType):
        self.objects[Key] = Body

    def get_object(self, Bucket, Key):
        return {"Body": io.BytesIO(self.objects[Key])}


def kvs_frame(fragment: str, offset: int, index: int) -> Frame:
    return Frame(
        image=np.zeros((2, 2, 3), np.uint8),
        source={"type": "kvs", "uri": "kvs://cam-1", "fragment_number": fragment, "frame_in_fragment": offset},
        frame_index=index,
        frame_time=float(index),
        read_at=time.monotonic(),
        fragment=fragment,
        offset=offset,
        server_time=1000.0 + int(fragment),
    )


def worker(metrics: Metrics) -> pipeline.Worker:
    env = {
        "KINASE_SOURCE": "kvs://cam-1",
        "KINASE_BUCKET": "frames",
        "KINASE_QUEUE_URL": "http://localhost:1/q",
        "KINASE_MODEL": str(SHAPES_ONNX),
    }
    w = pipeline.Worker(worker_settings.load(env), session=boto3.Session(region_name="us-east-1"), metrics_out=io.StringIO())
    w.metrics = metrics
    return w


def test_the_shipped_stages_begin_with_detect_and_end_with_deliver():
    assert (STAGES[0], STAGES[-1]) == ("worker.stages.detect:Detect", "worker.stages.deliver:Deliver")


def test_a_stage_changes_detections_attaches_data_for_delivery_and_checkpoints_its_state_at_each_fragment_end():
    metrics, store = Metrics("cam-1", out=io.StringIO()), MemoryStore()
    ledger = Ledger(store, metrics, position={"fragment_number": "90", "next_offset": None})
    delivery = Delivery(ledger)
    w = worker(metrics)
    stages = Stages(Context(w.settings, metrics, TwoBoxes(), delivery), PATHS)
    assert stages.names == ["detect", "numbering", "deliver"]
    Numbering.seen = []
    frames = pipeline.FrameQueue(8, metrics, threading.Event())
    for item in (kvs_frame("100", 0, 0), kvs_frame("100", 1, 3), FragmentEnd("100", {"fragment_number": "100", "next_offset": None})):
        frames.put(item)
    frames.put(kvs_frame("200", 0, 4))
    frames.put(pipeline._END)

    w._infer(stages, frames, delivery, ledger)

    # frames 1 and 2 never reached the stages (sampled out, dropped): the next one says so, and the media time between
    assert Numbering.seen == [(0, 0, None), (3, 2, 3.0), (4, 0, 1.0)]
    assert [[d["track_id"] for d in detections] for _frame, detections, _extra in delivery.submitted] == [[1, 2], [3, 4], [5, 6]]
    assert [extra for _frame, _detections, extra in delivery.submitted] == [{"numbered": 2}] * 3
    assert metrics.totals["FramesProcessed"] == 3
    assert store.saved == []  # nothing delivered yet: no checkpoint
    for frame, _detections, _extra in delivery.submitted:
        ledger.delivered(frame)
    # fragment 100's checkpoint holds the state when its end passed, though fragment 200's frame was numbered since
    assert [(p["fragment_number"], p["stages"]) for p in store.saved] == [("100", {"numbering": {"next": 5}})]
    ledger.final(stages.snapshot())
    assert (store.saved[-1]["fragment_number"], store.saved[-1]["next_offset"], store.saved[-1]["stages"]) == (
        "200",
        1,
        {"numbering": {"next": 7}},
    )

    resumed = Stages(Context(w.settings, metrics, TwoBoxes(), Delivery(ledger)), PATHS)
    resumed.restore(store.saved[-1]["stages"])
    assert [d["track_id"] for d in resumed(kvs_frame("200", 1, 0)).detections] == [7, 8]


def test_stages_without_state_add_nothing_to_the_checkpoint():
    metrics, store = Metrics("cam-1", out=io.StringIO()), MemoryStore()
    ledger = Ledger(store, metrics, position={"fragment_number": "90", "next_offset": None})
    stages = Stages(Context(worker(metrics).settings, metrics, TwoBoxes(), Delivery(ledger)), [PATHS[0], PATHS[-1]])
    assert stages.snapshot() == {}
    ledger.fragment_end(FragmentEnd("100", {"fragment_number": "100", "next_offset": None}), stages.snapshot())
    assert store.saved == [{"fragment_number": "100", "next_offset": None}]


def test_the_s3_checkpoint_store_keeps_the_stages_state():
    incarnation = Incarnation(ARN, "2023-11-14T22:13:20Z")
    s3 = MemoryS3()
    stores = [
        CheckpointStore(
            s3, "frames", layout.checkpoint_key("cam-1"), "cam-1", "kvs://cam-1", incarnation, Metrics("cam-1", out=io.StringIO())
        )
        for _ in range(2)
    ]
    stores[0].save({"fragment_number": "100", "next_offset": None, "stages": {"numbering": {"next": 5}}})
    assert stores[1].load()["stages"] == {"numbering": {"next": 5}}
