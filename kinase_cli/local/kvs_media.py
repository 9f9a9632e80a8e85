"""PutMedia and GetMedia for the local Kinesis Video endpoint, with the service's wire formats.

PutMedia: a chunked Matroska body comes in (any number of clusters; each Cluster is a fragment);
acknowledgements go out as they happen, one JSON object per line:
`{"EventType": "BUFFERING"|"RECEIVED"|"PERSISTED"|"ERROR", "FragmentTimecode": ms,
"FragmentNumber": "...", "ErrorId": 4xxx, "ErrorCode": "..."}`. An ERROR ends the session. As the
service does (API_dataplane_PutMedia): one PutMedia connection per stream (a second one gets
ConnectionLimitExceededException), producer timestamps in the future are refused (4007
INVALID_PRODUCER_TIMESTAMP), and a session older than the maximum connection duration ends with
4003 MAX_CONNECTION_DURATION_REACHED, so long-running producers renew their session; more than five
fragments a second are throttled (read and acknowledged no faster).

GetMedia: a chunked run of standalone Matroska files, one per fragment: EBML header, Segment, Info,
Tracks, Tags (fragment number, server and producer timestamps), the Cluster, Tags (millis behind
now, continuation token). Cluster timecodes are absolute producer time in ms, as the service
returns them. Once caught up the response waits for new fragments and, like the service, holds
an idle connection open sending nothing (boto3 issue 3532) unless `media_idle_seconds` is set.
Like the service, it ends a GetMedia session after `max_session_seconds` (about 45 minutes; the
limits page has the stream token renewed every 45 minutes), at a fragment boundary, with the end of
the chunked body: a reader goes on with the last continuation token. `idle_reset_seconds` plays a
middlebox (NAT gateway, load balancer, firewall) that resets a connection idle for that long: the
connection is closed with a TCP RST, which the reader sees as "Connection reset by peer".
At most `getmedia_connections` (3, the limits page) are open per stream; more get
ConnectionLimitExceededException; more than `getmedia_calls_per_second` (5) calls in a second on a
stream get ClientLimitExceededException. A start the stream no longer holds (a fragment number or
continuation token older than the retention, or from another stream) is answered with the error
tags AWS_KINESISVIDEO_ERROR_CODE / _ERROR_ID 4000, and the response ends.

The selectors follow the StartSelector API reference: FRAGMENT_NUMBER starts with the chunk after
that fragment; the continuation token is the fragment number of the fragment it follows; a
*_TIMESTAMP selector starts at the first fragment that has not ended before the timestamp.
"""

from __future__ import annotations

import json
import logging
import select
import socket
import struct
import time
import uuid
from collections import deque

from kinase_cli.local.kvs_store import Fragment, Store, StoreError
from worker.sources import mkv

log = logging.getLogger("kinase.kvs")

API_NAMES = (
    "PUT_MEDIA",
    "GET_MEDIA",
    "LIST_FRAGMENTS",
    "GET_MEDIA_FOR_FRAGMENT_LIST",
    "GET_HLS_STREAMING_SESSION_URL",
    "GET_DASH_STREAMING_SESSION_URL",
    "GET_CLIP",
    "GET_IMAGES",
)
IDLE_SECONDS = 0.0  # GetMedia: end the response after this long without a new fragment (0: never, as the service)
MAX_SESSION_SECONDS = 45 * 60.0  # GetMedia sessions end after about 45 minutes (limits page: renew the stream token every 45 min)
IDLE_RESET_SECONDS = 0.0  # reset (TCP RST) a GetMedia connection that sent nothing for this long, as middleboxes do (0: never)
GETMEDIA_CONNECTIONS = 3  # concurrent GetMedia connections per stream (limits page)
GETMEDIA_CALLS_PER_SECOND = 5  # GetMedia calls per second per stream (API_dataplane_GetMedia)
PUT_FRAGMENTS_PER_SECOND = 5  # PutMedia: fragments per second per stream (API_dataplane_PutMedia); faster is throttled
PUT_MAX_SECONDS = 45 * 60.0  # PutMedia maximum connection duration (then 4003)
MAX_FUTURE_SECONDS = 10.0  # producer timestamps further ahead of the server clock are refused (4007)
PUT_IDLE_SECONDS = 30.0  # PutMedia: the service closes a session idle for 30 s
MAX_FRAGMENT_BYTES = 50 * 1024 * 1024
MAX_FRAGMENT_MS = 10_000

# PutMedia error acknowledgements (ErrorId -> ErrorCode), from the PutMedia API reference.
STREAM_READ_ERROR = 4000
MAX_FRAGMENT_SIZE_REACHED = 4001
MAX_FRAGMENT_DURATION_REACHED = 4002
MAX_CONNECTION_DURATION_REACHED = 4003
FRAGMENT_TIMECODE_LESSER_THAN_PREVIOUS = 4004
INVALID_MKV_DATA = 4006
INVALID_PRODUCER_TIMESTAMP = 4007
STREAM_NOT_ACTIVE = 4008
ERROR_CODES = {
    STREAM_READ_ERROR: "STREAM_READ_ERROR",
    MAX_FRAGMENT_SIZE_REACHED: "MAX_FRAGMENT_SIZE_REACHED",
    MAX_FRAGMENT_DURATION_REACHED: "MAX_FRAGMENT_DURATION_REACHED",
    MAX_CONNECTION_DURATION_REACHED: "MAX_CONNECTION_DURATION_REACHED",
    FRAGMENT_TIMECODE_LESSER_THAN_PREVIOUS: "FRAGMENT_TIMECODE_LESSER_THAN_PREVIOUS",
    INVALID_MKV_DATA: "INVALID_MKV_DATA",
    INVALID_PRODUCER_TIMESTAMP: "INVALID_PRODUCER_TIMESTAMP",
    STREAM_NOT_ACTIVE: "STREAM_NOT_ACTIVE",
}
# GetMedia error tags (AWS_KINESISVIDEO_ERROR_ID -> _ERROR_CODE), from the GetMedia API reference.
FRAGMENT_NOT_FOUND = 4000
GET_ERROR_CODES = {FRAGMENT_NOT_FOUND: "Requested fragment is not found"}
SELECTORS = ("FRAGMENT_NUMBER", "SERVER_TIMESTAMP", "PRODUCER_TIMESTAMP", "NOW", "EARLIEST", "CONTINUATION_TOKEN")


def request_id() -> str:
    return str(uuid.uuid4())


class PutError(Exception):
    def __init__(self, error_id: int, message: str, timecode: int | None = None):
        super().__init__(message)
        self.error_id = error_id
        self.timecode = timecode


class ChunkedBody:
    """The request body as a non-blocking-ish stream: `read1` returns what one chunk has ready."""

    def __init__(self, rfile, content_length: int | None):
        self.rfile = rfile
        self.chunked = content_length is None
        self.left = content_length or 0
        self.done = not self.chunked and not self.left

    def read1(self, n: int = 65536) -> bytes:
        if self.done:
            return b""
        if self.chunked and self.left == 0:
            line = self.rfile.readline(1024)
            if not line.strip():
                line = self.rfile.readline(1024)  # tolerate the CRLF ending the previous chunk
            if not line:
                raise PutError(STREAM_READ_ERROR, "connection closed inside the body")
            self.left = int(line.split(b";")[0].strip() or b"0", 16)
            if self.left == 0:
                while self.rfile.readline(1024).strip():
                    pass  # trailers
                self.done = True
                return b""
        data = self.rfile.read1(min(n, self.left))
        if not data:
            raise PutError(STREAM_READ_ERROR, "connection closed inside the body")
        self.left -= len(data)
        if not self.chunked and self.left == 0:
            self.done = True
        return data

    read = read1


class ChunkedWriter:
    """The response body in HTTP/1.1 chunks, each flushed at once."""

    def __init__(self, handler, content_type: str):
        self.wfile = handler.wfile
        handler.send_response(200)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Transfer-Encoding", "chunked")
        handler.send_header("x-amzn-RequestId", request_id())
        handler.end_headers()

    def write(self, data: bytes) -> None:
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

    def close(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


# ---------------------------------------------------------------------------------------- PutMedia


def put_media(handler) -> None:
    store: Store = handler.server.store
    headers = handler.headers
    handler.close_connection = True
    timecode_type = (headers.get("x-amzn-fragment-timecode-type") or "").upper()
    start = headers.get("x-amzn-producer-start-timestamp")
    try:
        stream = store.get(headers.get("x-amzn-stream-name"), headers.get("x-amzn-stream-arn"))
        if timecode_type not in ("ABSOLUTE", "RELATIVE"):
            raise StoreError("InvalidArgumentException", "x-amzn-fragment-timecode-type must be ABSOLUTE or RELATIVE.")
        try:
            start_seconds = float(start) if start else time.time()
        except ValueError:
            raise StoreError("InvalidArgumentException", "x-amzn-producer-start-timestamp is not a number.") from None
        store.open_producer(stream)
    except StoreError as exc:
        handler.send_error_json(exc.status, exc.code, exc.message)
        return
    released = []

    def release() -> None:
        if not released:
            released.append(True)
            store.close_producer(stream)

    try:
        _put_session(handler, store, stream, timecode_type, start_seconds, release)
    finally:
        release()


def _put_session(handler, store: Store, stream, timecode_type: str, start_seconds: float, release) -> None:
    """One PutMedia session; `release` frees the stream's producer slot before the response ends, so a
    producer that renews its session as soon as the response has ended is not refused."""
    headers = handler.headers
    length = headers.get("Content-Length")
    body = ChunkedBody(handler.rfile, None if "chunked" in (headers.get("Transfer-Encoding") or "").lower() else int(length or 0))
    handler.connection.settimeout(PUT_IDLE_SECONDS)
    out = ChunkedWriter(handler, "application/json")
    server = handler.server
    session = PutSession(
        store,
        stream,
        timecode_type,
        start_seconds,
        max_seconds=server.limits.put_max_seconds,
        max_future=server.limits.max_future_seconds,
        per_second=server.limits.put_fragments_per_second,
    )
    try:
        for el in mkv.iter_level1(body):
            for ack in session.element(el):
                out.write(json.dumps(ack, separators=(",", ":")).encode() + b"\n")
    except PutError as exc:
        out.write(_error_ack(exc))
    except mkv.MkvError as exc:
        out.write(_error_ack(PutError(INVALID_MKV_DATA, str(exc))))
    except (TimeoutError, OSError) as exc:
        log.info("PutMedia to %s ended: %s", stream.name, exc)
        return
    release()
    try:
        out.close()
    except OSError:
        pass
    log.info("PutMedia to %s: %d fragments", stream.name, session.count)


def _error_ack(exc: PutError) -> bytes:
    log.info("PutMedia error %d: %s", exc.error_id, exc)
    ack = {"EventType": "ERROR", "ErrorId": exc.error_id, "ErrorCode": ERROR_CODES.get(exc.error_id, "INTERNAL_ERROR")}
    if exc.timecode is not None:
        ack["FragmentTimecode"] = exc.timecode
    return json.dumps(ack, separators=(",", ":")).encode() + b"\n"


class PutSession:
    """What one PutMedia connection has seen: the current stream header and the last timecode."""

    def __init__(
        self,
        store: Store,
        stream,
        timecode_type: str,
        start_seconds: float,
        *,
        max_seconds: float = PUT_MAX_SECONDS,
        max_future: float = MAX_FUTURE_SECONDS,
        per_second: int = PUT_FRAGMENTS_PER_SECOND,
    ):
        self.store = store
        self.opened = time.monotonic()
        self.max_seconds = max_seconds
        self.max_future = max_future
        self.per_second = per_second
        self.recent: deque[float] = deque()  # monotonic times of the fragments of the last second
        self.stream = stream
        self.absolute = timecode_type == "ABSOLUTE"
        self.start_ms = start_seconds * 1000
        self.ebml = b""
        self.info = b""
        self.tracks = b""
        self.header = b""
        self.scale = mkv.DEFAULT_TIMECODE_SCALE
        self.last_timecode: int | None = None
        self.count = 0

    def element(self, el: mkv.Element) -> list[dict]:
        if el.id == mkv.EBML:
            self.ebml, self.info, self.tracks, self.header = el.raw, b"", b"", b""
        elif el.id == mkv.INFO:
            self.info, self.header = el.raw, b""
            self.scale = mkv.timecode_scale(el.body)
        elif el.id == mkv.TRACKS:
            self.tracks, self.header = el.raw, b""
        elif el.id == mkv.CLUSTER:
            return self.cluster(el)
        return []

    def _throttle(self) -> None:
        """At most `per_second` fragments a second: faster producers are read (and acknowledged) more slowly,
        as the service throttles them."""
        now = time.monotonic()
        while self.recent and self.recent[0] <= now - 1.0:
            self.recent.popleft()
        if len(self.recent) >= self.per_second:
            time.sleep(self.recent[0] + 1.0 - now)
            self.recent.popleft()
        self.recent.append(time.monotonic())

    def cluster(self, el: mkv.Element) -> list[dict]:
        if not (self.ebml and self.tracks):
            raise PutError(INVALID_MKV_DATA, "a Cluster came before the EBML header and Tracks")
        if self.stream.deleted:
            raise PutError(STREAM_NOT_ACTIVE, "the stream was deleted")
        if time.monotonic() - self.opened > self.max_seconds:
            raise PutError(MAX_CONNECTION_DURATION_REACHED, f"the session is older than {self.max_seconds:g}s")
        if not self.header:
            self.header = self.ebml + mkv.segment_start() + self.info + self.tracks
        to_ms = self.scale / 1_000_000
        timecode = round(mkv.cluster_timecode(el.body) * to_ms)
        blocks = mkv.block_timecodes(el.body)
        duration = round(max(blocks, default=0) * to_ms)
        if self.last_timecode is not None and timecode < self.last_timecode:
            raise PutError(FRAGMENT_TIMECODE_LESSER_THAN_PREVIOUS, f"timecode {timecode} < {self.last_timecode}", timecode)
        if len(el.raw) > MAX_FRAGMENT_BYTES:
            raise PutError(MAX_FRAGMENT_SIZE_REACHED, f"fragment of {len(el.raw)} bytes", timecode)
        if duration > MAX_FRAGMENT_MS:
            raise PutError(MAX_FRAGMENT_DURATION_REACHED, f"fragment of {duration} ms", timecode)
        if not blocks:
            raise PutError(INVALID_MKV_DATA, "a Cluster without frames", timecode)
        producer_ms = timecode if self.absolute else self.start_ms + timecode
        if producer_ms / 1000 > time.time() + self.max_future:
            raise PutError(INVALID_PRODUCER_TIMESTAMP, f"producer timestamp {producer_ms / 1000:.3f} is in the future", timecode)
        self.last_timecode = timecode
        self._throttle()
        number = self.store.next_fragment_number()
        acks = [{"EventType": kind, "FragmentTimecode": timecode, "FragmentNumber": number} for kind in ("BUFFERING", "RECEIVED")]
        fragment = Fragment(
            number=number,
            server_timestamp=time.time(),
            producer_timestamp=producer_ms / 1000,
            duration_ms=duration,
            header=self.header,
            cluster=mkv.with_cluster_timecode(el.body, round(producer_ms / to_ms)),
        )
        self.store.append(self.stream, fragment)
        self.count += 1
        acks.append({"EventType": "PERSISTED", "FragmentTimecode": timecode, "FragmentNumber": number})
        return acks


# ---------------------------------------------------------------------------------------- GetMedia


class FragmentNotFound(Exception):
    """The start selector names a fragment the stream does not hold (expired, or another stream's)."""


def get_media(handler, params: dict) -> None:
    store: Store = handler.server.store
    stream = store.get(params.get("StreamName"), params.get("StreamARN"))
    store.count_call(stream, handler.server.limits.getmedia_calls_per_second)
    try:
        first, cursor = _start(store, stream, params.get("StartSelector") or {})
    except FragmentNotFound as exc:
        out = ChunkedWriter(handler, "video/webm")
        out.write(_error_bytes(FRAGMENT_NOT_FOUND, str(exc)))
        out.close()
        return
    store.open_reader(stream, handler.server.limits.getmedia_connections)
    try:
        _stream_media(handler, store, stream, first, cursor)
    finally:
        store.close_reader(stream)


def _stream_media(handler, store: Store, stream, batch: list[Fragment], cursor: str) -> None:
    out = ChunkedWriter(handler, "video/webm")
    limits = handler.server.limits
    session_end = time.monotonic() + limits.max_session_seconds if limits.max_session_seconds else None
    try:
        while True:
            for fragment in batch:
                out.write(_fragment_bytes(fragment))
                cursor = fragment.number
                if session_end is not None and time.monotonic() >= session_end:
                    break
            if stream.deleted or (session_end is not None and time.monotonic() >= session_end):
                break
            batch = _wait(handler, store, stream, cursor, limits.media_idle_seconds, limits.idle_reset_seconds, session_end)
            if batch is None:
                handler.close_connection = True
                return
            if batch is RESET:
                _reset(handler, stream)
                return
            if not batch:
                break
        if session_end is not None and time.monotonic() >= session_end:
            log.info("GetMedia session on %s ended after %gs", stream.name, limits.max_session_seconds)
        out.close()
    except OSError as exc:
        log.info("GetMedia reader of %s went away: %s", stream.name, exc)
        handler.close_connection = True


RESET: list[Fragment] = []  # `_wait`'s answer when the connection was idle for `idle_reset_seconds`


def _wait(
    handler, store: Store, stream, cursor: str, idle: float, reset: float = 0.0, session_end: float | None = None
) -> list[Fragment] | None:
    """New fragments; [] once `idle` seconds passed without one (idle 0: wait for ever, sending
    nothing, as the service does) or the session is over; RESET once `reset` seconds passed without
    one; None when the reader has closed its connection meanwhile. Several fragments in one batch
    leave the session's end to the caller, which stops at a fragment boundary."""
    now = time.monotonic()
    deadlines = [d for d in (now + idle if idle else None, session_end) if d is not None]
    deadline = min(deadlines) if deadlines else None
    reset_at = now + reset if reset else None
    while True:
        now = time.monotonic()
        step = min([1.0] + [max(d - now, 0.0) for d in (deadline, reset_at) if d is not None])
        batch = store.wait_after(stream, cursor, step)
        if batch or stream.deleted or (deadline is not None and time.monotonic() >= deadline):
            return batch
        if reset_at is not None and time.monotonic() >= reset_at:
            return RESET
        if _peer_closed(handler.connection):
            log.info("GetMedia reader of %s closed its idle connection", stream.name)
            return None


def _reset(handler, stream) -> None:
    """Close the connection with a TCP RST (SO_LINGER 0), as a middlebox resets an idle connection."""
    log.info("GetMedia connection of %s idle for %gs: reset", stream.name, handler.server.limits.idle_reset_seconds)
    handler.close_connection = True
    sock = handler.connection
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    except OSError:
        pass


def _peer_closed(sock: socket.socket) -> bool:
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


def _start(store: Store, stream, selector: dict) -> tuple[list[Fragment], str]:
    """The retained fragments to send first, and the fragment number they follow."""
    kind = selector.get("StartSelectorType")
    if kind not in SELECTORS:
        raise StoreError("InvalidArgumentException", f"StartSelectorType must be one of {', '.join(SELECTORS)}.")
    retained = store.fragments_after(stream, None)
    tip = retained[-1].number if retained else ""
    if kind == "NOW":
        return [], tip
    if kind == "EARLIEST":
        return retained, ""
    if kind in ("FRAGMENT_NUMBER", "CONTINUATION_TOKEN"):
        field = "AfterFragmentNumber" if kind == "FRAGMENT_NUMBER" else "ContinuationToken"
        number = selector.get(field) or ""
        if not number.isdigit():
            raise StoreError("InvalidArgumentException", f"{field} is missing or not a fragment number.")
        if not store.retains(stream, number):
            raise FragmentNotFound(f"fragment {number} is not in stream {stream.name}")
        return [f for f in retained if f.number > number], number
    when = selector.get("StartTimestamp")
    if when is None:
        raise StoreError("InvalidArgumentException", "StartTimestamp is required for this StartSelectorType.")
    attr = "server_timestamp" if kind == "SERVER_TIMESTAMP" else "producer_timestamp"
    for i, f in enumerate(retained):
        if getattr(f, attr) + f.duration_ms / 1000 >= float(when):
            return retained[i:], tip
    return [], tip


def _error_bytes(error_id: int, detail: str) -> bytes:
    """What GetMedia sends when it stops on an error: a Matroska header and the error tags."""
    log.info("GetMedia error %d: %s", error_id, detail)
    tags = {mkv.ERROR_CODE: GET_ERROR_CODES.get(error_id, "Error"), mkv.ERROR_ID: str(error_id)}
    return mkv.ebml_header() + mkv.segment_start() + mkv.tags_element(tags)


def _fragment_bytes(fragment: Fragment) -> bytes:
    before = {
        mkv.FRAGMENT_NUMBER: fragment.number,
        mkv.SERVER_TIMESTAMP: f"{fragment.server_timestamp:.3f}",
        mkv.PRODUCER_TIMESTAMP: f"{fragment.producer_timestamp:.3f}",
    }
    behind = max(0, round((time.time() - fragment.server_timestamp) * 1000))
    after = {mkv.MILLIS_BEHIND_NOW: str(behind), mkv.CONTINUATION_TOKEN: fragment.number}
    return fragment.header + mkv.tags_element(before) + fragment.cluster + mkv.tags_element(after)
