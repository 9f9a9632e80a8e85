"""`kinase stream put / ls / describe`, the real CLI in a subprocess, against the local Kinesis Video endpoint.

Media is read back with boto3 `kinesis-video-media` GetMedia, split with worker/sources/mkv.py and decoded
with PyAV, and compared frame by frame with the file that went in.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import threading
import time

import av
import numpy as np
import pytest

from kinase_cli.workflows.samples import shapes_video
from support.cli import KINASE, ROOT, kinase, one_error_line
from support.kvs import decode, endpoint
from worker.contract import parse_iso
from worker.sources import mkv

FPS, GOP, FRAMES = 10, 5, 40  # eight fragments of half a second


@pytest.fixture(scope="module")
def h264_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("media") / "shapes.mp4"
    shapes_video(path, frames=FRAMES, fps=FPS, size=(160, 120), gop=GOP, seed=3)
    return path


def source_frames(path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def put(endpoint, path, stream: str, *args: str):
    """`kinase stream put ... --json`: the summary."""
    proc = kinase("stream", "put", str(path), "--stream", stream, "--local", "--json", *args, env=endpoint.env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    envelope = json.loads(proc.stdout)
    assert envelope["command"] == "stream put"
    return envelope["data"]


def test_put_h264_every_fragment_persisted_and_read_back_frame_for_frame(kvs_endpoint, h264_file):
    kvs_endpoint.create("put-h264")
    summary = put(kvs_endpoint, h264_file, "put-h264")
    assert (summary["frames"], summary["fragments"], summary["persisted"]) == (FRAMES, FRAMES // GOP, FRAMES // GOP)
    assert summary["acks"] == {"BUFFERING": 8, "RECEIVED": 8, "PERSISTED": 8}
    assert (summary["codec"], summary["reencoded"]) == ("h264", False)
    assert summary["media_seconds"] == pytest.approx(FRAMES / FPS)
    assert summary["elapsed_seconds"] >= 7 / 5  # eight fragments at PutMedia's five a second at most

    fragments = kvs_endpoint.fragments("put-h264", StartSelectorType="EARLIEST")
    assert len(fragments) == 8
    assert (fragments[0].fragment_number, fragments[-1].fragment_number) == (
        summary["first_fragment_number"],
        summary["last_fragment_number"],
    )
    frames = decode(fragments)
    start = parse_iso(summary["producer_start_at"])
    assert [when for when, _ in frames] == pytest.approx([start + i / FPS for i in range(FRAMES)], abs=0.002)
    # copied, not re-encoded: every decoded picture is the source's, in order
    original = source_frames(h264_file)
    assert len(frames) == len(original)
    assert all(np.array_equal(frame.to_ndarray(format="rgb24"), want) for (_, frame), want in zip(frames, original))


def test_getmedia_now_sees_fragments_put_after_it_started(kvs_endpoint, h264_file):
    kvs_endpoint.create("put-now")
    earlier = put(kvs_endpoint, h264_file, "put-now")
    payload = kvs_endpoint.get_media("put-now", StartSelectorType="NOW")
    seen: list[mkv.Fragment] = []

    def read():
        for fragment in mkv.iter_fragments(payload):
            seen.append(fragment)
            if len(seen) == 8:
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    later = put(kvs_endpoint, h264_file, "put-now")
    reader.join(120)  # the service keeps the connection open: the reader stops after eight
    payload.close()
    assert len(seen) == later["persisted"] == 8
    assert (seen[0].fragment_number, seen[-1].fragment_number) == (later["first_fragment_number"], later["last_fragment_number"])
    assert all(f.fragment_number > earlier["last_fragment_number"] for f in seen)
    assert len(decode(seen)) == FRAMES


def test_continuation_token_resumes_exactly_after_the_last_fragment_read(kvs_endpoint, h264_file):
    kvs_endpoint.create("put-resume")
    put(kvs_endpoint, h264_file, "put-resume")
    everything = kvs_endpoint.fragments("put-resume", StartSelectorType="EARLIEST")
    payload = kvs_endpoint.get_media("put-resume", StartSelectorType="EARLIEST")
    fragments = mkv.iter_fragments(payload)
    first = [next(fragments) for _ in range(3)]
    payload.close()
    rest = kvs_endpoint.fragments("put-resume", StartSelectorType="CONTINUATION_TOKEN", ContinuationToken=first[-1].continuation_token)
    assert [f.fragment_number for f in first + rest] == [f.fragment_number for f in everything]
    assert [when for when, _ in decode(first + rest)] == [when for when, _ in decode(everything)]


def test_loop_keeps_timestamps_increasing(kvs_endpoint, h264_file):
    kvs_endpoint.create("put-loop")
    summary = put(kvs_endpoint, h264_file, "put-loop", "--loop", "--loops", "2")
    assert (summary["passes"], summary["frames"], summary["persisted"]) == (2, 2 * FRAMES, 2 * FRAMES // GOP)
    times = [when for when, _ in decode(kvs_endpoint.fragments("put-loop", StartSelectorType="EARLIEST"))]
    start = parse_iso(summary["producer_start_at"])
    assert times == pytest.approx([start + i / FPS for i in range(2 * FRAMES)], abs=0.002)


def test_realtime_paces_at_the_frame_rate(kvs_endpoint, tmp_path):
    path = tmp_path / "short.mp4"
    shapes_video(path, frames=10, fps=FPS, size=(96, 64), gop=GOP)
    kvs_endpoint.create("put-realtime")
    summary = put(kvs_endpoint, path, "put-realtime", "--realtime")
    assert summary["persisted"] == 2
    assert summary["elapsed_seconds"] >= 9 / FPS  # the last frame is not sent before its time


def test_without_realtime_no_fragment_is_stamped_in_the_future(tmp_path, h264_file):
    """API_dataplane_PutMedia refuses producer timestamps ahead of the service clock (4007; the local endpoint
    tolerates 1 s here): an upload faster than real time is stamped to end now, as the offline producer sample
    does, so every fragment's producer time is before the time the service received it."""
    with endpoint(tmp_path / "kvs", "--max-future-seconds", "1") as kvs:
        kvs.create("put-honest")
        before = time.time()
        summary = put(kvs, h264_file, "put-honest", "--loop", "--loops", "3")
        assert summary["persisted"] == summary["fragments"] == 3 * FRAMES // GOP
        assert summary["elapsed_seconds"] < summary["media_seconds"]  # not paced: faster than real time
        media_end = parse_iso(summary["producer_start_at"]) + summary["media_seconds"]
        assert before <= media_end <= time.time()  # the media is stamped to end at the upload, not after it
        fragments = kvs.fragments("put-honest", StartSelectorType="EARLIEST")
        assert all(f.producer_timestamp <= f.server_timestamp for f in fragments)
        times = [when for when, _ in decode(fragments)]
        assert times == pytest.approx([parse_iso(summary["producer_start_at"]) + i / FPS for i in range(3 * FRAMES)], abs=0.002)


def test_a_live_loop_renews_its_putmedia_session_without_losing_or_repeating_a_fragment(tmp_path, h264_file):
    """API_dataplane_PutMedia ends a connection past its maximum duration with error 4003 (the local endpoint's
    --put-max-seconds shortens it to 3 s): `--loop --realtime` renews the session before that, at a fragment
    boundary (KINASE_PUTMEDIA_SESSION_SECONDS=1.5 here)."""
    with endpoint(tmp_path / "kvs", "--put-max-seconds", "3") as kvs:
        kvs.create("put-renew")
        proc = kinase(
            *("stream", "put", str(h264_file), "--stream", "put-renew", "--local", "--json", "--loop", "--loops", "2", "--realtime"),
            env={**kvs.env, "KINASE_PUTMEDIA_SESSION_SECONDS": "1.5"},
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
        summary = json.loads(proc.stdout)["data"]
        assert summary["sessions"] >= 3
        assert summary["persisted"] == summary["fragments"] == 2 * FRAMES // GOP
        fragments = kvs.fragments("put-renew", StartSelectorType="EARLIEST")
        assert len(fragments) == 2 * FRAMES // GOP
        times = [when for when, _ in decode(fragments)]
        assert times == pytest.approx([parse_iso(summary["producer_start_at"]) + i / FPS for i in range(2 * FRAMES)], abs=0.002)


def test_sigterm_ends_a_live_loop_cleanly(kvs_endpoint, h264_file):
    """A camera stand-in (`--loop --realtime`) stopped by SIGTERM: exit 0, every fragment sent is persisted."""
    kvs_endpoint.create("put-live")
    payload = kvs_endpoint.get_media("put-live", StartSelectorType="NOW")
    proc = subprocess.Popen(
        [*KINASE, "stream", "put", str(h264_file), "--stream", "put-live", "--local", "--json", "--loop", "--realtime"],
        cwd=ROOT,
        env={**os.environ, **kvs_endpoint.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = next(mkv.iter_fragments(payload))  # the upload is live
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
        payload.close()
    assert proc.returncode == 0, err
    summary = json.loads(out)["data"]
    assert summary["persisted"] == summary["fragments"] >= 1
    assert summary["first_fragment_number"] == first.fragment_number
    stored = kvs_endpoint.fragments("put-live", StartSelectorType="EARLIEST")
    assert [f.fragment_number for f in stored][-1] == summary["last_fragment_number"]
    assert len(decode(stored)) == summary["frames"]


def test_non_h264_input_is_reencoded_to_h264(kvs_endpoint, tmp_path):
    path = tmp_path / "mpeg4.mp4"
    shapes_video(path, frames=30, fps=FPS, size=(160, 120), codec="mpeg4")
    kvs_endpoint.create("put-mpeg4")
    summary = put(kvs_endpoint, path, "put-mpeg4")
    assert (summary["codec"], summary["reencoded"], summary["frames"]) == ("mpeg4", True, 30)
    assert summary["persisted"] == summary["fragments"] == 3  # one-second GOPs
    fragments = kvs_endpoint.fragments("put-mpeg4", StartSelectorType="EARLIEST")
    with av.open(io.BytesIO(fragments[0].data)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
    times = [when for when, _ in decode(fragments)]
    assert times == pytest.approx([parse_iso(summary["producer_start_at"]) + i / FPS for i in range(30)], abs=0.002)


@pytest.mark.parametrize("content", ["garbage", "truncated"])
def test_unreadable_file_is_one_clear_error_line(kvs_endpoint, h264_file, tmp_path, content):
    path = tmp_path / "broken.mp4"
    data = h264_file.read_bytes()
    path.write_bytes(bytes(range(256)) * 40 if content == "garbage" else data[: len(data) // 2])
    kvs_endpoint.create(f"put-broken-{content}")
    line = one_error_line(
        kinase("stream", "put", str(path), "--stream", f"put-broken-{content}", "--local", env=kvs_endpoint.env), only=True
    )
    assert "broken.mp4" in line
    assert kvs_endpoint.fragments(f"put-broken-{content}", StartSelectorType="EARLIEST") == []


def test_missing_file_is_one_clear_error_line(kvs_endpoint, tmp_path):
    line = one_error_line(kinase("stream", "put", str(tmp_path / "nope.mp4"), "--stream", "x", "--local", env=kvs_endpoint.env), only=True)
    assert "nope.mp4" in line


def test_unknown_stream_is_resource_not_found(kvs_endpoint, h264_file):
    line = one_error_line(kinase("stream", "put", str(h264_file), "--stream", "no-such-stream", "--local", env=kvs_endpoint.env), only=True)
    assert "ResourceNotFoundException" in line
    line = one_error_line(kinase("stream", "describe", "no-such-stream", "--local", env=kvs_endpoint.env), only=True)
    assert "no stream no-such-stream in environment dev" in line


def test_ls_and_describe(kvs_endpoint):
    kvs_endpoint.create("kinase-dev-video", retention_hours=24, env="dev")
    kvs_endpoint.create("someone-else")
    mine = json.loads(kinase("stream", "ls", "--local", "--json", env=kvs_endpoint.env, check=True).stdout)
    assert mine["command"] == "stream ls"
    assert [s["name"] for s in mine["data"]["streams"]] == ["kinase-dev-video"]
    every = json.loads(kinase("stream", "ls", "--all", "--local", "--json", env=kvs_endpoint.env, check=True).stdout)
    assert {"kinase-dev-video", "someone-else"} <= {s["name"] for s in every["data"]["streams"]}
    described = json.loads(kinase("stream", "describe", "kinase-dev-video", "--local", "--json", env=kvs_endpoint.env, check=True).stdout)
    info = described["data"]
    assert (info["name"], info["status"], info["retention_hours"]) == ("kinase-dev-video", "ACTIVE", 24)
    assert info["endpoints"] == {"put_media": kvs_endpoint.url, "get_media": kvs_endpoint.url}
    short = json.loads(kinase("stream", "describe", "video", "--local", "--json", env=kvs_endpoint.env, check=True).stdout)
    assert short["data"]["name"] == "kinase-dev-video"  # the short name create and rm accept
    table = kinase("stream", "ls", "--local", env=kvs_endpoint.env, check=True).stdout
    assert "kinase-dev-video" in table and "someone-else" not in table


@pytest.mark.e2e
def test_put_to_the_deployed_stream_by_default(deployed_stack, h264_file):
    """Without --stream, the stack's stream (output StreamName) on the shared local stack."""
    proc = kinase("stream", "put", str(h264_file), "--local", "--json", timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)["data"]
    assert summary["stream"] == deployed_stack["StreamName"]
    assert summary["persisted"] == FRAMES // GOP
    described = json.loads(kinase("stream", "describe", "--local", "--json", check=True).stdout)["data"]
    assert described["name"] == deployed_stack["StreamName"]
