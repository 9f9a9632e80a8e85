"""The Kinesis Video worker under what a real camera and the real service do: idle hours, a checkpoint the
stream no longer holds, a stream deleted and created again, a restart far behind live, overlapping uploads,
a producer clock that jumps. Each test checks the accounting (every frame read ends in exactly one outcome)
and the messages actually in the queue (count and unique frame ids).
"""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import fall_detection
import pytest

from kinase_cli.aws.kvs_put import PutMediaSession, remux
from support.worker_stack import Background, accounted, frame_ids, run_worker, summary
from worker import layout
from worker.contract import parse_iso

pytestmark = pytest.mark.slow
FALL_MODEL = Path(fall_detection.__file__).parent / "models" / "best.pt"
FPS, GOP, FRAMES = 15, 15, 45  # three one-second fragments


@pytest.fixture(scope="module")
def clip(make_clip) -> Path:
    return make_clip(frames=FRAMES, fps=FPS, size=(320, 240), gop=GOP, seed=4).path


def finish(worker: Background) -> tuple[int, str, str]:
    worker.terminate()
    try:
        return worker.finish()
    finally:
        worker.kill()


def lines(stderr: str, text: str) -> list[str]:
    return [line for line in stderr.splitlines() if text in line]


def wait_idle(worker: Background) -> None:
    """The worker's GetMedia is open and has been held silent: media put from now on reaches it."""
    worker.wait_for(lambda line: "the stream is idle" in line)


def put_at(media, stream: str, video: Path, producer_start: float) -> list[str]:
    """PutMedia of `video` stamped from `producer_start` (a camera whose clock says so); the fragment numbers."""
    endpoint = media.kvs.get_data_endpoint(StreamName=stream, APIName="PUT_MEDIA")["DataEndpoint"]
    session = PutMediaSession(endpoint, stream, media.session.get_credentials().get_frozen_credentials(), "us-east-1", producer_start)
    data = bytearray()
    remux(video, data.extend)
    session.send(bytes(data))
    return session.finish().persisted


def test_an_idle_stream_is_not_a_failure(media, clip):
    """boto3 issue 3532: GetMedia on a silent stream holds the connection and sends nothing. Reads that time out
    are idleness, not errors: the worker stays up past its give-up window (shortened to 2 s here, with reads
    timing out after 1 s), logs the idle period once, and processes the media that comes later."""
    target = media.fresh(with_stream=True)
    env = media.worker_env(target, f"kvs://{target.stream}", read_timeout=1, give_up_after=2, log_level="DEBUG")
    worker = Background(env)
    try:
        wait_idle(worker)
        renewed: set[str] = set()  # four renewed connections, each silent for the whole read timeout: longer than the give-up window
        worker.wait_for(lambda line: "still idle on" in line and (renewed.add(line) or len(renewed) >= 4))
        assert worker.proc.poll() is None
        fragments = media.put(target.stream, clip).acks.persisted
        messages = media.messages(target.queue_url, expect=FRAMES, wait=120)
        rc, _, stderr = finish(worker)
    finally:
        worker.kill()
    assert rc == 0, stderr
    before_media = stderr.split("media again on")[0]
    assert len(lines(before_media, "the stream is idle")) == 1  # one idle period, logged once, not per reconnect
    assert len(lines(before_media, "still idle on")) >= 4
    assert "error" not in stderr.lower().replace("error_code", "")
    assert sorted((m["source"]["fragment_number"], m["source"]["frame_in_fragment"]) for m in messages) == [
        (f, i) for f in fragments for i in range(GOP)
    ]
    assert len(set(frame_ids(messages))) == FRAMES
    counts = accounted(summary(stderr))
    assert (counts["read"], counts["delivered"]) == (FRAMES, FRAMES)


def test_a_checkpoint_older_than_the_retention_is_set_aside_and_the_gap_reported(media, clip):
    """API_dataplane_GetMedia error tag 4000 (requested fragment not found): the checkpoint names a fragment the
    stream no longer holds (here: one from before anything it retains). The worker sets it aside, applies its
    start policy (EARLIEST here), reports the gap, and processes the media the stream has."""
    target = media.fresh(with_stream=True)
    fragments = media.put(target.stream, clip).acks.persisted
    run = run_worker(media.worker_env(target, f"kvs://{target.stream}", start="EARLIEST", idle_exit=2, read_timeout=1))
    assert run.returncode == 0, run.stderr
    media.messages(target.queue_url, expect=FRAMES)
    checkpoint = media.checkpoint(target)
    expired = str(int(fragments[0]) - 1000).zfill(len(fragments[0]))
    media.s3.put_object(
        Bucket=target.bucket,
        Key=layout.checkpoint_key(target.stream),
        Body=json.dumps({**checkpoint, "fragment_number": expired, "continuation_token": expired, "next_offset": None}),
    )

    rerun = run_worker(media.worker_env(target, f"kvs://{target.stream}", start="EARLIEST", idle_exit=2, read_timeout=1))

    assert rerun.returncode == 0, rerun.stderr
    assert re.search(r"error 4000 .*checkpoint set aside", rerun.stderr), rerun.stderr
    gaps = lines(rerun.stderr, "gap in")
    assert len(gaps) == 1 and expired in gaps[0] and fragments[0] in gaps[0]
    messages = media.messages(target.queue_url, expect=FRAMES)
    assert len(messages) == len(set(frame_ids(messages))) == FRAMES
    counts = accounted(summary(rerun.stderr))
    assert (counts["read"], counts["delivered"], counts["gaps"]) == (FRAMES, FRAMES, 1)
    assert media.checkpoint(target)["fragment_number"] == fragments[-1]


def test_a_stream_deleted_and_created_again_starts_over_with_the_gap_reported(media, clip):
    """A checkpoint of the stream's previous incarnation (other ARN) is set aside: the new stream's media is
    processed from the start policy, under frame ids of the new incarnation."""
    target = media.fresh(with_stream=True)
    media.put(target.stream, clip)
    env = media.worker_env(target, f"kvs://{target.stream}", start="EARLIEST", idle_exit=2, read_timeout=1)
    assert run_worker(env).returncode == 0
    old = media.messages(target.queue_url, expect=FRAMES)
    media.kvs.delete_stream(StreamARN=media.kvs.describe_stream(StreamName=target.stream)["StreamInfo"]["StreamARN"])
    media.kvs.create_stream(StreamName=target.stream, DataRetentionInHours=1)
    fragments = media.put(target.stream, clip).acks.persisted

    rerun = run_worker(env)

    assert rerun.returncode == 0, rerun.stderr
    assert len(lines(rerun.stderr, "gap in")) == 1
    messages = media.messages(target.queue_url, expect=FRAMES)
    assert sorted((m["source"]["fragment_number"], m["source"]["frame_in_fragment"]) for m in messages) == [
        (f, i) for f in fragments for i in range(GOP)
    ]
    assert len(set(frame_ids(messages))) == FRAMES and not set(frame_ids(messages)) & set(frame_ids(old))
    accounted(summary(rerun.stderr))


def test_back_to_back_uploads_of_one_clip_are_all_delivered(media, clip):
    """Two `stream put` of the same clip, without --realtime, into a running worker: both are stamped to end
    when they are sent, so the second one's producer times overlap the first one's. Identity is the position,
    not the time: every frame of both is delivered once."""
    target = media.fresh(with_stream=True)
    worker = Background(media.worker_env(target, f"kvs://{target.stream}", read_timeout=1))
    try:
        wait_idle(worker)
        first = media.put(target.stream, clip)
        second = media.put(target.stream, clip)
        assert second.producer_start_timestamp < first.producer_start_timestamp + first.remux.media_seconds
        messages = media.messages(target.queue_url, expect=2 * FRAMES, wait=120)
        rc, _, stderr = finish(worker)
    finally:
        worker.kill()
    assert rc == 0, stderr
    fragments = first.acks.persisted + second.acks.persisted
    assert sorted((m["source"]["fragment_number"], m["source"]["frame_in_fragment"]) for m in messages) == [
        (f, i) for f in fragments for i in range(GOP)
    ]
    assert len(set(frame_ids(messages))) == 2 * FRAMES
    counts = accounted(summary(stderr))
    assert (counts["read"], counts["delivered"]) == (2 * FRAMES, 2 * FRAMES)


def test_a_producer_clock_ten_minutes_fast_then_corrected_loses_nothing(media, clip):
    """The camera's clock was ten minutes fast, then corrected: its timestamps step back ten minutes. (The
    service refuses timestamps in the future, PutMedia error 4007, so both runs are stamped in the past here;
    what matters is the step back.) Every frame of both is delivered, in a running worker and after a restart."""
    target = media.fresh(with_stream=True)
    env = media.worker_env(target, f"kvs://{target.stream}", read_timeout=1)
    worker = Background(env)
    try:
        wait_idle(worker)
        now = time.time()
        fast = put_at(media, target.stream, clip, now - 5)
        corrected = put_at(media, target.stream, clip, now - 5 - 600)
        messages = media.messages(target.queue_url, expect=2 * FRAMES, wait=120)
        rc, _, stderr = finish(worker)
    finally:
        worker.kill()
    assert rc == 0, stderr
    assert sorted((m["source"]["fragment_number"], m["source"]["frame_in_fragment"]) for m in messages) == [
        (f, i) for f in fast + corrected for i in range(GOP)
    ]
    times = {m["source"]["fragment_number"]: parse_iso(m["frame_time"]) for m in messages}
    assert times[corrected[0]] < times[fast[0]] - 590
    assert len(set(frame_ids(messages))) == 2 * FRAMES
    accounted(summary(stderr))

    later = put_at(media, target.stream, clip, time.time() - 605)  # still behind the fast clock: after a restart too
    rerun = run_worker({**env, "KINASE_IDLE_EXIT": "3"})
    assert rerun.returncode == 0, rerun.stderr
    again = media.messages(target.queue_url, expect=FRAMES)
    assert sorted((m["source"]["fragment_number"], m["source"]["frame_in_fragment"]) for m in again) == [
        (f, i) for f in later for i in range(GOP)
    ]
    accounted(summary(rerun.stderr))


def test_a_restart_far_behind_live_jumps_to_the_live_edge_and_reports_the_gap(media, clip):
    """A camera keeps streaming while the worker is down longer than KINASE_MAX_LAG (4 s here), and the restarted
    worker's model is slower than the stream. It does not read the backlog for ever in archive mode: it skips
    to the live edge, reports the gap, and from then on the live drop policy keeps the latency bounded by
    about the maximum lag (the bound asserted is generous: max lag + 15 s)."""
    target = media.fresh(with_stream=True)
    camera_stop = threading.Event()
    camera = threading.Thread(target=lambda: media.put(target.stream, clip, loops=0, realtime=True, stop=camera_stop), daemon=True)
    env = media.worker_env(target, f"kvs://{target.stream}", read_timeout=2)
    first = Background(env)
    try:
        wait_idle(first)
        camera.start()
        media.messages(target.queue_url, expect=1, wait=120)
        rc, _, stderr = finish(first)
        assert rc == 0, stderr
        stopped_at = time.time()
        checkpoint = media.checkpoint(target)
        assert checkpoint is not None
        while time.time() < stopped_at + 10:  # the camera goes on: the backlog grows past the maximum lag
            time.sleep(0.5)
        media.messages(target.queue_url)  # what the first run sent is not this test's concern
        slow = Background(media.worker_env(target, f"kvs://{target.stream}", model=FALL_MODEL, imgsz=640, max_lag=4, read_timeout=2))
        try:
            slow.wait_for(lambda line: "jumping to the live edge" in line, timeout=300)
            gap = slow.wait_for(lambda line: "gap in" in line, timeout=120)
            deadline = time.monotonic() + 15
            delivered: list[dict] = []
            while time.monotonic() < deadline:  # the slow worker at the live edge for a while
                delivered += media.messages(target.queue_url)
                time.sleep(0.5)
            rc, _, stderr = finish(slow)
        finally:
            slow.kill()
    finally:
        camera_stop.set()
        first.kill()
    camera.join(60)
    assert rc == 0, stderr
    delivered += media.messages(target.queue_url)
    assert delivered, stderr
    start, end, skipped = re.search(r"fragments (\d+)\.\.(\d+) \((\d+) fragments", gap).groups()
    resumed = int(checkpoint["fragment_number"])
    cut_short = checkpoint.get("next_offset") is not None  # a fragment cut short by the stop is read again
    assert (int(start) > resumed or (cut_short and int(start) == resumed)) and int(start) < int(end)  # the backlog after the checkpoint
    assert int(skipped) >= 1
    assert "KINASE_MAX_LAG" in gap
    latencies = [m["latency_ms"] for m in delivered]
    assert max(latencies) <= (4 + 15) * 1000, sorted(latencies)[-5:]
    assert len(set(frame_ids(delivered))) == len(delivered)
    counts = accounted(summary(stderr))
    assert counts["gaps"] == 1  # (its frames read before the jump, if any, are in `gapped`)


def test_kinase_status_shows_the_gaps_the_worker_reported(media, deployed_stack, clip):
    """The gap a worker reports (here: API_dataplane_GetMedia error 4000 for a checkpoint the stream no longer
    holds) is kept in its checkpoint record and shown by `kinase status` (human and --json)."""
    from support.cli import kinase
    from support.worker_stack import Target

    stream, bucket = deployed_stack["StreamName"], deployed_stack["FramesBucketName"]
    queue = media.sqs.create_queue(QueueName="status-gaps")["QueueUrl"]
    key = layout.checkpoint_key(stream)
    info = media.kvs.describe_stream(StreamName=stream)["StreamInfo"]
    expired = "91343852333181432392682062000000000000000000000"  # before anything the endpoint ever numbered
    media.s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=json.dumps(
            {
                "version": 2,
                "stream": stream,
                "source": f"kvs://{stream}",
                "stream_arn": info["StreamARN"],
                "stream_created": "",
                "fragment_number": expired,
                "continuation_token": expired,
                "next_offset": None,
            }
        ),
    )
    try:
        worker = Background(media.worker_env(Target(bucket, queue, stream), f"kvs://{stream}", read_timeout=1))
        try:
            wait_idle(worker)
            media.put(stream, clip)
            media.messages(queue, expect=FRAMES, wait=120)
            rc, _, stderr = finish(worker)
        finally:
            worker.kill()
        assert rc == 0, stderr
        status = kinase("status", "--local", "--json")
        assert status.returncode == 0, status.stderr
        gaps = json.loads(status.stdout)["data"]["gaps"]
        assert gaps[-1]["from"] == expired and "4000" in gaps[-1]["reason"] and gaps[-1]["stream"] == stream
        human = kinase("status", "--local", env={"COLUMNS": "400"})
        assert "gaps" in human.stdout and expired in human.stdout
    finally:
        media.s3.delete_object(Bucket=bucket, Key=key)
        media.sqs.delete_queue(QueueUrl=queue)
