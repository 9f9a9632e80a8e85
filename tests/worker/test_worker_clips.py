"""Clips (issue 25 item 1, partial): the range asked of GetClip, the clip stored and playing, a refused clip as ClipFailed."""

from __future__ import annotations

import io

import av
import pytest

from kinase_cli.aws import kvs_put
from kinase_cli.workflows.samples import shapes_video
from worker import layout
from worker.events import clips
from worker.rules import Clip


def test_the_window_starts_one_fragment_before_the_lead_in():
    span = clips.window(1000.0, Clip(pre_s=5.0, post_s=3.0), fragment_s=2.0)
    assert (span.start, span.end) == (993.0, 1003.0)


def test_a_clip_is_named_by_its_event():
    assert layout.clip_key("cam-1:line_crossed:42") == "clips/cam-1_line_crossed_42.mp4"


def test_a_clip_of_an_unknown_stream_is_a_clip_failed(aws_env):
    with pytest.raises(clips.ClipFailed) as failed:
        clips.store_clip(aws_env.new_session(), "no-such-stream", "bucket", "e1", clips.Window(0.0, 10.0))
    assert failed.value.code == "ResourceNotFoundException"


FPS, GOP = 10, 5  # fragments of half a second
START = 1_700_000_000.0  # producer time of the first frame


def test_a_clip_covers_the_event_window_and_plays(aws_env, tmp_path):
    """Six seconds in fragments of 0.5 s; an event at 3 s with pre 1 s and post 1 s: the range asked for starts a fragment
    early (1.5 s), so the clip holds the fragments starting at 1.5 ... 4.0 s whole: 30 frames covering [2, 4] s."""
    target = aws_env.fresh(with_stream=True)
    path = tmp_path / "video.mp4"
    shapes_video(path, frames=60, fps=FPS, size=(96, 64), gop=GOP)
    chunks: list[bytes] = []
    kvs_put.remux(path, chunks.append)
    creds = aws_env.session.get_credentials().get_frozen_credentials()
    session = kvs_put.PutMediaSession(aws_env.kvs_endpoint, target.stream, creds, "us-east-1", START)
    session.send(b"".join(chunks))
    session.finish()

    span = clips.window(START + 3.0, Clip(pre_s=1.0, post_s=1.0), fragment_s=GOP / FPS)
    key = clips.store_clip(aws_env.new_session(), target.stream, target.bucket, "cam:line_crossed:1", span)

    assert key == layout.clip_key("cam:line_crossed:1")
    stored = aws_env.s3.get_object(Bucket=target.bucket, Key=key)
    assert stored["ContentType"] == "video/mp4"
    with av.open(io.BytesIO(stored["Body"].read())) as container:
        frames = [frame for frame in container.decode(video=0)]
    assert len(frames) == 30
    assert frames[0].key_frame
    assert frames[-1].time - frames[0].time == pytest.approx(2.9, abs=1e-3)  # 1.5 ... 4.45 s: [t - pre, t + post] inside
