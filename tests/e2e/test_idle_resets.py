"""Idle is not failure: a night-time or motion-triggered camera sends nothing for hours, and the network between
the worker and Kinesis Video may reset a connection that has been idle for a while (NAT gateways, load balancers,
firewalls do), sooner than the worker's read timeout; the service itself ends GetMedia sessions (the limits page:
about every 45 minutes). A GetMedia that succeeded and was then reset or ended is reconnected from where it was,
without counting towards the give-up window (only consecutive failing calls do), and nothing is lost or read twice.

The local endpoint plays both (`--idle-reset-seconds`: a TCP RST after that long idle; `--max-session-seconds`),
each on its own endpoint process beside the session's moto server, with the waits scaled down: the worker's
give-up window is 2 s instead of 300 s (1/150), so "10 minutes" of resets is 4 s; the tests run past twice that.
Every frame is checked against the video frames read back from the stream.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kinase_cli.workflows.samples import shapes_video
from support.kvs import endpoint, video_positions
from support.worker_stack import Background, Media, accounted, frame_ids, summary

pytestmark = pytest.mark.slow
FPS, GOP, FRAMES = 10, 10, 120  # twelve one-second fragments: PutMedia takes them in over 2 s (five a second)
GIVE_UP_AFTER = 2  # seconds (the default is 300)
RESETS = 8  # idle connections reset one second after they opened: over 8 s idle, four times the give-up window


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("idle-resets") / "cam.mp4"
    shapes_video(path, frames=FRAMES, fps=FPS, size=(320, 240), gop=GOP, seed=11)
    return path


def finish(worker: Background) -> tuple[int, str, str]:
    worker.terminate()
    try:
        return worker.finish()
    finally:
        worker.kill()


def delivered_positions(messages: list[dict]) -> list[tuple[str, int]]:
    return sorted((m["source"]["fragment_number"], m["source"]["frame_in_fragment"]) for m in messages)


def test_an_idle_camera_behind_a_middlebox_that_resets_idle_connections_stays_up(media, tmp_path, clip):
    with endpoint(tmp_path / "kvs", "--idle-reset-seconds", "1") as kvs:
        local = Media(media.aws_endpoint, kvs.url)
        target = local.fresh(with_stream=True)
        env = local.worker_env(target, f"kvs://{target.stream}", read_timeout=5, give_up_after=GIVE_UP_AFTER, log_level="DEBUG")
        worker = Background(env)
        try:
            resets: list[str] = []
            worker.wait_for(lambda line: "idle GetMedia connection on" in line and (resets.append(line) or len(resets) >= RESETS))
            assert worker.proc.poll() is None
            local.put(target.stream, clip)
            truth = video_positions(kvs, target.stream)
            messages = local.messages(target.queue_url, expect=len(truth), wait=300)
            rc, _, stderr = finish(worker)
        finally:
            worker.kill()
        assert kvs.log.read_text().count(f"GetMedia connection of {target.stream} idle for 1s: reset") >= RESETS
    assert rc == 0, stderr
    assert "reset by peer" in resets[0].lower()
    assert "failing for" not in stderr and "interrupted" not in stderr
    assert len(truth) == FRAMES
    assert delivered_positions(messages) == truth
    assert len(set(frame_ids(messages))) == len(truth)
    counts = accounted(summary(stderr))
    assert (counts["read"], counts["delivered"]) == (len(truth), len(truth))
    assert counts["reconnects"] >= RESETS


def test_getmedia_sessions_ending_while_media_flows_lose_and_double_nothing(media, tmp_path, clip):
    """The service ends GetMedia sessions (here every 0.5 s): the worker goes on from each session's last
    continuation token, several times while the upload is coming in; every frame is delivered exactly once."""
    with endpoint(tmp_path / "kvs", "--max-session-seconds", "0.5") as kvs:
        local = Media(media.aws_endpoint, kvs.url)
        target = local.fresh(with_stream=True)
        env = local.worker_env(target, f"kvs://{target.stream}", start="EARLIEST", read_timeout=5, give_up_after=GIVE_UP_AFTER)
        worker = Background(env)
        try:
            worker.wait_for(lambda line: f"GetMedia {target.stream} from" in line)
            persisted = local.put(target.stream, clip).acks.persisted
            truth = video_positions(kvs, target.stream)
            messages = local.messages(target.queue_url, expect=len(truth), wait=300)
            rc, _, stderr = finish(worker)
        finally:
            worker.kill()
        assert kvs.log.read_text().count(f"GetMedia session on {target.stream} ended") >= 2
    assert rc == 0, stderr
    resumed_at = set(re.findall(r"'ContinuationToken': '(\d+)'", stderr)) - {persisted[-1]}
    assert resumed_at, stderr  # at least one session ended before the last fragment had come
    assert len(truth) == FRAMES
    assert delivered_positions(messages) == truth
    assert len(messages) == len(set(frame_ids(messages))) == len(truth)
    counts = accounted(summary(stderr))
    assert (counts["read"], counts["delivered"], counts["corrupt"]) == (len(truth), len(truth), 0)
