"""worker/sources/mkv.py: EBML primitives, GetMedia bodies split per fragment, streaming without blocking."""

from __future__ import annotations

import io
import os
import threading

import av
import pytest

from kinase_cli.aws import kvs_put
from worker.sources import mkv


@pytest.fixture(scope="module")
def live_mkv(tmp_path_factory, make_clip) -> bytes:
    """A live Matroska stream (one cluster per GOP) of a generated H.264 video: 24 frames, GOP 6."""
    path = make_clip(frames=24, fps=12, size=(96, 64), gop=6).path
    chunks: list[bytes] = []
    kvs_put.remux(path, chunks.append)
    return b"".join(chunks)


@pytest.fixture(scope="module")
def camera_with_microphone(tmp_path_factory, make_clip) -> bytes:
    """What the Kinesis Video producer SDK sends for a camera with a microphone: AAC blocks beside the H.264
    ones in the same clusters (30 video frames, GOP 15, and a 16 kHz AAC track), remuxed by `kinase stream put`."""
    path = make_clip(frames=30, fps=15, size=(320, 240), gop=15, audio=True).path
    chunks: list[bytes] = []
    stats = kvs_put.remux(path, chunks.append)
    assert (stats.audio, stats.frames) == ("aac", 30) and stats.audio_packets > 0
    return b"".join(chunks)


def getmedia_body(stream: bytes, start_number: int = 1000, producer_start: float = 1700000000.0) -> bytes:
    """What GetMedia returns for `stream`: per cluster, a standalone file with the Kinesis tags."""
    header, clusters = b"", []
    for el in mkv.iter_level1(io.BytesIO(stream)):
        if el.id in (mkv.EBML, mkv.INFO, mkv.TRACKS):
            header += el.raw
        elif el.id == mkv.SEGMENT:
            header += mkv.segment_start()
        elif el.id == mkv.CLUSTER:
            clusters.append(el.body)
    body = b""
    for i, cluster in enumerate(clusters):
        number = str(start_number + i)
        tc = mkv.cluster_timecode(cluster)
        body += (
            header
            + mkv.tags_element(
                {
                    mkv.FRAGMENT_NUMBER: number,
                    mkv.SERVER_TIMESTAMP: f"{producer_start + 5 + tc / 1000:.3f}",
                    mkv.PRODUCER_TIMESTAMP: f"{producer_start + tc / 1000:.3f}",
                }
            )
            + mkv.element(mkv.CLUSTER, cluster)
            + mkv.tags_element(
                {
                    mkv.MILLIS_BEHIND_NOW: str(100 + i),
                    mkv.CONTINUATION_TOKEN: number,
                }
            )
        )
    return body


def decode_pts(data: bytes) -> list[int]:
    with av.open(io.BytesIO(data)) as container:
        return [frame.pts for frame in container.decode(video=0)]


class OneByteAtATime(io.RawIOBase):
    """A stream whose `read1` hands out a single byte per call, like a slow network."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def readable(self):
        return True

    def read1(self, n=-1):
        chunk = self.data[self.pos : self.pos + 1]
        self.pos += len(chunk)
        return chunk

    read = read1


@pytest.mark.parametrize("size", [0, 1, 126, 127, 128, 16382, 16383, 2**21, 2**35])
def test_size_encoding_round_trips(size):
    encoded = mkv.encode_size(size)
    assert mkv.read_vint(encoded, 0) == (size, len(encoded))


def test_unknown_size_and_ids():
    assert mkv.read_vint(mkv.UNKNOWN_SIZE, 0) == (None, 8)
    assert mkv.encode_id(mkv.CLUSTER) == b"\x1f\x43\xb6\x75"
    assert mkv.read_vint(mkv.encode_id(mkv.TIMECODE), 0, keep_marker=True) == (mkv.TIMECODE, 1)


def test_tags_round_trip():
    tags = {mkv.FRAGMENT_NUMBER: "91343852333181432392682062", "OTHER": "é"}
    el = next(mkv.iter_level1(io.BytesIO(mkv.tags_element(tags))))
    assert el.id == mkv.TAGS
    assert mkv.parse_tags(el.body) == tags


def test_cluster_timecode_rewrite_keeps_blocks(live_mkv):
    cluster = next(el for el in mkv.iter_level1(io.BytesIO(live_mkv)) if el.id == mkv.CLUSTER)
    rewritten = mkv.with_cluster_timecode(cluster.body, 1_700_000_000_123)
    el = next(mkv.iter_level1(io.BytesIO(rewritten)))
    assert mkv.cluster_timecode(el.body) == 1_700_000_000_123
    assert mkv.block_timecodes(el.body) == mkv.block_timecodes(cluster.body)


def test_live_stream_has_one_cluster_per_gop(live_mkv):
    clusters = [el for el in mkv.iter_level1(io.BytesIO(live_mkv)) if el.id == mkv.CLUSTER]
    assert [mkv.cluster_timecode(c.body) for c in clusters] == [0, 500, 1000, 1500]
    assert all(len(mkv.block_timecodes(c.body)) == 6 for c in clusters)


def test_fragments_of_a_getmedia_body(live_mkv):
    body = getmedia_body(live_mkv)
    fragments = list(mkv.iter_fragments(io.BytesIO(body)))
    assert [f.fragment_number for f in fragments] == ["1000", "1001", "1002", "1003"]
    assert [f.continuation_token for f in fragments] == ["1000", "1001", "1002", "1003"]
    assert [f.millis_behind_now for f in fragments] == [100, 101, 102, 103]
    assert [f.cluster_timecode for f in fragments] == [0, 500, 1000, 1500]
    assert fragments[1].producer_timestamp == pytest.approx(1700000000.5)
    assert fragments[1].server_timestamp == pytest.approx(1700000005.5)
    assert fragments[0].error_code is None
    assert b"".join(f.data for f in fragments) == body
    # each fragment is a standalone Matroska file; together they hold every frame in order
    assert decode_pts(fragments[2].data) == decode_pts(live_mkv)[12:18]
    assert sum((decode_pts(f.data) for f in fragments), []) == decode_pts(live_mkv)


def test_frame_time_is_producer_timestamp_plus_offset_in_cluster(live_mkv):
    fragment = list(mkv.iter_fragments(io.BytesIO(getmedia_body(live_mkv))))[3]
    times = [fragment.producer_timestamp + (pts - fragment.cluster_timecode) / 1000 for pts in decode_pts(fragment.data)]
    assert times == pytest.approx([1700000000.0 + i / 12 for i in range(18, 24)], abs=0.002)


def test_reads_a_trickle_the_same_way(live_mkv):
    body = getmedia_body(live_mkv)
    whole = list(mkv.iter_fragments(io.BytesIO(body)))
    trickled = list(mkv.iter_fragments(OneByteAtATime(body)))
    assert [(f.data, f.tags) for f in trickled] == [(f.data, f.tags) for f in whole]


def test_a_fragment_is_handed_over_before_more_bytes_arrive(live_mkv):
    """On a live pipe, fragment 1 must come out while fragment 2 has not been written yet."""
    body = getmedia_body(live_mkv)
    first_len = len(list(mkv.iter_fragments(io.BytesIO(body)))[0].data)
    read_fd, write_fd = os.pipe()
    with open(read_fd, "rb") as reader, open(write_fd, "wb", buffering=0) as writer:
        fragments = mkv.iter_fragments(reader)
        writer.write(body[:first_len])
        got = []
        thread = threading.Thread(target=lambda: got.append(next(fragments)), daemon=True)
        thread.start()
        thread.join(30)
        assert got and got[0].fragment_number == "1000"
        writer.write(body[first_len:])
        writer.close()
        assert [f.fragment_number for f in fragments] == ["1001", "1002", "1003"]


def test_unknown_size_cluster_ends_at_the_next_level1_element(live_mkv):
    body = getmedia_body(live_mkv)
    # re-write every cluster with an unknown size, as a live producer may
    out = b""
    for el in mkv.iter_level1(io.BytesIO(body)):
        out += (mkv.encode_id(mkv.CLUSTER) + mkv.UNKNOWN_SIZE + el.body) if el.id == mkv.CLUSTER else el.raw
    fragments = list(mkv.iter_fragments(io.BytesIO(out)))
    assert [f.cluster_timecode for f in fragments] == [0, 500, 1000, 1500]
    assert fragments[3].continuation_token == "1003"
    assert decode_pts(fragments[3].data) == decode_pts(live_mkv)[18:]


def test_error_tags_end_a_fragment():
    header = mkv.element(mkv.EBML, mkv.string_element(mkv.DOC_TYPE, "matroska")) + mkv.segment_start()
    body = header + mkv.tags_element({mkv.ERROR_CODE: "INTERNAL_ERROR", mkv.ERROR_ID: "5000"})
    (fragment,) = mkv.iter_fragments(io.BytesIO(body))
    assert fragment.error_code == "INTERNAL_ERROR"
    assert fragment.error_id == "5000"
    assert fragment.fragment_number is None


@pytest.mark.parametrize("garbage", [b"\x00\x00\x00\x00", b"hello world, not matroska", b"\x1a\x45\xdf\xa3\x88\x00"])
def test_garbage_raises_mkv_error(garbage):
    with pytest.raises(mkv.MkvError):
        list(mkv.iter_fragments(io.BytesIO(garbage)))


def test_only_the_video_tracks_blocks_are_frames(camera_with_microphone):
    """The audio track's blocks share the clusters; a fragment's blocks (its frame positions) are the video ones."""
    level1 = list(mkv.iter_level1(io.BytesIO(camera_with_microphone)))
    tracks = next(el for el in level1 if el.id == mkv.TRACKS)
    video = mkv.video_track(tracks.body)
    clusters = [el for el in level1 if el.id == mkv.CLUSTER]
    assert len(clusters) == 2
    assert all(len(mkv.block_timecodes(c.body)) > len(mkv.block_timecodes(c.body, video)) == 15 for c in clusters)
    fragments = list(mkv.iter_fragments(io.BytesIO(getmedia_body(camera_with_microphone))))
    assert [len(f.block_timecodes) for f in fragments] == [15, 15]
    for fragment in fragments:
        pts = decode_pts(fragment.data)
        assert [fragment.cluster_timecode + b for b in fragment.block_timecodes] == pts  # block i is video frame i


def test_a_track_list_without_video_names_no_video_track():
    entry = mkv.element(mkv.TRACK_ENTRY, mkv.uint_element(mkv.TRACK_NUMBER, 1) + mkv.uint_element(mkv.TRACK_TYPE, 2))
    assert mkv.video_track(entry) is None
    video = mkv.element(mkv.TRACK_ENTRY, mkv.uint_element(mkv.TRACK_NUMBER, 2) + mkv.uint_element(mkv.TRACK_TYPE, 1))
    assert mkv.video_track(entry + video) == 2
