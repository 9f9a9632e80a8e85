"""Every frame accounted for: identity by position, checkpoints of one stream incarnation, at-least-once delivery.

Each test checks the accounting invariant (frames read = delivered + sampled out + dropped + gapped
+ corrupt + unfinished) and the messages actually in the queue (count and frame ids).
"""

from __future__ import annotations

import io
import json
import time
from collections import Counter
from pathlib import Path

import fall_detection
import pytest
from botocore.exceptions import ReadTimeoutError
from botocore.httpsession import URLLib3Session

from kinase_cli.aws.kvs_put import PutMediaSession, remux
from support.worker_stack import Background, accounted, frame_ids, run_worker, summary
from worker import layout
from worker import settings as worker_settings
from worker.pipeline import Worker

pytestmark = pytest.mark.slow
FALL_MODEL = Path(fall_detection.__file__).parent / "models" / "best.pt"


def positions(messages: list[dict]) -> list[tuple[str, int]]:
    return [(m["source"]["fragment_number"], m["source"]["frame_in_fragment"]) for m in messages]


def test_two_overlapping_uploads_of_one_clip_are_both_processed(media, tmp_path, make_clip):
    """Issue 11: two non-realtime `stream put` of the same clip overlap in producer time (each is stamped
    to end when it is sent); frames are told apart by position, so every frame of both is delivered once."""
    video = make_clip(frames=45, fps=15, size=(320, 240), gop=15, seed=21).path
    target = media.fresh(with_stream=True)
    first = media.put(target.stream, video)
    second = media.put(target.stream, video)
    overlap = first.producer_start_timestamp + 3.0 - second.producer_start_timestamp
    assert overlap > 0, "the second upload must start, in producer time, before the first one ends"

    run = run_worker(media.worker_env(target, f"kvs://{target.stream}", start="EARLIEST", idle_exit=2))

    assert run.returncode == 0, run.stderr
    messages = media.messages(target.queue_url, expect=90)
    ids = frame_ids(messages)
    assert len(ids) == len(set(ids)) == 90
    every = [(f, i) for f in first.acks.persisted + second.acks.persisted for i in range(15)]
    assert sorted(positions(messages)) == sorted(every)
    counts = accounted(summary(run.stderr))
    assert (counts["read"], counts["delivered"], counts["deduplicated"]) == (90, 90, 0)


def test_a_producer_clock_that_jumps_back_ten_minutes_loses_nothing(media, tmp_path, make_clip):
    """Issue 11: a camera whose clock ran 10 minutes fast, then was corrected: everything it sends after the
    correction is stamped before what it sent earlier. Driven through PutMedia directly, as a camera would."""
    first_clip, second_clip = (make_clip(frames=30, fps=15, size=(320, 240), gop=15, seed=seed).path for seed in (28, 29))
    target = media.fresh(with_stream=True)
    endpoint = media.kvs.get_data_endpoint(StreamName=target.stream, APIName="PUT_MEDIA")["DataEndpoint"]
    credentials = media.session.get_credentials().get_frozen_credentials()
    persisted = []
    for clip, start in ((first_clip, time.time() - 30), (second_clip, time.time() - 630)):  # the clock corrected by 10 minutes
        data = bytearray()
        remux(clip, data.extend)
        put = PutMediaSession(endpoint, target.stream, credentials, "us-east-1", start)
        put.send(bytes(data))
        persisted += put.finish().persisted
    assert len(persisted) == 4

    run = run_worker(media.worker_env(target, f"kvs://{target.stream}", start="EARLIEST", idle_exit=2))

    assert run.returncode == 0, run.stderr
    messages = media.messages(target.queue_url, expect=60)
    assert sorted(positions(messages)) == sorted((f, i) for f in persisted for i in range(15))
    assert len(set(frame_ids(messages))) == 60
    times = {m["source"]["fragment_number"]: m["frame_time"] for m in messages if m["source"]["frame_in_fragment"] == 0}
    assert times[persisted[2]] < times[persisted[0]]  # producer time went back; the frames were processed all the same
    counts = accounted(summary(run.stderr))
    assert (counts["read"], counts["delivered"]) == (60, 60)


def test_checkpoint_of_another_stream_incarnation_is_set_aside_and_the_gap_reported(media, tmp_path, make_clip):
    """A stream deleted and created again under the same name is another stream: its old checkpoint is
    set aside with a warning, the start policy applies, the gap is reported, and new media is processed."""
    old_clip, new_clip = (make_clip(frames=30, fps=15, size=(320, 240), gop=15, seed=seed).path for seed in (22, 23))
    target = media.fresh(with_stream=True)
    env = media.worker_env(target, f"kvs://{target.stream}", start="EARLIEST", idle_exit=2)
    media.put(target.stream, old_clip)
    assert run_worker(env).returncode == 0
    old_ids = set(frame_ids(media.messages(target.queue_url, expect=30)))
    assert len(old_ids) == 30
    old = media.checkpoint(target)
    old_arn = media.kvs.describe_stream(StreamName=target.stream)["StreamInfo"]["StreamARN"]
    assert old["stream_arn"] == old_arn

    media.kvs.delete_stream(StreamARN=old_arn)
    time.sleep(0.01)  # another creation time, so another ARN
    media.kvs.create_stream(StreamName=target.stream, DataRetentionInHours=1)
    new_arn = media.kvs.describe_stream(StreamName=target.stream)["StreamInfo"]["StreamARN"]
    assert new_arn != old_arn
    new = media.put(target.stream, new_clip).acks.persisted
    rerun = run_worker(env)

    assert rerun.returncode == 0, rerun.stderr
    assert "set aside" in rerun.stderr and f"gap in {target.stream}" in rerun.stderr
    messages = media.messages(target.queue_url, expect=30)
    assert sorted(positions(messages)) == sorted((f, i) for f in new for i in range(15))
    assert {m["source"]["stream_arn"] for m in messages} == {new_arn}
    assert not set(frame_ids(messages)) & old_ids  # fragment numbers may repeat across incarnations; frame ids do not
    counts = accounted(summary(rerun.stderr))
    assert (counts["gaps"], counts["delivered"]) == (1, 30)
    aside = [k for k in media.keys(target.bucket, layout.CHECKPOINTS_PREFIX) if layout.is_set_aside(k)]
    assert len(aside) == 1
    assert json.loads(media.s3.get_object(Bucket=target.bucket, Key=aside[0])["Body"].read())["stream_arn"] == old_arn
    assert media.checkpoint(target)["stream_arn"] == new_arn


def test_a_checkpoint_from_before_positions_is_set_aside(media, tmp_path, make_clip):
    """A version-1 checkpoint (producer-time high-water mark) cannot say which frames were handled."""
    video = make_clip(frames=15, fps=15, size=(320, 240), gop=15, seed=24).path
    target = media.fresh(with_stream=True)
    fragments = media.put(target.stream, video).acks.persisted
    legacy = {"version": 1, "source": f"kvs://{target.stream}", "fragment_number": fragments[0], "last_frame_time": 4e9}
    media.s3.put_object(Bucket=target.bucket, Key=layout.checkpoint_key(target.stream), Body=json.dumps(legacy).encode())

    run = run_worker(media.worker_env(target, f"kvs://{target.stream}", start="EARLIEST", idle_exit=2))

    assert run.returncode == 0, run.stderr
    assert "set aside" in run.stderr
    assert len(media.messages(target.queue_url, expect=15)) == 15  # a clock far ahead no longer hides frames
    counts = accounted(summary(run.stderr))
    assert (counts["gaps"], counts["delivered"]) == (1, 15)


def _stream_of_fragments(media, make_clip, gop: int, seed: int):
    """A fresh stream holding 180 frames (15 fps) put in fragments of `gop` frames: the target, the
    fragment numbers, and every (fragment, frame in fragment) position a worker must deliver."""
    video = make_clip(frames=180, fps=15, size=(320, 240), gop=gop, seed=seed).path
    target = media.fresh(with_stream=True)
    fragments = media.put(target.stream, video).acks.persisted
    assert len(fragments) == 180 // gop
    return target, fragments, {(f, i) for f in fragments for i in range(gop)}


def test_sigkill_before_the_first_complete_fragment_loses_nothing(media, tmp_path, make_clip):
    """Issue 11: without a checkpoint before the first complete fragment, a worker killed in that window and
    started again at NOW skipped everything put so far. The start checkpoint makes the restart resume there."""
    target, fragments, every = _stream_of_fragments(media, make_clip, gop=90, seed=25)

    # The fall detector (~5 frames/s here) keeps the worker inside the first 90-frame fragment for seconds.
    slow = media.worker_env(
        target, f"kvs://{target.stream}", model=FALL_MODEL, imgsz=640, device="cpu", start="EARLIEST", log_level="DEBUG"
    )
    worker = Background(slow)
    try:
        worker.wait_for(lambda line: "delivered frames/" in line)
        checkpoint = media.checkpoint(target)
        worker.kill()  # SIGKILL: no flush, no final checkpoint
    finally:
        worker.kill()
    assert checkpoint is not None and (checkpoint["fragment_number"], checkpoint["next_offset"]) == (fragments[0], 0)
    first = media.messages(target.queue_url)
    assert first and {f for f, _ in positions(first)} == {fragments[0]}

    rerun = run_worker(media.worker_env(target, f"kvs://{target.stream}", start="NOW", idle_exit=2))

    assert rerun.returncode == 0, rerun.stderr
    second = media.messages(target.queue_url, expect=180)
    assert set(positions(first)) | set(positions(second)) == every  # nothing persisted in the stream was lost
    redone = Counter(positions(first) + positions(second)) - Counter(set(positions(first) + positions(second)))
    assert {f for f, _ in redone} <= {fragments[0]}  # at most the fragment that was cut short is done again
    repeated = Counter(frame_ids(first) + frame_ids(second))
    assert sum(n - 1 for n in repeated.values()) == sum(redone.values())  # a frame done again has the same id and key
    counts = accounted(summary(rerun.stderr))
    assert counts["delivered"] == 180


def test_sendmessagebatch_retried_after_a_timeout_duplicates_with_the_same_frame_id_and_counts_it(aws_env, tmp_path, make_clip):
    """Issue 11: the batch reached the queue but its answer timed out; botocore sent it again. The
    duplicates carry the same frame_id (consumers deduplicate) and the metrics count them."""
    media = aws_env
    video = make_clip(frames=20, fps=15, size=(320, 240), seed=26).path
    target = media.fresh()
    session = media.new_session()
    timed_out = Counter()
    http = URLLib3Session()

    def delivered_then_timed_out(request, **_):
        if timed_out["batches"] < 2:
            timed_out["batches"] += 1
            answer = http.send(request)  # the request reaches SQS ...
            assert answer.status_code == 200
            timed_out["messages"] += answer.content.count(b'"MessageId"')
            raise ReadTimeoutError(endpoint_url=request.url)  # ... but its answer never comes back

    session.events.register("before-send.sqs.SendMessageBatch", delivered_then_timed_out)
    env = media.worker_env(target, str(video))
    worker = Worker(worker_settings.load(env), session=session, metrics_out=io.StringIO())
    assert worker.run() == 0, worker.error

    messages = media.messages(target.queue_url, expect=20 + timed_out["messages"])
    ids = Counter(frame_ids(messages))
    assert timed_out["messages"] > 0 and len(messages) == 20 + timed_out["messages"]
    assert len(ids) == 20  # every frame once, some more than once: at least once, never a lost or a new id
    assert sum(n - 1 for n in ids.values()) == timed_out["messages"]
    totals = worker.metrics.totals
    assert totals["MessagesResent"] == timed_out["messages"] and totals["Retries"] >= timed_out["batches"]
    assert totals["FramesDelivered"] == 20 and worker.metrics.balance() == 0


@pytest.mark.parametrize("kill_after", [25, 100])
def test_sigkill_at_any_point_loses_nothing_and_redoes_at_most_one_fragment(media, tmp_path, kill_after, make_clip):
    """Issue 11: SIGKILL mid-stream (here after the 25th and the 100th delivered frame of four 45-frame fragments)."""
    target, fragments, every = _stream_of_fragments(media, make_clip, gop=45, seed=27)
    delivered = Counter()

    def nth_delivery(line: str) -> bool:
        delivered["lines"] += "delivered frames/" in line
        return delivered["lines"] >= kill_after

    worker = Background(media.worker_env(target, f"kvs://{target.stream}", start="EARLIEST", log_level="DEBUG"))
    try:
        worker.wait_for(nth_delivery)
    finally:
        worker.kill()
    first = media.messages(target.queue_url)
    assert len(first) >= kill_after

    rerun = run_worker(media.worker_env(target, f"kvs://{target.stream}", start="NOW", idle_exit=2))

    assert rerun.returncode == 0, rerun.stderr
    second = media.messages(target.queue_url, expect=180 - len(first))
    assert set(positions(first)) | set(positions(second)) == every
    redone = Counter(positions(first) + positions(second)) - Counter(set(positions(first) + positions(second)))
    assert len({f for f, _ in redone}) <= 1
    accounted(summary(rerun.stderr))
