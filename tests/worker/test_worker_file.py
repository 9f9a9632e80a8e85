"""The worker on recorded video (a file, an S3 object): every sampled frame delivered, right detections."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from support.worker_stack import SHAPES_ONNX, SHAPES_PT, metrics_lines, run_worker, summary
from worker.detector.accuracy import iou

pytestmark = pytest.mark.slow


def matches_truth(message: dict, truth: list[dict]) -> bool:
    """Every true shape found (same class, IoU >= 0.5) and nothing else reported with confidence >= 0.5."""

    def hit(d, t):
        return d["class"] == t["class"] and iou(d["bbox"], t["bbox"]) >= 0.5

    found = all(any(hit(d, t) for d in message["summary"]) for t in truth)
    extra = [d for d in message["summary"] if d["conf"] >= 0.5 and not any(hit(d, t) for t in truth)]
    return found and not extra


@pytest.mark.parametrize("model", [SHAPES_ONNX, SHAPES_PT], ids=["onnx", "pt"])
def test_file_every_frame_delivered_with_detections_matching_ground_truth(media, tmp_path, model, make_clip):
    frames = 30 if model == SHAPES_ONNX else 12
    video, truth = make_clip(frames=frames, fps=15, size=(320, 240), seed=3, shapes=2)
    target = media.fresh()

    run = run_worker(media.worker_env(target, str(video), model=model))

    assert run.returncode == 0, run.stderr
    messages = media.messages(target.queue_url, expect=frames)
    assert sorted(m["source"]["frame_number"] for m in messages) == list(range(frames))
    for m in messages:
        assert (m["bucket"], m["stream_name"], m["model"]) == (target.bucket, target.stream, model.name)
        assert m["source"] == {"type": "file", "uri": str(video), "frame_number": m["source"]["frame_number"]}
        assert (m["width"], m["height"]) == (320, 240)
        assert m["frame_index"] == m["source"]["frame_number"]
    good = [m for m in messages if matches_truth(m, truth[m["source"]["frame_number"]])]
    assert len(good) >= 0.9 * frames, [(m["source"]["frame_number"], m["summary"]) for m in messages if m not in good]
    assert media.keys(target.bucket) == sorted(m["key"] for m in messages)

    image = cv2.imdecode(
        np.frombuffer(media.s3.get_object(Bucket=target.bucket, Key=messages[0]["key"])["Body"].read(), np.uint8), cv2.IMREAD_COLOR
    )
    assert image.shape == (240, 320, 3)

    counts = summary(run.stderr)
    assert counts["read"] == counts["processed"] == counts["delivered"] == frames and counts["dropped"] == 0
    final = metrics_lines(run.stdout)[-1]
    assert final["FramesDelivered"] == frames
    assert {d["Name"] for d in final["_aws"]["CloudWatchMetrics"][0]["Metrics"]} >= {"FramesProcessed", "InferenceMs", "LatencyMs"}


def test_second_run_overwrites_the_same_keys(media, tmp_path, make_clip):
    video = make_clip(frames=12, fps=15, size=(320, 240), seed=4).path
    target = media.fresh()
    env = media.worker_env(target, str(video))

    assert run_worker(env).returncode == 0
    first = sorted(m["key"] for m in media.messages(target.queue_url, expect=12))
    assert run_worker(env).returncode == 0
    second = sorted(m["key"] for m in media.messages(target.queue_url, expect=12))

    assert first == second and len(first) == 12
    assert media.keys(target.bucket) == first


@pytest.mark.parametrize("setting,expected", [({"every": 4}, [0, 4, 8, 12]), ({"fps": 5}, [0, 3, 6, 9, 12])])
def test_sampling_every_n_or_target_fps(media, tmp_path, setting, expected, make_clip):
    video = make_clip(frames=15, fps=15, size=(320, 240), seed=5).path
    target = media.fresh()

    run = run_worker(media.worker_env(target, str(video), **setting))

    assert run.returncode == 0, run.stderr
    assert sorted(m["source"]["frame_number"] for m in media.messages(target.queue_url, expect=len(expected))) == expected
    assert summary(run.stderr)["read"] == 15


def test_s3_object_source(media, tmp_path, make_clip):
    video = make_clip(frames=8, fps=15, size=(320, 240), seed=6).path
    target = media.fresh()
    media.s3.upload_file(str(video), target.bucket, "incoming/upload.mp4")
    uri = f"s3://{target.bucket}/incoming/upload.mp4"

    run = run_worker(media.worker_env(target, uri))

    assert run.returncode == 0, run.stderr
    messages = media.messages(target.queue_url, expect=8)
    assert sorted(m["source"]["frame_number"] for m in messages) == list(range(8))
    assert {m["source"]["type"] for m in messages} == {"s3"} and {m["source"]["uri"] for m in messages} == {uri}
    assert all(k.startswith(f"frames/{target.stream}/upload.mp4/") for k in media.keys(target.bucket, "frames/"))


def test_classes_filter_keeps_only_named_classes(media, tmp_path, make_clip):
    video, truth = make_clip(frames=10, fps=15, size=(320, 240), seed=3, shapes=3)
    wanted = truth[0][0]["class"]
    target = media.fresh()

    run = run_worker(media.worker_env(target, str(video), classes=wanted))

    assert run.returncode == 0, run.stderr
    messages = media.messages(target.queue_url, expect=10)
    assert len(messages) == 10
    assert {d["class"] for m in messages for d in m["summary"]} == {wanted}
