"""KINASE_UPLOAD / KINASE_JPEG_QUALITY: which frames get their JPEG in S3; every frame still gets its
message, with `key` null when it was not uploaded."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from support.messages import frame
from support.worker_stack import metrics_lines, run_worker, summary
from worker import contract, layout
from worker import settings as worker_settings
from worker.upload import UploadPolicy, parse

BASE = {"KINASE_SOURCE": "kvs://cam", "KINASE_BUCKET": "b", "KINASE_QUEUE_URL": "http://localhost:1/q"}


def test_policies_choose_frames_by_index_or_detections():
    assert [parse("every:3").wants(i, []) for i in range(6)] == [True, False, False, True, False, False]
    assert parse("detections").wants(5, [{"class": "x"}]) and not parse("detections").wants(5, [])
    assert parse("ALL") == UploadPolicy("all") and not parse("none").wants(0, [{"class": "x"}])
    for bad in ("every:0", "every:x", "some"):
        with pytest.raises(ValueError, match="must be all, detections"):
            parse(bad)


def test_settings_check_the_policy_and_quality():
    assert worker_settings.load(BASE).upload == "all" and worker_settings.load(BASE).jpeg_quality == 85
    assert worker_settings.load({**BASE, "KINASE_UPLOAD": "Every:5"}).upload == "every:5"
    with pytest.raises(worker_settings.SettingsError, match="KINASE_UPLOAD='every:0' must be all, detections"):
        worker_settings.load({**BASE, "KINASE_UPLOAD": "every:0"})
    with pytest.raises(worker_settings.SettingsError, match="KINASE_JPEG_QUALITY='0' must be between 1"):
        worker_settings.load({**BASE, "KINASE_JPEG_QUALITY": "0"})


def test_contract_accepts_a_null_key_only_as_null():
    message = frame("frames-bucket", 1, [], uploaded=False)
    assert contract.parse(contract.dumps(message))["key"] is None
    with pytest.raises(contract.ContractError, match="key"):
        contract.parse(contract.dumps({**message, "key": ""}))


@pytest.mark.slow
def test_every_n_uploads_every_nth_frame_and_messages_every_frame(media, tmp_path, make_clip):
    video = make_clip(frames=9, fps=15, size=(320, 240), seed=8, shapes=2).path
    target = media.fresh()

    run = run_worker(media.worker_env(target, str(video), upload="every:3", jpeg_quality=30))

    assert run.returncode == 0, run.stderr
    messages = sorted(media.messages(target.queue_url, expect=9), key=lambda m: m["frame_index"])
    assert [m["frame_index"] for m in messages] == list(range(9))
    uploaded = [m["key"] for m in messages if m["key"] is not None]
    assert [m["frame_index"] for m in messages if m["key"] is not None] == [0, 3, 6]
    assert media.keys(target.bucket, layout.FRAMES_PREFIX) == sorted(uploaded)
    assert all(m["detections_count"] == len(m["summary"]) > 0 for m in messages)  # not uploaded, still detected
    counts = summary(run.stderr)
    assert counts["delivered"] == 9
    assert sum(line.get("FramesNotUploaded", 0) for line in metrics_lines(run.stdout)) == 6

    body = media.s3.get_object(Bucket=target.bucket, Key=uploaded[0])["Body"].read()
    image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    again = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])[1]
    assert len(body) < 0.8 * len(again)  # KINASE_JPEG_QUALITY=30 reached the encoder


@pytest.mark.slow
def test_none_uploads_nothing(media, tmp_path, make_clip):
    video = make_clip(frames=4, fps=15, size=(320, 240), seed=9).path
    target = media.fresh()

    run = run_worker(media.worker_env(target, str(video), upload="none"))

    assert run.returncode == 0, run.stderr
    assert [m["key"] for m in media.messages(target.queue_url, expect=4)] == [None] * 4
    assert media.keys(target.bucket, layout.FRAMES_PREFIX) == []
