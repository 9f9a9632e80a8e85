"""Feed a video file into a Kinesis Video stream: PyAV remux to live Matroska, PutMedia upload.

botocore has no PutMedia, so the request is built here: SigV4-signed by botocore's signer (as the
public producers do, the signature covers an empty payload since the body is streamed), sent with
chunked transfer encoding on a raw connection, while a thread reads the acknowledgements
(newline-separated JSON: BUFFERING, RECEIVED, PERSISTED, ERROR, IDLE) from the same connection.

The Matroska is written by PyAV's muxer with `live=1` (no seeking on the network sink) and `dash=1`
(one Cluster per key frame, i.e. one fragment per GOP; without it a live muxer cuts small clusters
that do not start on key frames). H.264 is copied; anything else is re-encoded to H.264 with a
one-second GOP. A camera file's audio goes along (copied, in the same clusters, as the producer
SDK sends a microphone's AAC) when Kinesis Video takes its codec; consumers read the video track's
blocks as frames. Uploads never exceed PutMedia's five fragments per second per stream.

Honest timestamps: the service refuses fragments stamped in the future (PutMedia error 4007), so a
fragment is never sent before its producer time. `--realtime` stamps the first frame now and paces
at the frame rate, like a camera; otherwise the media is stamped as if recorded just before the
upload (start = now - media duration, as the offline producer sample does) and sent at once.
Long uploads: the service ends a PutMedia connection after a maximum duration (error 4003), so the
session is renewed at a fragment boundary every SESSION_SECONDS (environment
KINASE_PUTMEDIA_SESSION_SECONDS): the old one is finished once all its fragments are persisted, the
new one starts with the same Matroska header and producer start time, and no fragment is lost or
sent twice.
"""

from __future__ import annotations

import io
import json
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from urllib.parse import urlsplit

from kinase_cli.ui.errors import KinaseError
from worker import callrecord
from worker.contract import iso

LIVE_MKV_OPTIONS = {
    "live": "1",
    "dash": "1",
    "cluster_size_limit": str(50 * 1024 * 1024),  # the PutMedia fragment limit
    "cluster_time_limit": "10000",  # ms; the PutMedia fragment duration limit
}
AUDIO_CODECS = ("aac", "pcm_alaw", "pcm_mulaw")  # what Kinesis Video's consumers take beside H.264 (GetClip: AAC or G.711)
ACK_WAIT_SECONDS = 60.0
SESSION_SECONDS = 40 * 60.0  # a PutMedia connection is renewed after this long (the service ends them after ~45 min)
MAX_FRAGMENTS_PER_SECOND = 5  # the PutMedia limit per stream; faster uploads are throttled
ERROR_HINTS = {  # PutMedia ErrorId -> what to do
    4001: "a GOP is over 50 MB: re-encode with more frequent key frames",
    4002: "key frames are more than 10 s apart: re-encode with a shorter GOP",
    4004: "the video's timestamps go backwards; re-encode it",
    4006: "the Matroska sent was not valid",
    4003: "the PutMedia session lasted longer than the service allows",
    4007: "a producer timestamp is in the future: check this machine's clock",
    4008: "the stream was deleted; check `kinase stream ls`",
}


# ------------------------------------------------------------------------------------------- remux


@dataclass
class RemuxStats:
    codec: str = ""
    reencoded: bool = False
    frames: int = 0
    key_frames: int = 0
    bytes: int = 0
    media_seconds: float = 0.0
    passes: int = 0
    done: bool = False  # the muxer is closed: every cluster has been written
    audio: str | None = None  # codec of the audio track sent beside the video
    audio_packets: int = 0
    audio_dropped: str | None = None  # the file's audio track that was not sent: its codec, or "--no-audio"

    @property
    def clusters_written(self) -> int:
        """A cluster is written when the next key frame starts the next one, or at the end."""
        return self.key_frames if self.done else max(self.key_frames - 1, 0)


class _Sink(io.RawIOBase):
    """A non-seekable file for PyAV's muxer that hands every write to `send`."""

    def __init__(self, send: Callable[[bytes], None]):
        self.send = send

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, data) -> int:
        self.send(bytes(data))
        return len(data)


def _open(path: Path):
    import av

    try:
        container = av.open(str(path))
    except FileNotFoundError:
        raise KinaseError(f"file not found: {path}") from None
    except av.error.FFmpegError as exc:
        raise KinaseError(f"cannot read video {path}: {exc.strerror or exc}") from None
    if not container.streams.video:
        container.close()
        raise KinaseError(f"no video stream in {path}")
    return container


def probe(path: Path) -> dict:
    """Codec, size and frame rate of the file's video; KinaseError when it cannot be read."""
    with _open(path) as container:
        video = container.streams.video[0]
        ctx = video.codec_context
        return {
            "codec": ctx.name,
            "width": ctx.width,
            "height": ctx.height,
            "fps": float(video.average_rate or video.guessed_rate or 0),
            "reencode": _needs_reencode(video),
        }


def media_seconds(path: Path) -> float:
    """The video's duration: the last frame's time plus one frame (from the packets, nothing decoded)."""
    with _open(path) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 25)
        start = stream.start_time or 0
        last = max((float((p.pts - start) * stream.time_base) for p in container.demux(stream) if p.pts is not None), default=0.0)
    return last + 1 / fps


def _audio_stream(container):
    """The file's first audio track when Kinesis Video takes its codec as it is, else None."""
    heard = container.streams.audio[0] if container.streams.audio else None
    return heard if heard is not None and heard.codec_context.name in AUDIO_CODECS else None


def _needs_reencode(stream) -> bool:
    extradata = stream.codec_context.extradata or b""
    return stream.codec_context.name != "h264" or not extradata or extradata[0] != 1  # not AVCC


def remux(  # noqa: C901 one demux loop over packets: video, audio, key frames, pacing and loops are its branches
    path: Path,
    send: Callable[[bytes], None],
    *,
    loops: int = 1,
    clock_start: float | None = None,
    stop: threading.Event | None = None,
    on_frame: Callable[[RemuxStats], None] | None = None,
    max_fragment_rate: float | None = None,
    audio: bool = True,
) -> RemuxStats:
    """Write `path` as one live Matroska stream to `send`; `loops` passes (0: until `stop`).

    `audio`: the file's first audio track goes along, copied, when Kinesis Video takes its codec
    (AUDIO_CODECS); another codec's track is left out and named in `stats.audio_dropped`.

    `clock_start` (epoch seconds of media time 0): no frame is written before its time on the wall
    clock. `max_fragment_rate` (fragments per second) holds back each key frame, which is what
    closes a cluster and so sends a fragment.
    """
    import av

    stop = stop or threading.Event()
    stats = RemuxStats()
    first = _open(path)
    source = first.streams.video[0]
    stats.codec = source.codec_context.name
    stats.reencoded = _needs_reencode(source)
    sound = _audio_stream(first) if audio else None
    if first.streams.audio and sound is None:
        stats.audio_dropped = first.streams.audio[0].codec_context.name if audio else "--no-audio"
    fps = float(source.average_rate or source.guessed_rate or 25)
    width, height = source.codec_context.width, source.codec_context.height

    def write(data: bytes) -> None:
        stats.bytes += len(data)
        send(data)

    # dash mode takes one track only: with audio, the muxer cuts a cluster at a video key frame once it holds 4 kB
    options = {k: v for k, v in LIVE_MKV_OPTIONS.items() if k != "dash"} if sound is not None else LIVE_MKV_OPTIONS
    out = av.open(_Sink(write), "w", format="matroska", options=options)
    if stats.reencoded:
        target = out.add_stream("libx264", rate=round(fps) or 25)
        target.width, target.height = width - width % 2, height - height % 2
        target.pix_fmt = "yuv420p"
        target.codec_context.time_base = Fraction(1, 1000)
        gop = str(max(1, round(fps)))
        target.options = {"g": gop, "keyint_min": gop, "x264-params": "scenecut=0", "bf": "0", "preset": "veryfast", "crf": "23"}
    else:
        target = out.add_stream_from_template(source)
    audio_target = None
    if sound is not None:
        stats.audio = sound.codec_context.name
        audio_target = out.add_stream_from_template(sound)
    first.close()

    offset = 0.0  # seconds added to this pass's timestamps, so they keep increasing across passes

    last_key = [0.0]

    def pace(t: float) -> None:
        if clock_start is not None:
            delay = clock_start + t - time.time()
            if delay > 0:
                stop.wait(delay)

    def mux(packet) -> None:
        if packet.is_keyframe and packet.stream.type == "video":  # a video key frame starts a cluster (audio packets all are key frames)
            if max_fragment_rate and stats.key_frames:
                delay = last_key[0] + 1 / max_fragment_rate - time.monotonic()
                if delay > 0:
                    stop.wait(delay)
            last_key[0] = time.monotonic()
            stats.key_frames += 1
        out.mux(packet)

    def copy(packet, into, start: int, tb) -> float:
        """Mux a packet as it is, shifted by this pass's offset; its time in seconds."""
        t = float((packet.pts - start) * tb) + offset
        pace(t)
        shift = round(offset / tb) - start
        packet.pts += shift
        packet.dts = (packet.dts if packet.dts is not None else packet.pts - shift) + shift
        packet.stream = into
        mux(packet)
        return t

    heard_until = [None]  # the last audio packet's time: a pass's audio may outlast its video (and AAC starts early)

    def copy_audio(packet, heard) -> None:
        t = float((packet.pts - (heard.start_time or 0)) * heard.time_base) + offset
        if heard_until[0] is not None and t <= heard_until[0]:
            return
        heard_until[0] = t
        copy(packet, audio_target, heard.start_time or 0, heard.time_base)
        stats.audio_packets += 1

    try:
        while not stop.is_set() and (loops == 0 or stats.passes < loops):
            container = _open(path)
            stream = container.streams.video[0]
            tb = stream.time_base
            start = stream.start_time or 0
            heard = container.streams.audio[0] if audio_target is not None else None
            pass_end = 0.0
            try:
                for packet in container.demux(*([stream, heard] if heard is not None else [stream])):
                    if stop.is_set():
                        break
                    if packet.stream is heard:
                        if packet.pts is not None and packet.size:
                            copy_audio(packet, heard)
                        continue
                    if stats.reencoded:
                        for frame in packet.decode():
                            if frame.pts is None:
                                continue
                            t = float((frame.pts - start) * tb) + offset
                            pace(t)
                            image = frame.reformat(width=target.width, height=target.height, format="yuv420p")
                            image.pts, image.time_base = round(t * 1000), Fraction(1, 1000)
                            image.pict_type = 0  # not the source's I-frames: the encoder's own one-second GOP
                            for encoded in target.encode(image):
                                mux(encoded)
                            stats.frames += 1
                            pass_end = max(pass_end, t - offset + 1 / fps)
                            if on_frame:
                                on_frame(stats)
                        continue
                    if packet.pts is None or packet.size == 0:
                        continue
                    t = copy(packet, target, start, tb)
                    stats.frames += 1
                    pass_end = max(pass_end, t - offset + 1 / fps)
                    if on_frame:
                        on_frame(stats)
            except av.error.FFmpegError as exc:
                raise KinaseError(f"cannot read video {path}: {exc.strerror or exc}") from None
            finally:
                container.close()
            stats.passes += 1
            offset += pass_end
            stats.media_seconds = offset
        if stats.reencoded:
            for packet in target.encode(None):
                mux(packet)
    except BaseException:
        try:
            out.close()
        except Exception:  # the sink failing again: the first error is the one to report
            pass
        raise
    out.close()
    stats.done = True
    if stats.frames == 0:
        raise KinaseError(f"no video frames could be read from {path}")
    return stats


# ---------------------------------------------------------------------------------------- PutMedia


@dataclass
class AckStats:
    events: dict[str, int] = field(default_factory=dict)
    persisted: list[str] = field(default_factory=list)  # fragment numbers, in order
    error: dict | None = None
    http_error: str | None = None

    def count(self, kind: str) -> int:
        return self.events.get(kind, 0)


class PutMediaSession:
    """One PutMedia request: chunked body out, acknowledgements in (on a thread)."""

    def __init__(self, endpoint: str, stream_name: str, credentials, region: str, start_timestamp: float, acks: AckStats | None = None):
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        url = endpoint.rstrip("/") + "/putMedia"
        parts = urlsplit(url)
        host = parts.hostname or "localhost"
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        request = AWSRequest(
            method="POST",
            url=url,
            data=b"",
            headers={
                "Host": parts.netloc if parts.port else host,
                "x-amzn-stream-name": stream_name,
                "x-amzn-fragment-timecode-type": "RELATIVE",
                "x-amzn-producer-start-timestamp": f"{start_timestamp:.3f}",
                "Accept": "application/json",
            },
        )
        SigV4Auth(credentials, "kinesisvideo", region).add_auth(request)
        callrecord.record_call("cli", "kinesisvideo", "PutMedia", region, {"StreamName": stream_name})
        head = [f"POST {parts.path} HTTP/1.1"]
        head += [f"{name}: {value}" for name, value in request.headers.items()]
        head += ["Transfer-Encoding: chunked", "Connection: close", "", ""]
        try:
            sock = socket.create_connection((host, port), timeout=30)
            if tls:
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
            sock.sendall("\r\n".join(head).encode())
        except OSError as exc:
            raise KinaseError(f"cannot reach the Kinesis Video endpoint {endpoint}: {exc}") from None
        self.sock = sock
        self.opened = time.monotonic()
        self.acks = acks or AckStats()  # shared by the sessions of one upload
        self.base = len(self.acks.persisted)
        self.lock = threading.Lock()
        self.failed = threading.Event()
        self.closing = False
        self.reader = threading.Thread(target=self._read_acks, name="putmedia-acks", daemon=True)
        self.reader.start()

    def send(self, data: bytes) -> None:
        if self.failed.is_set():
            raise self.error()
        try:
            self.sock.sendall(b"%x\r\n%s\r\n" % (len(data), data))
        except OSError as exc:
            self.reader.join(5)
            if self.failed.is_set():
                raise self.error() from None
            raise KinaseError(f"PutMedia connection lost: {exc}") from None

    def finish(self, expected: int | None = None, until_closed: bool = False) -> AckStats:
        """End the body; wait until the service closes the response or (unless `until_closed`) `expected`
        fragments of this session persisted."""
        try:
            self.sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass
        deadline = time.monotonic() + ACK_WAIT_SECONDS
        while self.reader.is_alive() and time.monotonic() < deadline:
            if not until_closed and expected is not None and len(self.acks.persisted) - self.base >= expected:
                break
            self.reader.join(0.05)
        self.closing = True
        self.sock.close()
        if self.failed.is_set():
            raise self.error()
        return self.acks

    def error(self) -> KinaseError:
        if self.acks.http_error:
            return KinaseError(self.acks.http_error)
        err = self.acks.error or {}
        where = f" at fragment timecode {err['FragmentTimecode']}" if "FragmentTimecode" in err else ""
        name = f" {err['ErrorCode']}" if err.get("ErrorCode") else ""
        return KinaseError(f"PutMedia failed{where}: error {err.get('ErrorId', '?')}{name}", ERROR_HINTS.get(err.get("ErrorId")))

    def _read_acks(self) -> None:
        import http.client  # here, not at the top: it imports the email package, a tenth of `kinase --help`'s start-up

        response = http.client.HTTPResponse(self.sock)
        try:
            response.begin()
            if response.status != 200:
                body = response.read()
                self.acks.http_error = _http_error(response, body)
                self.failed.set()
                return
            self.sock.settimeout(None)
            for line in response:
                line = line.strip()
                if not line:
                    continue
                ack = json.loads(line)
                kind = ack.get("EventType", "?")
                with self.lock:
                    self.acks.events[kind] = self.acks.count(kind) + 1
                    if kind == "PERSISTED":
                        self.acks.persisted.append(ack.get("FragmentNumber"))
                    elif kind == "ERROR":
                        self.acks.error = ack
                        self.failed.set()
        except (OSError, http.client.HTTPException, ValueError) as exc:
            if not (self.closing or self.failed.is_set()):
                self.acks.http_error = f"PutMedia connection failed: {exc}"
                self.failed.set()


def _http_error(response, body: bytes) -> str:
    code = (response.getheader("x-amzn-ErrorType") or "").split(":")[0]
    try:
        message = json.loads(body).get("Message") or json.loads(body).get("message") or ""
    except ValueError:
        message = body.decode(errors="replace")[:200]
    return f"{code or response.status} in PutMedia: {message}".strip()


# ---------------------------------------------------------------------------------------- the whole


@dataclass
class PutResult:
    stream: str
    file: str
    remux: RemuxStats
    acks: AckStats
    producer_start_timestamp: float
    elapsed_seconds: float
    sessions: int = 1
    fragments: int = 0  # clusters sent (one per GOP; with audio, a GOP under 4 kB shares the next one's)

    def summary(self) -> dict:
        persisted = self.acks.persisted
        return {
            "stream": self.stream,
            "file": self.file,
            "codec": self.remux.codec,
            "reencoded": self.remux.reencoded,
            "passes": self.remux.passes,
            "frames": self.remux.frames,
            "fragments": self.fragments,
            "audio": self.remux.audio,
            "audio_dropped": self.remux.audio_dropped,
            "persisted": len(persisted),
            "acks": dict(sorted(self.acks.events.items())),
            "bytes": self.remux.bytes,
            "media_seconds": round(self.remux.media_seconds, 3),
            "elapsed_seconds": round(self.elapsed_seconds, 3),
            "producer_start_at": iso(self.producer_start_timestamp),
            "sessions": self.sessions,
            "first_fragment_number": persisted[0] if persisted else None,
            "last_fragment_number": persisted[-1] if persisted else None,
        }


def data_endpoint(kvs_client, stream_name: str, api: str) -> str:
    return kvs_client.get_data_endpoint(StreamName=stream_name, APIName=api)["DataEndpoint"]


class _Clusters:
    """Splits the muxer's output into the Matroska header (everything before the first Cluster) and
    whole Clusters, so that a PutMedia session can be renewed between two fragments."""

    def __init__(self, on_header: Callable[[bytes], None], on_cluster: Callable[[bytes], None]):
        from worker.sources import mkv

        self.mkv = mkv
        self.on_header, self.on_cluster = on_header, on_cluster
        self.buf = bytearray()
        self.header = bytearray()
        self.in_clusters = False

    def write(self, data: bytes) -> None:
        self.buf += data
        mkv = self.mkv
        while self.buf:
            try:
                element_id, id_len = mkv.read_vint(self.buf, 0, keep_marker=True)
                size, size_len = mkv.read_vint(self.buf, id_len)
            except mkv.MkvError:
                return  # the element header has not fully arrived
            if element_id == mkv.SEGMENT or size is None:
                end = id_len + size_len  # the Segment (live: unknown size) is a header; its children follow
            else:
                end = id_len + size_len + size
            if len(self.buf) < end:
                return
            element, self.buf = bytes(self.buf[:end]), self.buf[end:]
            if element_id == mkv.CLUSTER:
                if not self.in_clusters:
                    self.in_clusters = True
                    self.on_header(bytes(self.header))
                self.on_cluster(element)
            elif self.in_clusters:
                self.on_cluster(element)  # anything after the clusters (none in live mode) goes with them
            else:
                self.header += element


class _Uploader:
    """The PutMedia sessions of one upload: renewed every `session_seconds`, at a fragment boundary."""

    def __init__(self, open_session: Callable[[AckStats], PutMediaSession], session_seconds: float):
        self.open_session = open_session
        self.session_seconds = session_seconds
        self.acks = AckStats()
        self.session = open_session(self.acks)
        self.sessions = 1
        self.header = b""
        self.sent = 0  # clusters sent on the current session
        self.total = 0  # clusters sent, all sessions together: the fragments the service must persist
        self.clusters = _Clusters(self._header, self._cluster)

    def _header(self, header: bytes) -> None:
        self.header = header
        self.session.send(header)

    def _cluster(self, cluster: bytes) -> None:
        if self.sent and time.monotonic() - self.session.opened >= self.session_seconds:
            self.session.finish(expected=self.sent, until_closed=True)  # one PutMedia connection per stream: the old one must be over
            if len(self.acks.persisted) - self.session.base < self.sent:
                raise KinaseError(
                    f"PutMedia session ended with {self.sent - (len(self.acks.persisted) - self.session.base)} fragments unacknowledged"
                )
            self.session = self.open_session(self.acks)
            self.sessions += 1
            self.sent = 0
            self.session.send(self.header)
        self.session.send(cluster)
        self.sent += 1
        self.total += 1

    def finish(self) -> AckStats:
        if self.clusters.buf:
            self.session.send(bytes(self.clusters.buf))
        self.session.finish(expected=self.sent)
        return self.acks


def session_seconds() -> float:
    raw = os.environ.get("KINASE_PUTMEDIA_SESSION_SECONDS", "").strip()
    try:
        return float(raw) if raw else SESSION_SECONDS
    except ValueError:
        raise KinaseError(f"KINASE_PUTMEDIA_SESSION_SECONDS={raw!r} is not a number") from None


def put_file(
    target,
    path: Path,
    stream_name: str,
    *,
    loops: int = 1,
    realtime: bool = False,
    stop: threading.Event | None = None,
    on_progress: Callable[[RemuxStats, AckStats], None] | None = None,
    audio: bool = True,
) -> PutResult:
    """Upload `path` to `stream_name` with PutMedia; raise KinaseError unless every fragment persisted.

    No fragment is stamped in the future: with `realtime` the first frame is stamped now and frames
    are sent at their pace; otherwise the media is stamped to end now (start = now - duration of
    all passes) and sent as fast as PutMedia takes it (a loop without end is paced past its first
    pass).
    """
    probe(path)  # an unreadable file fails before anything is sent
    renew_after = session_seconds()
    control = target.client("kinesisvideo")
    credentials = target.session.get_credentials()
    if credentials is None:
        raise KinaseError("no AWS credentials found", "run `aws configure`, pass --profile, or use --local")
    frozen = credentials.get_frozen_credentials()
    started = time.monotonic()
    producer_start = time.time() if realtime else time.time() - media_seconds(path) * max(loops, 1)
    uploader = _Uploader(
        # each session asks for the data endpoint again, as the limits page advises about every 45 minutes
        lambda acks: PutMediaSession(
            data_endpoint(control, stream_name, "PUT_MEDIA"), stream_name, frozen, target.region_name, producer_start, acks=acks
        ),
        renew_after,
    )
    stats = remux(
        path,
        uploader.clusters.write,
        loops=loops,
        clock_start=producer_start,
        stop=stop,
        max_fragment_rate=MAX_FRAGMENTS_PER_SECOND,
        audio=audio,
        on_frame=(lambda s: on_progress(s, uploader.acks)) if on_progress else None,
    )
    acks = uploader.finish()
    if on_progress:
        on_progress(stats, acks)
    if len(acks.persisted) < uploader.total:
        raise KinaseError(
            f"only {len(acks.persisted)} of {uploader.total} fragments were acknowledged PERSISTED",
            "check the stream with `kinase stream describe`",
        )
    return PutResult(stream_name, str(path), stats, acks, producer_start, time.monotonic() - started, uploader.sessions, uploader.total)
