"""GetClip on the local Kinesis Video endpoint, through boto3's archived-media client as on AWS.

Each behaviour names the page it follows: API_reader_GetClip (the operation, its errors, ClipFragmentSelector,
ClipTimestampRange, GetClipOutput), video-playback-requirements (GetClip's tracks), the limits page.
"""

from __future__ import annotations

import io
import struct
import time
from pathlib import Path

import av
import numpy as np
import pytest
from botocore.exceptions import ClientError

from kinase_cli.aws import kvs_put
from kinase_cli.local import kvs_clip
from kinase_cli.workflows.samples import shapes_video
from support.kvs import endpoint
from worker.sources import mkv

FPS, GOP = 10, 5  # fragments of half a second
START = 1_700_000_000.0  # producer time of the first frame
AUDIO, SAMPLING_FREQUENCY, CHANNELS = 0xE1, 0xB5, 0x9F  # Matroska elements of an audio TrackEntry


def matroska(path: Path, frames: int = 30, seed: int = 0, audio: bool = False) -> bytes:
    """A sample as `kinase stream put` sends it: live Matroska, a cluster (fragment) every GOP frames."""
    shapes_video(path, frames=frames, fps=FPS, size=(96, 64), gop=GOP, seed=seed, audio=audio)
    chunks: list[bytes] = []
    kvs_put.remux(path, chunks.append)
    return b"".join(chunks)


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> bytes:
    return matroska(tmp_path_factory.mktemp("clip") / "video.mp4")


def put(kvs, stream: str, body: bytes, start: float = START) -> list[str]:
    """PutMedia with the project's client; the persisted fragment numbers."""
    creds = kvs.session().get_credentials().get_frozen_credentials()
    session = kvs_put.PutMediaSession(kvs.url, stream, creds, "us-east-1", start)
    session.send(body)
    return session.finish().persisted


def archived(kvs, stream: str, secret: str = "testing"):
    """The archived-media client on the endpoint GetDataEndpoint(GET_CLIP) returns, as on AWS."""
    url = kvs.control().get_data_endpoint(StreamName=stream, APIName="GET_CLIP")["DataEndpoint"]
    return kvs.session(secret).client("kinesis-video-archived-media", endpoint_url=url)


def clip(kvs, stream: str, start: float, end: float, kind: str = "PRODUCER_TIMESTAMP") -> dict:
    selector = {"FragmentSelectorType": kind, "TimestampRange": {"StartTimestamp": start, "EndTimestamp": end}}
    return archived(kvs, stream).get_clip(StreamName=stream, ClipFragmentSelector=selector)


def error_of(kvs, stream: str, start: float, end: float, kind: str = "PRODUCER_TIMESTAMP") -> tuple[str, int]:
    with pytest.raises(ClientError) as err:
        clip(kvs, stream, start, end, kind)
    return err.value.response["Error"]["Code"], err.value.response["ResponseMetadata"]["HTTPStatusCode"]


def played(mp4: bytes) -> dict:
    """What a player sees in the clip: its video frames (times, whether the first is a key frame), its streams."""
    with av.open(io.BytesIO(mp4)) as container:
        assert container.format.name.startswith("mov,mp4")
        kinds = sorted(f"{s.type}:{s.codec_context.name}" for s in container.streams)
        frames = list(container.decode(video=0))
        return {
            "streams": kinds,
            "times": [round(float(f.time), 3) for f in frames],
            "first_key": frames[0].key_frame if frames else None,
            "first": frames[0].to_ndarray(format="gray") if frames else None,
        }


def frame_times(fragments: int, first: float = 0.0) -> list[float]:
    return [round(first + i / FPS, 3) for i in range(fragments * GOP)]


def with_tracks(body: bytes, edit) -> bytes:
    """The Matroska stream with each TrackEntry's children, as (id, payload) pairs, passed through `edit`."""
    out = b""
    for el in mkv.iter_level1(io.BytesIO(body)):
        if el.id == mkv.TRACKS:
            entries = b"".join(
                mkv.element(eid, b"".join(mkv.element(cid, payload) for cid, payload in edit(list(mkv.iter_children(entry)))))
                if eid == mkv.TRACK_ENTRY
                else mkv.element(eid, entry)
                for eid, entry in mkv.iter_children(el.body)
            )
            out += mkv.element(mkv.TRACKS, entries)
        else:
            out += el.raw
    return out


def replace(element_id: int, value: bytes | None):
    """A `with_tracks` edit: the first track's child `element_id` replaced by `value`, or removed (None)."""
    done = []

    def edit(children):
        if done:
            return children
        done.append(True)
        return [(cid, value if cid == element_id else payload) for cid, payload in children if cid != element_id or value is not None]

    return edit


# --------------------------------------------------------------------------------- the clip itself


def test_a_clip_of_the_producer_time_range_plays(kvs_endpoint, video):
    """API_reader_GetClip: "Downloads an MP4 file (clip) containing the archived, on-demand media from the
    specified video stream over the specified time range", reached at the endpoint GetDataEndpoint returns for
    GET_CLIP. ClipTimestampRange: "Only fragments that start exactly at or after StartTimestamp are included";
    EndTimestamp "is inclusive ... Fragments that start before the EndTimestamp value and continue past it are
    included". Six fragments at 0, 0.5 ... 2.5 s: [0.5, 2.0] holds the four starting at 0.5, 1.0, 1.5 and 2.0 s."""
    kvs_endpoint.create("clip-range")
    put(kvs_endpoint, "clip-range", video)
    assert kvs_endpoint.control().get_data_endpoint(StreamName="clip-range", APIName="GET_CLIP")["DataEndpoint"] == kvs_endpoint.url
    got = clip(kvs_endpoint, "clip-range", START + 0.5, START + 2.0)
    assert got["ContentType"] == "video/mp4"
    seen = played(got["Payload"].read())
    assert seen["streams"] == ["video:h264"]
    assert seen["times"] == frame_times(4)  # 20 frames, 2 s, from 0
    assert seen["first_key"] is True
    later = played(clip(kvs_endpoint, "clip-range", START + 0.7, START + 2.0)["Payload"].read())
    assert later["times"] == frame_times(3)  # the fragment at 0.5 s starts before 0.7 s: left out
    arn = kvs_endpoint.control().describe_stream(StreamName="clip-range")["StreamInfo"]["StreamARN"]
    selector = {"FragmentSelectorType": "PRODUCER_TIMESTAMP", "TimestampRange": {"StartTimestamp": START, "EndTimestamp": START + 60}}
    by_arn = archived(kvs_endpoint, "clip-range").get_clip(StreamARN=arn, ClipFragmentSelector=selector)
    assert played(by_arn["Payload"].read())["times"] == frame_times(6)


def test_a_clip_by_server_timestamp(kvs_endpoint, video):
    """ClipFragmentSelector FragmentSelectorType SERVER_TIMESTAMP: the range is of the times the fragments were
    ingested; the clip keeps the media's own timing."""
    kvs_endpoint.create("clip-server")
    before = time.time() - 1
    put(kvs_endpoint, "clip-server", video)
    seen = played(clip(kvs_endpoint, "clip-server", before, time.time(), "SERVER_TIMESTAMP")["Payload"].read())
    assert seen["times"] == frame_times(6) and seen["first_key"] is True


def test_a_clip_carries_the_aac_audio_track(kvs_endpoint, tmp_path):
    """API_reader_GetClip: "The media must contain h.264 or h.265 encoded video and, optionally, AAC or G.711
    encoded audio": a camera with a microphone gets both tracks in its clip, the video frames all there."""
    kvs_endpoint.create("clip-audio")
    put(kvs_endpoint, "clip-audio", matroska(tmp_path / "audio.mp4", audio=True))
    seen = played(clip(kvs_endpoint, "clip-audio", START, START + 60)["Payload"].read())
    assert seen["streams"] == ["audio:aac", "video:h264"]
    assert len(seen["times"]) == 30 and seen["first_key"] is True


def with_g711(body: bytes, format_tag: int) -> bytes:
    """The video with a G.711 track 2 (A_MS/ACM, WAVEFORMATEX `format_tag`: 6 A-law, 7 mu-law) of silence beside
    it, 100 ms blocks, as a camera's producer sends it (PyAV's Matroska muxer writes no G.711)."""
    wave = struct.pack("<HHIIHHH", format_tag, 1, 8000, 8000, 1, 8, 0)
    audio = mkv.element(AUDIO, mkv.element(SAMPLING_FREQUENCY, struct.pack(">d", 8000.0)) + mkv.uint_element(CHANNELS, 1))
    entry = mkv.element(
        mkv.TRACK_ENTRY,
        mkv.uint_element(mkv.TRACK_NUMBER, 2)
        + mkv.uint_element(mkv.TRACK_TYPE, 2)
        + mkv.string_element(kvs_clip.CODEC_ID, "A_MS/ACM")
        + mkv.element(kvs_clip.CODEC_PRIVATE, wave)
        + audio,
    )
    silence = b"".join(mkv.element(mkv.SIMPLE_BLOCK, b"\x82" + struct.pack(">hB", ms, 0x80) + b"\xd5" * 800) for ms in range(0, 500, 100))
    out = b""
    for el in mkv.iter_level1(io.BytesIO(body)):
        if el.id == mkv.TRACKS:
            out += mkv.element(mkv.TRACKS, el.body + entry)
        elif el.id == mkv.CLUSTER:
            out += mkv.element(mkv.CLUSTER, el.body + silence)
        else:
            out += el.raw
    return out


def test_g711_a_law_audio_is_in_the_clip_and_mu_law_is_not_taken(kvs_endpoint, video):
    """video-playback-requirements, GetClip: track 2 may be "G.711 audio (A-Law only)" (A_MS/ACM); another
    G.711 (mu-law) is a media type GetClip does not take: UnsupportedStreamMediaTypeException."""
    kvs_endpoint.create("clip-alaw")
    put(kvs_endpoint, "clip-alaw", with_g711(video, format_tag=6))
    seen = played(clip(kvs_endpoint, "clip-alaw", START, START + 60)["Payload"].read())
    assert seen["streams"] == ["audio:pcm_alaw", "video:h264"]
    assert seen["times"] == frame_times(6) and seen["first_key"] is True
    kvs_endpoint.create("clip-mulaw")
    put(kvs_endpoint, "clip-mulaw", with_g711(video, format_tag=7))
    assert error_of(kvs_endpoint, "clip-mulaw", START, START + 60) == ("UnsupportedStreamMediaTypeException", 400)


def test_media_ingested_twice_over_the_same_time_is_in_the_clip_once(kvs_endpoint, video, tmp_path):
    """ClipFragmentSelector: "Fragments that have duplicate producer timestamps are deduplicated ... only the
    oldest ingested collection of fragments are returned": another video put later over the same producer time
    is not in the clip; the first one is."""
    kvs_endpoint.create("clip-twice")
    put(kvs_endpoint, "clip-twice", video)
    put(kvs_endpoint, "clip-twice", matroska(tmp_path / "other.mp4", seed=7))
    seen = played(clip(kvs_endpoint, "clip-twice", START, START + 60)["Payload"].read())
    assert seen["times"] == frame_times(6)
    with av.open(io.BytesIO(video), format="matroska") as original:
        expected = next(original.decode(video=0)).to_ndarray(format="gray")
    assert (seen["first"] == expected).all()


def encoded(path: Path, codec: str, options: dict[str, str], container: str | None = None) -> Path:
    """30 frames of a brightening picture with the encoder's own options (B-frames, H.265), which
    shapes_video does not make; a key frame every GOP frames."""
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=FPS, options=options)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for i in range(30):
            frame = av.VideoFrame.from_ndarray(np.full((64, 96, 3), i * 8, np.uint8), format="bgr24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def test_reordered_frames_keep_their_order_and_timing(kvs_endpoint, tmp_path):
    """H.264 with B-frames, as many cameras send it: Matroska stores presentation times only; the clip decodes
    every frame, at its time, the first a key frame."""
    kvs_endpoint.create("clip-bframes")
    path = encoded(tmp_path / "bframes.mp4", "libx264", {"g": str(GOP), "bf": "2"})
    chunks: list[bytes] = []
    kvs_put.remux(path, chunks.append)
    put(kvs_endpoint, "clip-bframes", b"".join(chunks))
    seen = played(clip(kvs_endpoint, "clip-bframes", START, START + 60)["Payload"].read())
    assert seen["times"] == frame_times(6) and seen["first_key"] is True


def test_h265_video_gets_a_clip(kvs_endpoint, tmp_path):
    """API_reader_GetClip: "The media must contain h.264 or h.265 encoded video" (track 1 V_MPEGH/ISO/HEVC),
    sent here as PyAV's Matroska muxer writes it, B-frames and all."""
    kvs_endpoint.create("clip-hevc")
    params = f"keyint={GOP}:min-keyint={GOP}:bframes=2:log-level=error"
    path = encoded(tmp_path / "hevc.mkv", "libx265", {"x265-params": params}, container="matroska")
    put(kvs_endpoint, "clip-hevc", path.read_bytes())
    seen = played(clip(kvs_endpoint, "clip-hevc", START, START + 60)["Payload"].read())
    assert seen["streams"] == ["video:hevc"]
    assert seen["times"] == frame_times(6) and seen["first_key"] is True


# -------------------------------------------------------------------------------------- limits


def test_a_clip_holds_at_most_the_first_200_fragments(tmp_path):
    """GetClipOutput Payload: "The output will contain the first 100 MB or the first 200 fragments from the
    specified start timestamp" (the limits page: GetClip, 200 fragments): 210 fragments in the range give a
    clip of the first 200 (PutMedia's five fragments a second raised so the test puts them at once)."""
    body = matroska(tmp_path / "long.mp4", frames=210 * GOP)
    with endpoint(tmp_path / "kvs", "--put-fragments-per-second", "1000") as kvs:
        kvs.create("clip-long")
        assert len(put(kvs, "clip-long", body)) == 210
        seen = played(clip(kvs, "clip-long", START, START + 3600)["Payload"].read())
        assert seen["times"] == frame_times(kvs_clip.MAX_FRAGMENTS)
        assert kvs_clip.MAX_FRAGMENTS == 200


def test_a_clip_holds_at_most_the_first_100_mb(tmp_path, video):
    """GetClipOutput Payload: "the first 100 MB ... from the specified start timestamp", with the endpoint's
    --clip-max-bytes set to the size of the first three fragments and a half: the clip holds those three."""
    sizes = [len(el.raw) for el in mkv.iter_level1(io.BytesIO(video)) if el.id == mkv.CLUSTER]
    budget = sum(sizes[:3]) + sizes[3] // 2 + 64  # stored clusters carry the absolute timecode: a few bytes more
    assert kvs_clip.MAX_BYTES == 100 * 1024 * 1024
    with endpoint(tmp_path / "kvs", "--clip-max-bytes", str(budget)) as kvs:
        kvs.create("clip-big")
        put(kvs, "clip-big", video)
        assert played(clip(kvs, "clip-big", START, START + 60)["Payload"].read())["times"] == frame_times(3)


# -------------------------------------------------------------------------------------- errors


def test_an_unknown_stream_is_resource_not_found(kvs_endpoint):
    """API_reader_GetClip Errors: ResourceNotFoundException (HTTP 404) when the stream is not found."""
    kvs_endpoint.create("clip-exists")
    client = archived(kvs_endpoint, "clip-exists")
    selector = {"FragmentSelectorType": "PRODUCER_TIMESTAMP", "TimestampRange": {"StartTimestamp": START, "EndTimestamp": START + 1}}
    with pytest.raises(client.exceptions.ResourceNotFoundException) as err:
        client.get_clip(StreamName="no-such-stream", ClipFragmentSelector=selector)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_a_range_without_fragments_is_resource_not_found(kvs_endpoint, video):
    """API_reader_GetClip Errors: ResourceNotFoundException, as for the other archived-media calls "for a stream
    that has no fragments within the requested time range"."""
    kvs_endpoint.create("clip-empty")
    put(kvs_endpoint, "clip-empty", video)
    assert error_of(kvs_endpoint, "clip-empty", START + 100, START + 200) == ("ResourceNotFoundException", 404)


def test_a_stream_without_retention_has_no_clips(kvs_endpoint, video):
    """API_reader_GetClip: "Data retention must be greater than 0"; Errors: NoDataRetentionException."""
    kvs_endpoint.create("clip-no-retention", retention_hours=0)
    put(kvs_endpoint, "clip-no-retention", video)
    assert error_of(kvs_endpoint, "clip-no-retention", START, START + 60) == ("NoDataRetentionException", 400)


def test_bad_ranges_are_invalid_arguments(kvs_endpoint, video):
    """ClipTimestampRange EndTimestamp: "This value must be within 24 hours of the specified StartTimestamp, and
    it must be later than the StartTimestamp value. If FragmentSelectorType for the request is SERVER_TIMESTAMP,
    this value must be in the past." Errors: InvalidArgumentException."""
    kvs_endpoint.create("clip-ranges")
    put(kvs_endpoint, "clip-ranges", video)
    invalid = ("InvalidArgumentException", 400)
    assert error_of(kvs_endpoint, "clip-ranges", START + 2, START + 1) == invalid
    assert error_of(kvs_endpoint, "clip-ranges", START + 1, START + 1) == invalid
    assert error_of(kvs_endpoint, "clip-ranges", START, START + 24 * 3600 + 1) == invalid
    assert error_of(kvs_endpoint, "clip-ranges", time.time() - 60, time.time() + 60, "SERVER_TIMESTAMP") == invalid
    assert played(clip(kvs_endpoint, "clip-ranges", START, START + 24 * 3600)["Payload"].read())["times"] == frame_times(6)


def test_video_without_codec_private_data_is_refused(kvs_endpoint, video):
    """API_reader_GetClip: "The video track of each fragment must contain codec private data"; Errors:
    MissingCodecPrivateDataException ("No codec private data was found in at least one of tracks")."""
    kvs_endpoint.create("clip-no-cpd")
    put(kvs_endpoint, "clip-no-cpd", with_tracks(video, replace(kvs_clip.CODEC_PRIVATE, None)))
    assert error_of(kvs_endpoint, "clip-no-cpd", START, START + 60) == ("MissingCodecPrivateDataException", 400)


def test_codec_private_data_not_in_avc_form_is_refused(kvs_endpoint, video):
    """API_reader_GetClip: codec private data "in the Advanced Video Coding (AVC) for H.264 format" (ISO/IEC
    14496-15); Errors: InvalidCodecPrivateDataException. Here Annex B start codes instead of the AVC record."""
    kvs_endpoint.create("clip-annexb")
    annex_b = b"\x00\x00\x00\x01\x67\x42\xc0\x1e\x00\x00\x00\x01\x68\xce\x3c\x80"
    put(kvs_endpoint, "clip-annexb", with_tracks(video, replace(kvs_clip.CODEC_PRIVATE, annex_b)))
    assert error_of(kvs_endpoint, "clip-annexb", START, START + 60) == ("InvalidCodecPrivateDataException", 400)


def test_a_video_codec_getclip_does_not_take_is_unsupported(kvs_endpoint, video):
    """video-playback-requirements, GetClip: track 1 is H.264 (V_MPEG4/ISO/AVC) or H.265 (V_MPEGH/ISO/HEVC);
    Errors: UnsupportedStreamMediaTypeException ("could not be determined from the codec IDs of the tracks")."""
    kvs_endpoint.create("clip-vp8")
    put(kvs_endpoint, "clip-vp8", with_tracks(video, replace(kvs_clip.CODEC_ID, b"V_VP8")))
    assert error_of(kvs_endpoint, "clip-vp8", START, START + 60) == ("UnsupportedStreamMediaTypeException", 400)


def test_codec_private_data_or_tracks_that_change_within_the_clip_are_refused(kvs_endpoint, video, tmp_path):
    """API_reader_GetClip: "CPD changes aren't supported between the target fragments of the resulting clip ...
    otherwise an error will be returned" and "Track changes aren't supported ... An error is returned if the
    fragments in the stream change from having only video to having both audio and video". The page names no
    exception: InvalidCodecPrivateDataException here. A range within one side of the change is a clip."""
    kvs_endpoint.create("clip-cpd-change")
    put(kvs_endpoint, "clip-cpd-change", video)
    cpd = next(
        mkv.child(entry, kvs_clip.CODEC_PRIVATE)
        for el in mkv.iter_level1(io.BytesIO(video))
        if el.id == mkv.TRACKS
        for eid, entry in mkv.iter_children(el.body)
        if eid == mkv.TRACK_ENTRY
    )
    other_level = cpd[:3] + bytes([cpd[3] + 1]) + cpd[4:]  # a valid record for another level: another CPD
    put(kvs_endpoint, "clip-cpd-change", with_tracks(video, replace(kvs_clip.CODEC_PRIVATE, other_level)), start=START + 10)
    assert error_of(kvs_endpoint, "clip-cpd-change", START, START + 60) == ("InvalidCodecPrivateDataException", 400)
    assert played(clip(kvs_endpoint, "clip-cpd-change", START, START + 5)["Payload"].read())["times"] == frame_times(6)

    kvs_endpoint.create("clip-track-change")
    put(kvs_endpoint, "clip-track-change", video)
    put(kvs_endpoint, "clip-track-change", matroska(tmp_path / "audio.mp4", audio=True), start=START + 10)
    assert error_of(kvs_endpoint, "clip-track-change", START, START + 60) == ("InvalidCodecPrivateDataException", 400)


def test_getclip_requests_must_be_signed(kvs_endpoint, video):
    """As every Kinesis Video call: SigV4 by the caller's credentials; a wrong secret gets InvalidSignatureException."""
    kvs_endpoint.create("clip-signed")
    selector = {"FragmentSelectorType": "PRODUCER_TIMESTAMP", "TimestampRange": {"StartTimestamp": START, "EndTimestamp": START + 1}}
    with pytest.raises(ClientError) as err:
        archived(kvs_endpoint, "clip-signed", secret="not-the-secret").get_clip(StreamName="clip-signed", ClipFragmentSelector=selector)
    assert (err.value.response["Error"]["Code"], err.value.response["ResponseMetadata"]["HTTPStatusCode"]) == (
        "InvalidSignatureException",
        403,
    )
