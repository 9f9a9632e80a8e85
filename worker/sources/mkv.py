"""A small streaming EBML / Matroska reader and writer, for Kinesis Video media.

A GetMedia body is a run of complete small Matroska files, one per fragment (EBML header, Segment,
Info, Tracks, Tags, one Cluster, Tags). PyAV decodes such a body but exposes only the first
fragment's tags, and never the continuation token, so this module splits the body per fragment
and reads the AWS_KINESISVIDEO_* tags. The local Kinesis Video endpoint uses the same reader on
PutMedia bodies and the writer helpers to build GetMedia fragments.

It reads from non-seekable streams and never asks for more than what is there: `read1` is used
when the stream has it (urllib3 responses, buffered sockets), so a fragment is handed over as soon
as its last byte has arrived.

    for fragment in iter_fragments(response["Payload"]):
        fragment.fragment_number, fragment.producer_timestamp, fragment.continuation_token
        av.open(io.BytesIO(fragment.data))   # a standalone Matroska file
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

# Element IDs (with their length-marker bits, as written on the wire)
EBML = 0x1A45DFA3
EBML_VERSION = 0x4286
EBML_READ_VERSION = 0x42F7
EBML_MAX_ID_LENGTH = 0x42F2
EBML_MAX_SIZE_LENGTH = 0x42F3
DOC_TYPE = 0x4282
DOC_TYPE_VERSION = 0x4287
DOC_TYPE_READ_VERSION = 0x4285
SEGMENT = 0x18538067
SEEK_HEAD = 0x114D9B74
INFO = 0x1549A966
TIMECODE_SCALE = 0x2AD7B1
TRACKS = 0x1654AE6B
TRACK_ENTRY = 0xAE
TRACK_NUMBER = 0xD7
TRACK_TYPE = 0x83
CLUSTER = 0x1F43B675
TIMECODE = 0xE7
SIMPLE_BLOCK = 0xA3
BLOCK_GROUP = 0xA0
BLOCK = 0xA1
CUES = 0x1C53BB6B
CHAPTERS = 0x1043A770
ATTACHMENTS = 0x1941A469
TAGS = 0x1254C367
TAG = 0x7373
TARGETS = 0x63C0
SIMPLE_TAG = 0x67C8
TAG_NAME = 0x45A3
TAG_STRING = 0x4487
VOID = 0xEC

LEVEL1 = frozenset({SEEK_HEAD, INFO, TRACKS, CLUSTER, CUES, CHAPTERS, ATTACHMENTS, TAGS, VOID})
TOP_LEVEL = frozenset({EBML, SEGMENT})
UNKNOWN_SIZE = b"\x01\xff\xff\xff\xff\xff\xff\xff"
DEFAULT_TIMECODE_SCALE = 1_000_000  # ns per timecode tick: timecodes in ms
VIDEO_TRACK_TYPE = 1  # TrackType values: 1 video, 2 audio, 0x11 subtitle, 0x21 metadata...

TAG_PREFIX = "AWS_KINESISVIDEO_"
FRAGMENT_NUMBER = "AWS_KINESISVIDEO_FRAGMENT_NUMBER"
SERVER_TIMESTAMP = "AWS_KINESISVIDEO_SERVER_TIMESTAMP"
PRODUCER_TIMESTAMP = "AWS_KINESISVIDEO_PRODUCER_TIMESTAMP"
MILLIS_BEHIND_NOW = "AWS_KINESISVIDEO_MILLIS_BEHIND_NOW"
CONTINUATION_TOKEN = "AWS_KINESISVIDEO_CONTINUATION_TOKEN"
ERROR_CODE = "AWS_KINESISVIDEO_ERROR_CODE"  # why GetMedia stopped, in words
ERROR_ID = "AWS_KINESISVIDEO_ERROR_ID"  # the same, as an integer code


class MkvError(ValueError):
    """The bytes are not the Matroska this module expects."""


# ---------------------------------------------------------------------------------------- writing


def encode_id(element_id: int) -> bytes:
    return element_id.to_bytes((element_id.bit_length() + 7) // 8, "big")


def encode_size(size: int) -> bytes:
    """The shortest EBML variable-size integer for `size` (all-ones values are reserved)."""
    for length in range(1, 9):
        if size < (1 << (7 * length)) - 1:
            return ((1 << (7 * length)) | size).to_bytes(length, "big")
    raise MkvError(f"element too large: {size}")


def element(element_id: int, payload: bytes) -> bytes:
    return encode_id(element_id) + encode_size(len(payload)) + payload


def uint_element(element_id: int, value: int) -> bytes:
    return element(element_id, value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def string_element(element_id: int, value: str) -> bytes:
    return element(element_id, value.encode("utf-8"))


def ebml_header() -> bytes:
    """A Matroska EBML header (version 1, doc type matroska)."""
    return element(
        EBML,
        uint_element(EBML_VERSION, 1)
        + uint_element(EBML_READ_VERSION, 1)
        + uint_element(EBML_MAX_ID_LENGTH, 4)
        + uint_element(EBML_MAX_SIZE_LENGTH, 8)
        + string_element(DOC_TYPE, "matroska")
        + uint_element(DOC_TYPE_VERSION, 4)
        + uint_element(DOC_TYPE_READ_VERSION, 2),
    )


def segment_start() -> bytes:
    """A Segment header of unknown size: what live Matroska (and GetMedia) writes."""
    return encode_id(SEGMENT) + UNKNOWN_SIZE


def tags_element(tags: dict[str, str]) -> bytes:
    """A Tags element with one Tag holding one SimpleTag per name, as Kinesis Video writes them."""
    simple = b"".join(
        element(SIMPLE_TAG, string_element(TAG_NAME, name) + string_element(TAG_STRING, str(value))) for name, value in tags.items()
    )
    return element(TAGS, element(TAG, element(TARGETS, b"") + simple))


# ---------------------------------------------------------------------------------------- parsing


def read_vint(data: bytes, pos: int, keep_marker: bool = False) -> tuple[int | None, int]:
    """Decode the variable-size integer at `pos`: (value, length). Value None = unknown size."""
    if pos >= len(data):
        raise MkvError("truncated variable-size integer")
    first = data[pos]
    if first == 0:
        raise MkvError(f"invalid variable-size integer at byte {pos}")
    length = 9 - first.bit_length()
    if pos + length > len(data):
        raise MkvError("truncated variable-size integer")
    raw = int.from_bytes(data[pos : pos + length], "big")
    if keep_marker:
        return raw, length
    value = raw & ((1 << (7 * length)) - 1)
    if value == (1 << (7 * length)) - 1:
        return None, length
    return value, length


def read_uint(payload: bytes) -> int:
    return int.from_bytes(payload, "big") if payload else 0


def iter_children(payload: bytes) -> Iterator[tuple[int, bytes]]:
    """(id, payload) of each child in a master element's payload (children of known size)."""
    pos = 0
    while pos < len(payload):
        element_id, id_len = read_vint(payload, pos, keep_marker=True)
        size, size_len = read_vint(payload, pos + id_len)
        start = pos + id_len + size_len
        if size is None:
            size = len(payload) - start
        if start + size > len(payload):
            raise MkvError(f"element 0x{element_id:X} overruns its parent")
        yield element_id, payload[start : start + size]
        pos = start + size


def child(payload: bytes, element_id: int) -> bytes | None:
    return next((body for cid, body in iter_children(payload) if cid == element_id), None)


def parse_tags(payload: bytes) -> dict[str, str]:
    """All SimpleTag name -> string pairs in a Tags payload."""
    found: dict[str, str] = {}
    for tag_id, tag in iter_children(payload):
        if tag_id != TAG:
            continue
        for simple_id, simple in iter_children(tag):
            if simple_id == SIMPLE_TAG:
                name = child(simple, TAG_NAME)
                value = child(simple, TAG_STRING)
                if name is not None:
                    found[name.decode("utf-8", "replace")] = (value or b"").decode("utf-8", "replace")
    return found


def timecode_scale(info_payload: bytes) -> int:
    scale = child(info_payload, TIMECODE_SCALE)
    return read_uint(scale) if scale else DEFAULT_TIMECODE_SCALE


def cluster_timecode(cluster_payload: bytes) -> int:
    """The Cluster's Timecode, in timecode ticks."""
    for element_id, body in iter_children(cluster_payload):
        if element_id == TIMECODE:
            return read_uint(body)
    raise MkvError("cluster without a Timecode")


def video_track(tracks_payload: bytes) -> int | None:
    """The track number of the first video track in a Tracks payload; None when it has none.

    A camera with a microphone (the Kinesis Video producer SDK, kvssink) sends AAC blocks beside the
    H.264 ones in the same clusters: only the video track's blocks are frames."""
    for element_id, entry in iter_children(tracks_payload):
        if element_id != TRACK_ENTRY:
            continue
        kind, number = child(entry, TRACK_TYPE), child(entry, TRACK_NUMBER)
        if kind is not None and number is not None and read_uint(kind) == VIDEO_TRACK_TYPE:
            return read_uint(number)
    return None


def block_timecodes(cluster_payload: bytes, track: int | None = None) -> list[int]:
    """Each block's timecode relative to its cluster, in ticks, in stored order: of every track, or
    of `track` only (the blocks of other tracks, audio or metadata, are left out)."""
    found = []
    for element_id, body in iter_children(cluster_payload):
        if element_id == BLOCK_GROUP:
            body = child(body, BLOCK) or b""
        elif element_id != SIMPLE_BLOCK:
            continue
        number, track_len = read_vint(body, 0)
        if len(body) < track_len + 2:
            raise MkvError("truncated block")
        if track is None or number == track:
            found.append(int.from_bytes(body[track_len : track_len + 2], "big", signed=True))
    return found


def with_cluster_timecode(cluster_payload: bytes, timecode: int) -> bytes:
    """A complete Cluster element (known size) with its Timecode replaced; blocks are relative to it."""
    parts = []
    for element_id, body in iter_children(cluster_payload):
        if element_id == TIMECODE:
            parts.append(uint_element(TIMECODE, timecode))
        else:
            parts.append(element(element_id, body))
    return element(CLUSTER, b"".join(parts))


# -------------------------------------------------------------------------------- stream reading


@dataclass
class Element:
    id: int
    header: bytes  # id + size as on the wire
    body: bytes  # payload; for the Segment marker yielded by `iter_level1`, empty
    size: int | None  # None: unknown size

    @property
    def raw(self) -> bytes:
        return self.header + self.body


class Reader:
    """Pull reader of EBML element headers and payloads over a non-seekable byte stream."""

    def __init__(self, readable: BinaryIO, chunk_size: int = 65536):
        raw = getattr(readable, "_raw_stream", None)  # botocore StreamingBody -> its urllib3 response
        source = raw if raw is not None and hasattr(raw, "read1") else readable
        self._read = getattr(source, "read1", None) or source.read
        self._chunk = chunk_size
        self._buf = bytearray()
        self._pos = 0
        self.offset = 0  # bytes consumed so far
        self._eof = False

    def _fill(self, n: int) -> bool:
        """Make `n` unread bytes available; False if the stream ends first."""
        while len(self._buf) - self._pos < n:
            if self._eof:
                return False
            if self._pos:
                del self._buf[: self._pos]
                self._pos = 0
            data = self._read(max(self._chunk, n - len(self._buf)))
            if not data:
                self._eof = True
                return False
            self._buf += data
        return True

    def header(self) -> tuple[int, int | None, bytes] | None:
        """(id, size, header bytes) of the next element, consumed; None at a clean end of stream."""
        if not self._fill(1):
            return None
        id_len = 9 - self._buf[self._pos].bit_length()
        if id_len > 4 or not self._fill(id_len + 1):
            raise MkvError(f"invalid element id at byte {self.offset}")
        size_len = 9 - self._buf[self._pos + id_len].bit_length()
        if size_len > 8 or not self._fill(id_len + size_len):
            raise MkvError(f"invalid element size at byte {self.offset}")
        header = bytes(self._buf[self._pos : self._pos + id_len + size_len])
        element_id, _ = read_vint(header, 0, keep_marker=True)
        size, _ = read_vint(header, id_len)
        self._consume(len(header))
        return element_id, size, header

    def unread_header(self, header: bytes) -> None:
        self._buf[self._pos : self._pos] = header
        self.offset -= len(header)

    def take(self, n: int) -> bytes:
        if not self._fill(n):
            raise MkvError(f"stream ended inside an element (needed {n} bytes at byte {self.offset})")
        data = bytes(self._buf[self._pos : self._pos + n])
        self._consume(n)
        return data

    def _consume(self, n: int) -> None:
        self._pos += n
        self.offset += n


def iter_level1(readable: BinaryIO | Reader, on_start: Callable[[int], None] | None = None) -> Iterator[Element]:
    """The EBML headers, Segment starts and complete level-1 elements (Info, Tracks, Cluster, Tags...)
    of a stream of one or more concatenated Matroska files, in order.

    A Segment is yielded as a marker (header only) and its children follow. A level-1 element of
    unknown size (a live Cluster) ends where the next level-1 or top-level element starts.
    `on_start(id)` is called as soon as a level-1 element's header has arrived.
    """
    reader = readable if isinstance(readable, Reader) else Reader(readable)
    while True:
        head = reader.header()
        if head is None:
            return
        element_id, size, header = head
        if element_id == SEGMENT:
            yield Element(SEGMENT, header, b"", size)
            continue
        if element_id not in LEVEL1 and element_id != EBML:
            raise MkvError(f"unexpected element 0x{element_id:X} at byte {reader.offset - len(header)}")
        if on_start and element_id != EBML:
            on_start(element_id)
        if size is not None:
            yield Element(element_id, header, reader.take(size), size)
            continue
        parts = []
        while True:
            sub = reader.header()
            if sub is None:
                break
            sub_id, sub_size, sub_header = sub
            if sub_id in LEVEL1 or sub_id in TOP_LEVEL:
                reader.unread_header(sub_header)
                break
            if sub_size is None:
                raise MkvError(f"element 0x{sub_id:X} of unknown size inside 0x{element_id:X}")
            parts.append(sub_header + reader.take(sub_size))
        yield Element(element_id, header, b"".join(parts), None)


# ---------------------------------------------------------------------------------- fragments


@dataclass
class Fragment:
    """One fragment of a GetMedia body: a standalone Matroska file and its Kinesis Video tags."""

    data: bytes
    tags: dict[str, str] = field(default_factory=dict)
    cluster_timecode: int | None = None  # ms
    block_timecodes: list[int] = field(default_factory=list)  # ms, relative to the cluster: the video track's blocks (frames) only

    @property
    def fragment_number(self) -> str | None:
        return self.tags.get(FRAGMENT_NUMBER)

    @property
    def producer_timestamp(self) -> float | None:
        return _float(self.tags.get(PRODUCER_TIMESTAMP))

    @property
    def server_timestamp(self) -> float | None:
        return _float(self.tags.get(SERVER_TIMESTAMP))

    @property
    def millis_behind_now(self) -> int | None:
        value = self.tags.get(MILLIS_BEHIND_NOW)
        return int(value) if value not in (None, "") else None

    @property
    def continuation_token(self) -> str | None:
        return self.tags.get(CONTINUATION_TOKEN)

    @property
    def error_code(self) -> str | None:
        return self.tags.get(ERROR_CODE)

    @property
    def error_id(self) -> str | None:
        return self.tags.get(ERROR_ID)


def _float(value: str | None) -> float | None:
    return float(value) if value not in (None, "") else None


def iter_fragments(readable: BinaryIO) -> Iterator[Fragment]:
    """Split a GetMedia body into fragments, each yielded as soon as its trailing Tags arrive.

    A fragment whose tags carry an error code (the service's way to end a session on an error) is
    yielded as it is; the caller checks `fragment.error_code`. Its `block_timecodes` are those of
    the video track named in its Tracks (every block when Tracks names no video track).
    """
    parts: list[bytes] = []
    tags: dict[str, str] = {}
    scale = DEFAULT_TIMECODE_SCALE
    video: int | None = None
    timecode = None
    blocks: list[int] = []

    def fragment() -> Fragment:
        to_ms = scale / 1_000_000
        return Fragment(
            data=b"".join(parts),
            tags=dict(tags),
            cluster_timecode=None if timecode is None else round(timecode * to_ms),
            block_timecodes=[round(b * to_ms) for b in blocks],
        )

    last: Fragment | None = None
    for el in iter_level1(readable):
        if el.id == TAGS and not parts and last is not None:
            last.tags.update({k: v for k, v in parse_tags(el.body).items() if k.startswith(TAG_PREFIX)})
            last.data += el.raw
            continue
        if el.id == EBML:
            if timecode is not None or tags:
                yield fragment()
            parts, tags, timecode, blocks, last = [], {}, None, [], None
        parts.append(el.raw)
        if el.id == INFO:
            scale = timecode_scale(el.body)
        elif el.id == TRACKS:
            video = video_track(el.body)
        elif el.id == CLUSTER:
            timecode = cluster_timecode(el.body)
            blocks = block_timecodes(el.body, video)
        elif el.id == TAGS:
            tags.update({k: v for k, v in parse_tags(el.body).items() if k.startswith(TAG_PREFIX)})
            if timecode is not None or ERROR_CODE in tags:
                last = fragment()
                yield last
                parts, tags, timecode, blocks = [], {}, None, []
    if timecode is not None or tags:
        yield fragment()
