"""GetClip for the local Kinesis Video endpoint: an MP4 remuxed from the stored fragments of a time range.

The archived-media client (`kinesis-video-archived-media`, endpoint from GetDataEndpoint GET_CLIP)
posts `{StreamName|StreamARN, ClipFragmentSelector: {FragmentSelectorType, TimestampRange}}` to
/getClip and gets `Content-Type: video/mp4` and the clip as the body, as from the service
(API_reader_GetClip). What the API reference says, and what this endpoint does:

- The range: only fragments that start at or after StartTimestamp, and at or before EndTimestamp
  (inclusive, compared to the fragment's start), by the producer or the server timestamp.
  EndTimestamp must be later than StartTimestamp and within 24 hours of it; with SERVER_TIMESTAMP
  it must be in the past: else InvalidArgumentException. No fragment in the range:
  ResourceNotFoundException.
- Fragments with duplicate producer timestamps are deduplicated; of media ingested twice over the
  same time, the oldest ingested is kept (ClipFragmentSelector).
- The clip holds the first 200 fragments, or the first 100 MB, from the start (GetClipOutput
  Payload): a longer range is cut short, not refused.
- Data retention must be greater than 0 (NoDataRetentionException). Track 1 is H.264
  (V_MPEG4/ISO/AVC) or H.265 (V_MPEGH/ISO/HEVC), track 2, if any, AAC (A_AAC) or G.711 A-law
  (A_MS/ACM) (video playback track requirements): else UnsupportedStreamMediaTypeException. Each
  track carries codec private data (MissingCodecPrivateDataException) in the AVC / HEVC
  configuration record, AudioSpecificConfig or WAVEFORMATEX form (InvalidCodecPrivateDataException).
  The tracks and their codec private data stay the same across the clip's fragments: "an error is
  returned", which the page does not name; this endpoint answers InvalidCodecPrivateDataException.
- Frames PyAV cannot read or write: InvalidMediaFrameException.

The MP4 is a plain one (not fragmented; moov first), the stored packets copied without re-encoding, its time 0
the start of the clip's first fragment.
"""

from __future__ import annotations

import bisect
import contextlib
import io
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from kinase_cli.local.kvs_media import request_id
from kinase_cli.local.kvs_store import Fragment, StoreError
from worker.sources import mkv

MAX_FRAGMENTS = 200  # GetClipOutput Payload: "the first 100 MB or the first 200 fragments"
MAX_BYTES = 100 * 1024 * 1024
MAX_RANGE_SECONDS = 24 * 3600  # ClipTimestampRange EndTimestamp: "within 24 hours of the specified StartTimestamp"
SELECTOR_TYPES = {"PRODUCER_TIMESTAMP": "producer_timestamp", "SERVER_TIMESTAMP": "server_timestamp"}
VIDEO_CODECS = ("V_MPEG4/ISO/AVC", "V_MPEGH/ISO/HEVC")
AUDIO_CODECS = ("A_AAC", "A_MS/ACM")
WAVE_FORMAT_ALAW = 6
G711 = ("pcm_alaw",)

CODEC_ID = 0x86
CODEC_PRIVATE = 0x63A2


@dataclass(frozen=True)
class Track:
    codec_id: str
    private: bytes | None


def get_clip(handler, params: dict) -> None:
    store = handler.server.store
    kind, start, end = _range(params.get("ClipFragmentSelector"))
    stream = store.get(params.get("StreamName"), params.get("StreamARN"))
    if stream.retention_hours <= 0:
        raise StoreError("NoDataRetentionException", f"The stream {stream.name} does not retain data (DataRetentionInHours is 0).")
    limits = handler.server.limits
    fragments = select(store.fragments_after(stream, None), kind, start, end, limits.clip_max_fragments, limits.clip_max_bytes)
    if not fragments:
        raise StoreError("ResourceNotFoundException", "No fragments found in the specified time range.", 404)
    check_tracks(fragments)
    body = mp4(fragments)
    handler.send_response(200)
    handler.send_header("Content-Type", "video/mp4")
    handler.send_header("Content-Length", str(len(body)))
    handler.send_header("x-amzn-RequestId", request_id())
    handler.end_headers()
    handler.wfile.write(body)


def _range(selector) -> tuple[str, float, float]:
    if not isinstance(selector, dict):
        raise StoreError("InvalidArgumentException", "ClipFragmentSelector is required.")
    kind = selector.get("FragmentSelectorType")
    if kind not in SELECTOR_TYPES:
        raise StoreError("InvalidArgumentException", f"FragmentSelectorType must be one of {', '.join(SELECTOR_TYPES)}.")
    span = selector.get("TimestampRange") or {}
    start, end = span.get("StartTimestamp"), span.get("EndTimestamp")
    if not all(isinstance(t, int | float) and not isinstance(t, bool) for t in (start, end)):
        raise StoreError("InvalidArgumentException", "TimestampRange needs StartTimestamp and EndTimestamp.")
    if end <= start:
        raise StoreError("InvalidArgumentException", "EndTimestamp must be later than StartTimestamp.")
    if end - start > MAX_RANGE_SECONDS:
        raise StoreError("InvalidArgumentException", "EndTimestamp must be within 24 hours of StartTimestamp.")
    if kind == "SERVER_TIMESTAMP" and end > time.time():
        raise StoreError("InvalidArgumentException", "With SERVER_TIMESTAMP, EndTimestamp must be in the past.")
    return kind, float(start), float(end)


def select(retained: list[Fragment], kind: str, start: float, end: float, max_fragments: int, max_bytes: int) -> list[Fragment]:
    """The clip's fragments, in media order: those that start in [start, end] by `kind`'s timestamp, less
    the ones covering media time an older-ingested fragment already covers, cut to the first
    `max_fragments` and `max_bytes` from the start."""
    attr = SELECTOR_TYPES[kind]
    starts: list[float] = []
    kept: list[Fragment] = []
    for fragment in retained:  # ingestion order: the oldest ingested wins
        if not start <= getattr(fragment, attr) <= end:
            continue
        begin = fragment.producer_timestamp
        at = bisect.bisect_left(starts, begin)
        neighbours = kept[max(at - 1, 0) : at + 1]
        if any(_overlap(fragment, other) for other in neighbours):
            continue
        starts.insert(at, begin)
        kept.insert(at, fragment)
    kept.sort(key=lambda f: getattr(f, attr))
    clip: list[Fragment] = []
    size = 0
    for fragment in kept[:max_fragments]:
        size += fragment.size
        if size > max_bytes and clip:
            break
        clip.append(fragment)
    return sorted(clip, key=lambda f: f.producer_timestamp)


def _overlap(a: Fragment, b: Fragment) -> bool:
    a_end = a.producer_timestamp + a.duration_ms / 1000
    b_end = b.producer_timestamp + b.duration_ms / 1000
    return a.producer_timestamp <= b_end and b.producer_timestamp <= a_end


def tracks(header: bytes) -> list[Track]:
    """The tracks a fragment's Matroska header declares, in order."""
    body = next((el.body for el in mkv.iter_level1(io.BytesIO(header)) if el.id == mkv.TRACKS), b"")
    found = []
    for element_id, entry in mkv.iter_children(body):
        if element_id == mkv.TRACK_ENTRY:
            codec = mkv.child(entry, CODEC_ID)
            found.append(Track((codec or b"").decode("ascii", "replace").rstrip("\x00"), mkv.child(entry, CODEC_PRIVATE)))
    return found


def check_tracks(fragments: list[Fragment]) -> None:
    """The requirements on tracks and codec private data (API_reader_GetClip, video playback track requirements)."""
    seen: dict[bytes, list[Track]] = {}
    for fragment in fragments:
        if fragment.header not in seen:
            seen[fragment.header] = tracks(fragment.header)
    first, *others = list(seen.values())
    _check_codecs(first)
    if any(other != first for other in others):
        raise StoreError(
            "InvalidCodecPrivateDataException",
            "The tracks or their codec private data change between the fragments of the requested clip.",
        )


def _check_codecs(found: list[Track]) -> None:
    if not 1 <= len(found) <= 2 or found[0].codec_id not in VIDEO_CODECS or (len(found) == 2 and found[1].codec_id not in AUDIO_CODECS):
        codecs = ", ".join(t.codec_id or "?" for t in found) or "no tracks"
        raise StoreError(
            "UnsupportedStreamMediaTypeException",
            f"The media type could not be determined from the codec IDs of the tracks ({codecs}): track 1 must be "
            f"{' or '.join(VIDEO_CODECS)}, track 2 (optional) {' or '.join(AUDIO_CODECS)}.",
        )
    for number, track in enumerate(found, 1):
        if not track.private:
            raise StoreError("MissingCodecPrivateDataException", f"No codec private data was found in track {number} ({track.codec_id}).")
        if not _valid_private(track):
            raise StoreError(
                "InvalidCodecPrivateDataException",
                f"The codec private data of track {number} ({track.codec_id}) is not valid for this operation.",
            )
    if len(found) == 2 and found[1].codec_id == "A_MS/ACM" and int.from_bytes(found[1].private[:2], "little") != WAVE_FORMAT_ALAW:
        raise StoreError("UnsupportedStreamMediaTypeException", "G.711 audio must be A-law (WAVE format tag 6).")


def _valid_private(track: Track) -> bool:
    data = track.private or b""
    if track.codec_id == "V_MPEG4/ISO/AVC":  # AVCDecoderConfigurationRecord (ISO/IEC 14496-15), not Annex B
        return len(data) >= 7 and data[0] == 1 and data[5] & 0x1F >= 1
    if track.codec_id == "V_MPEGH/ISO/HEVC":  # HEVCDecoderConfigurationRecord
        return len(data) >= 23 and data[0] == 1
    if track.codec_id == "A_AAC":  # AudioSpecificConfig: an audio object type
        return len(data) >= 2 and data[0] >> 3 != 0
    return len(data) >= 18  # A_MS/ACM: WAVEFORMATEX


def mp4(fragments: list[Fragment]) -> bytes:
    """The fragments' packets copied into one MP4 (moov first, so that it plays while it downloads), times
    shifted so that the first fragment starts at 0. G.711 goes in the QuickTime flavour of the format, the
    one FFmpeg writes it in."""
    import av

    try:
        with tempfile.TemporaryDirectory(prefix="kinase-clip-") as tmp, contextlib.ExitStack() as sources:
            packets: list = []
            for fragment in fragments:
                source = sources.enter_context(av.open(io.BytesIO(fragment.header + fragment.cluster), format="matroska"))
                packets.append([p for p in source.demux() if p.size and p.pts is not None])
            first = packets[0][0].stream.container.streams
            origin = min(p.pts * p.time_base for p in packets[0])
            flat = [p for fragment_packets in packets for p in fragment_packets]
            _decode_times(flat, origin)
            path = Path(tmp) / "clip.mp4"
            flavour = "mov" if any(s.codec_context.name in G711 for s in first) else "mp4"
            with av.open(str(path), "w", format=flavour, options={"movflags": "faststart"}) as out:
                streams = [out.add_stream_from_template(s) for s in first]
                for packet in flat:
                    packet.stream = streams[packet.stream.index]
                    out.mux(packet)
            return path.read_bytes()
    except (av.error.FFmpegError, mkv.MkvError, IndexError, ValueError) as exc:
        raise StoreError("InvalidMediaFrameException", f"One or more frames in the requested clip could not be parsed: {exc}") from None


def _decode_times(packets: list, origin: Fraction) -> None:
    """Each packet's pts shifted by `origin`, and a dts: Matroska stores presentation times only, and the
    demuxer leaves the dts of each fragment's first reordered (B-)frames unset. A stream's dts are its pts in
    ascending order, moved back by the largest reordering so that no frame is decoded after it is shown."""
    by_stream: dict[int, list] = {}
    for packet in packets:
        packet.pts -= round(origin / packet.time_base)
        by_stream.setdefault(packet.stream.index, []).append(packet)
    for stream_packets in by_stream.values():
        base = stream_packets[0].time_base
        for packet in stream_packets:
            if packet.time_base != base:  # another PutMedia session's timecode scale
                packet.pts = round(packet.pts * packet.time_base / base)
                packet.time_base = base
        ordered = sorted(p.pts for p in stream_packets)
        delay = max(0, *(shown - p.pts for shown, p in zip(ordered, stream_packets, strict=True)))
        for shown, packet in zip(ordered, stream_packets, strict=True):
            packet.dts = shown - delay
