"""A camera with a microphone: the Kinesis Video producer SDK (kvssink) sends AAC blocks beside the H.264 ones in
the same clusters. Only the video track's blocks are frames: the worker neither counts the audio blocks as frames
that failed to decode nor lets them move frame positions or `frame_index`. The clip goes in through
`kinase stream put`, which sends a camera file's AAC track with it, and every count is checked against the video
frames read back from the stream.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from kinase_cli.workflows.samples import shapes_video
from support.cli import kinase
from support.kvs import KvsEndpoint, video_positions
from support.worker_stack import accounted, frame_ids, run_worker, summary

pytestmark = pytest.mark.slow
FPS, GOP, FRAMES = 15, 15, 45  # three one-second fragments, each with its AAC blocks


@pytest.fixture(scope="module")
def camera_clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("camera-audio") / "camera.mp4"
    shapes_video(path, frames=FRAMES, fps=FPS, size=(320, 240), gop=GOP, seed=7, audio=True)
    return path


def put_with_audio(media, stream: str, clip: Path) -> list[tuple[str, int]]:
    """`kinase stream put` of the clip (its audio goes along); the stream's video frames, by position."""
    put = json.loads(kinase("stream", "put", str(clip), "--stream", stream, "--local", "--json", check=True, timeout=300).stdout)["data"]
    assert (put["audio"], put["frames"], put["persisted"]) == ("aac", FRAMES, put["fragments"])
    assert tracks(media, stream) == ["video", "audio"]
    truth = video_positions(KvsEndpoint(url=media.kvs_endpoint, home=Path()), stream)
    assert len(truth) == FRAMES
    return truth


def test_a_camera_with_a_microphone_has_no_corrupt_frames(media, camera_clip):
    target = media.fresh(with_stream=True)
    truth = put_with_audio(media, target.stream, camera_clip)

    run = run_worker(media.worker_env(target, f"kvs://{target.stream}", start="EARLIEST", idle_exit=2, read_timeout=1))

    assert run.returncode == 0, run.stderr
    messages = media.messages(target.queue_url, expect=len(truth), wait=120)
    assert sorted((m["source"]["fragment_number"], m["source"]["frame_in_fragment"]) for m in messages) == truth
    assert len(set(frame_ids(messages))) == len(truth)
    assert sorted(m["frame_index"] for m in messages) == list(range(len(truth)))  # video frames only, no holes
    counts = accounted(summary(run.stderr))
    assert (counts["read"], counts["delivered"], counts["corrupt"], counts["corrupt_media"]) == (len(truth), len(truth), 0, 0)


def test_frame_index_counts_video_frames_when_sampling_skips_whole_fragments(media, camera_clip):
    """At 0.5 fps on one-second fragments, every other fragment holds no frame the sampler wants and is not decoded:
    its frames still advance `frame_index` by the number of video frames, not of blocks."""
    target = media.fresh(with_stream=True)
    truth = put_with_audio(media, target.stream, camera_clip)

    run = run_worker(media.worker_env(target, f"kvs://{target.stream}", start="EARLIEST", idle_exit=2, read_timeout=1, fps=0.5))

    assert run.returncode == 0, run.stderr
    counts = accounted(summary(run.stderr))
    assert (counts["read"], counts["corrupt"], counts["corrupt_media"]) == (len(truth), 0, 0)
    messages = media.messages(target.queue_url, expect=counts["delivered"], wait=120)
    assert len(messages) == counts["delivered"] >= 2
    for m in messages:
        assert m["frame_index"] == truth.index((m["source"]["fragment_number"], m["source"]["frame_in_fragment"]))


def tracks(media, stream: str) -> list[str]:
    """The track types of the stream's first fragment, as GetMedia returns it."""
    import av

    first = KvsEndpoint(url=media.kvs_endpoint, home=Path()).fragments(stream, StartSelectorType="EARLIEST")[0]
    with av.open(io.BytesIO(first.data)) as container:
        return [s.type for s in container.streams]


def test_no_audio_sends_the_video_track_only(media, camera_clip):
    target = media.fresh(with_stream=True)
    args = ("stream", "put", str(camera_clip), "--stream", target.stream, "--no-audio", "--local", "--json")
    put = json.loads(kinase(*args, check=True, timeout=300).stdout)["data"]
    assert (put["audio"], put["audio_dropped"], put["frames"], put["fragments"]) == (None, "--no-audio", FRAMES, FRAMES // GOP)
    assert tracks(media, target.stream) == ["video"]
