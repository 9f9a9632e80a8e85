"""The worker on Kinesis Video through the local media endpoint (real PutMedia / GetMedia wire formats)."""

from __future__ import annotations

import re
import threading
from collections import Counter
from pathlib import Path

import fall_detection
import pytest

from support.worker_stack import Background, accounted, frame_ids, metrics_lines, run_worker, summary
from worker.contract import parse_iso

pytestmark = pytest.mark.slow
FALL_MODEL = Path(fall_detection.__file__).parent / "models" / "best.pt"


def positions(messages: list[dict]) -> list[tuple[str, int]]:
    return [(m["source"]["fragment_number"], m["source"]["frame_in_fragment"]) for m in messages]


def test_all_frames_of_all_fragments_in_order_with_numbers_and_timestamps(media, tmp_path, make_clip):
    video = make_clip(frames=45, fps=15, size=(320, 240), gop=15, seed=1).path
    target = media.fresh(with_stream=True)
    put = media.put(target.stream, video)
    fragments = put.acks.persisted
    assert len(fragments) == 3

    run = run_worker(media.worker_env(target, f"kvs://{target.stream}", start="EARLIEST", idle_exit=2))

    assert run.returncode == 0, run.stderr
    messages = sorted(media.messages(target.queue_url, expect=45), key=lambda m: m["frame_index"])
    assert [m["frame_index"] for m in messages] == list(range(45))
    assert positions(messages) == [(f, i) for f in fragments for i in range(15)]
    times = [parse_iso(m["frame_time"]) for m in messages]
    assert times[0] == pytest.approx(put.producer_start_timestamp, abs=0.002)
    assert all(b - a == pytest.approx(1 / 15, abs=0.002) for a, b in zip(times, times[1:]))
    assert {m["source"]["uri"] for m in messages} == {f"kvs://{target.stream}"}
    arn = media.kvs.describe_stream(StreamName=target.stream)["StreamInfo"]["StreamARN"]
    assert {m["source"]["stream_arn"] for m in messages} == {arn}
    created = arn.rsplit("/", 1)[-1]
    assert frame_ids(messages) == [f"{target.stream}/{created}/{f}/{i:05d}" for f, i in positions(messages)]
    assert all(m["key"] == f"frames/{target.stream}/{created}/{f}/{i:05d}.jpg" for m, (f, i) in zip(messages, positions(messages)))
    assert media.keys(target.bucket, "frames/") == sorted(m["key"] for m in messages)

    checkpoint = media.checkpoint(target)
    assert checkpoint["fragment_number"] == fragments[-1] and checkpoint["continuation_token"] == fragments[-1]
    assert checkpoint["next_offset"] is None and checkpoint["stream_arn"] == arn  # all of the last fragment, this incarnation
    counts = accounted(summary(run.stderr))
    assert (counts["fragments"], counts["read"], counts["delivered"], counts["dropped"]) == (3, 45, 45, 0)
    assert "MillisBehindNow" in metrics_lines(run.stdout)[-1]


def test_sigterm_mid_fragment_then_restart_loses_nothing(media, tmp_path, make_clip):
    video = make_clip(frames=60, fps=15, size=(320, 240), gop=30, seed=2).path
    target = media.fresh(with_stream=True)
    fragments = media.put(target.stream, video).acks.persisted
    every_frame = {(f, i) for f in fragments for i in range(30)}
    env = media.worker_env(target, f"kvs://{target.stream}", start="EARLIEST", idle_exit=2, log_level="DEBUG")

    worker = Background(env)
    try:
        worker.wait_for(lambda line: re.search(rf"delivered frames/.*/{fragments[0]}/0000[3-9]\.jpg", line) is not None)
        worker.terminate()
        rc, _, stderr = worker.finish()
    finally:
        worker.kill()

    assert rc == 0, stderr
    assert "SIGTERM received" in stderr
    first = media.messages(target.queue_url)
    first_positions = positions(first)
    assert 0 < len(first) < 30, "the signal must arrive while the first fragment is being processed"
    assert set(first_positions) == {(fragments[0], i) for i in range(len(first))}
    checkpoint = media.checkpoint(target)
    assert (checkpoint["fragment_number"], checkpoint["next_offset"]) == (fragments[0], len(first))  # a position, not a time
    assert media.keys(target.bucket, "frames/") == sorted(m["key"] for m in first)
    accounted(summary(stderr))

    rerun = run_worker(env)

    assert rerun.returncode == 0, rerun.stderr
    second_positions = positions(media.messages(target.queue_url, expect=60 - len(first)))
    assert set(first_positions) | set(second_positions) == every_frame  # nothing lost
    redone = Counter(first_positions + second_positions) - Counter(set(first_positions + second_positions))
    assert len({f for f, _ in redone}) <= 1  # at most one fragment done again
    assert not redone  # in fact none: frames before the checkpoint's position are recognised by position
    counts = accounted(summary(rerun.stderr))
    assert counts["deduplicated"] == len(first) and counts["delivered"] == 60 - len(first)
    assert len(media.keys(target.bucket, "frames/")) == 60


def test_restart_continues_after_the_checkpoint_with_new_media(media, tmp_path, make_clip):
    first_video, second_video = (make_clip(frames=30, fps=15, size=(320, 240), gop=15, seed=seed).path for seed in (3, 4))
    target = media.fresh(with_stream=True)
    env = media.worker_env(target, f"kvs://{target.stream}", start="EARLIEST", idle_exit=2)
    old = media.put(target.stream, first_video).acks.persisted
    assert run_worker(env).returncode == 0
    assert len(media.messages(target.queue_url, expect=30)) == 30

    new = media.put(target.stream, second_video).acks.persisted
    rerun = run_worker(env)

    assert rerun.returncode == 0, rerun.stderr
    again = media.messages(target.queue_url, expect=30)
    assert sorted(positions(again)) == sorted((f, i) for f in new for i in range(15))
    assert not set(old) & {m["source"]["fragment_number"] for m in again}


def test_live_overload_drops_old_frames_and_keeps_up(media, tmp_path, make_clip):
    """The fall detector (~5 frames/s here) on a 30 frames/s stream: drops are counted, the newest kept."""
    video = make_clip(frames=120, fps=30, size=(320, 240), gop=15, seed=5).path
    target = media.fresh(with_stream=True)
    env = media.worker_env(target, f"kvs://{target.stream}", model=FALL_MODEL, imgsz=640, start="NOW", idle_exit=3, device="cpu")
    worker = Background(env)
    try:
        worker.wait_for(lambda line: "GetMedia" in line)
        put = {}
        producer = threading.Thread(target=lambda: put.update(result=media.put(target.stream, video, realtime=True)))
        producer.start()
        producer.join(120)
        rc, stdout, stderr = worker.finish(timeout=120)
    finally:
        worker.kill()

    assert rc == 0, stderr
    counts = summary(stderr)
    messages = media.messages(target.queue_url, expect=counts["delivered"])
    assert counts["read"] == 120 and counts["dropped"] > 0
    assert counts["delivered"] == len(messages) == counts["read"] - counts["dropped"]
    accounted(counts)
    assert sum(line["FramesDropped"] for line in metrics_lines(stdout)) == counts["dropped"]
    fragments = put["result"].acks.persisted
    assert max(m["source"]["fragment_number"] for m in messages) == fragments[-1]  # the newest frames were kept
    duration_ms = 120 / 30 * 1000
    assert max(m["latency_ms"] for m in messages) < duration_ms  # processing all 120 would lag by ~20 s at the end


def test_max_frames_stops_early_and_checkpoint_can_be_off(media, tmp_path, make_clip):
    video = make_clip(frames=30, fps=15, size=(320, 240), gop=15, seed=6).path
    target = media.fresh(with_stream=True)
    media.put(target.stream, video)

    run = run_worker(media.worker_env(target, f"kvs://{target.stream}", start="EARLIEST", max_frames=5, checkpoint=0))

    assert run.returncode == 0, run.stderr
    assert sorted(m["frame_index"] for m in media.messages(target.queue_url, expect=5)) == [0, 1, 2, 3, 4]
    counts = accounted(summary(run.stderr))
    assert counts["processed"] == 5 and counts["unfinished"] == counts["read"] - 5  # read ahead, left for the next run
    assert media.checkpoint(target) is None


def test_low_target_fps_skips_decoding_whole_fragments(media, tmp_path, make_clip):
    video = make_clip(frames=45, fps=15, size=(320, 240), gop=15, seed=7).path
    target = media.fresh(with_stream=True)
    fragments = media.put(target.stream, video).acks.persisted

    run = run_worker(media.worker_env(target, f"kvs://{target.stream}", start="EARLIEST", idle_exit=2, fps=0.5, log_level="DEBUG"))

    assert run.returncode == 0, run.stderr
    assert sorted(positions(media.messages(target.queue_url, expect=2))) == [(fragments[0], 0), (fragments[2], 0)]
    assert f"fragment {fragments[1]}: sampling wants none of its frames, not decoded" in run.stderr
    counts = accounted(summary(run.stderr))
    assert (counts["read"], counts["delivered"], counts["sampled_out"]) == (45, 2, 43)
    assert media.checkpoint(target)["fragment_number"] == fragments[2]
