"""Kinesis Video Streams through GetMedia.

GetDataEndpoint(GET_MEDIA) gives the media endpoint; GetMedia returns one long streaming body,
a run of small standalone Matroska files, one per fragment. `worker.mkv.iter_fragments` splits it
(reading only the bytes that are there, so a fragment is handed over as soon as it has arrived)
and reads each fragment's tags: fragment number, producer and server timestamps, millis behind
now, continuation token. Each fragment is then decoded on its own with PyAV from its bytes.

Sampling decides before decoding where it can: a fragment none of whose frames a target-fps
sampler would keep (known from the block timecodes) is not decoded at all; otherwise every frame
is decoded (inter frames need their references) but only kept ones are converted to BGR.

Decoding per fragment is robust (a corrupt fragment costs that fragment only, the decoder never
waits on a socket, and every frame is tied to the tags of its own fragment), and its price is
latency: a frame is decoded once its whole fragment has arrived, so the added delay is bounded by
the fragment length, which is the producer's key-frame interval (typically 1-2 s).

Live or archive: started at NOW, frames are live (the pipeline may drop old ones when inference
falls behind). Started at EARLIEST or from a checkpoint, the archive is read without dropping
anything until the reader has to wait for the producer (a fragment took LIVE_EDGE_WAIT to arrive);
from then on frames are live.

Resuming: the continuation token of the last fragment read (or, failing that, the fragment number
or producer timestamp) is where a new GetMedia starts after a dropped connection or a restart, and
frames whose producer time is not after the last one delivered are skipped, so the start being
inclusive or exclusive does not matter.
"""

from __future__ import annotations

import io
import logging
import socket
import threading
import time
from collections.abc import Iterator

import av

from worker import aws, mkv
from worker.frames import FragmentEnd, Frame
from worker.metrics import Metrics
from worker.sampling import Sampler
from worker.sources.video import SourceError

log = logging.getLogger("kinase.worker.source")

LIVE_EDGE_WAIT = 0.25  # seconds the reader waited for a fragment: the producer, not the archive, sets the pace
RECONNECT_GIVE_UP = 300.0  # seconds of failing GetMedia calls before the worker gives up
FATAL_CODES = {"ResourceNotFoundException", "NotAuthorizedException", "AccessDeniedException", "InvalidArgumentException"}


def start_selector(start: str, resume: dict | None) -> dict:
    """Where GetMedia starts: after the checkpoint when there is one, else NOW or EARLIEST."""
    if resume and resume.get("continuation_token"):
        return {"StartSelectorType": "CONTINUATION_TOKEN", "ContinuationToken": resume["continuation_token"]}
    if resume and resume.get("producer_timestamp"):
        return {"StartSelectorType": "PRODUCER_TIMESTAMP", "StartTimestamp": float(resume["producer_timestamp"])}
    if resume and resume.get("fragment_number"):
        return {"StartSelectorType": "FRAGMENT_NUMBER", "AfterFragmentNumber": resume["fragment_number"]}
    return {"StartSelectorType": start}


def decode(data: bytes) -> Iterator[tuple[float, av.VideoFrame]]:
    """(pts in ms, frame) of every video frame of one fragment's standalone Matroska bytes."""
    with av.open(io.BytesIO(data), format="matroska", options={"probesize": "32", "analyzeduration": "0"}) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            if frame.pts is None:
                continue
            yield float(frame.pts * stream.time_base * 1000), frame


class KvsSource:
    def __init__(
        self,
        session,
        stream: str,
        *,
        start: str,
        resume: dict | None,
        sampler: Sampler,
        metrics: Metrics,
        stop: threading.Event,
        idle_exit: float = 0.0,
    ):
        self.session = session
        self.stream = stream
        self.uri = f"kvs://{stream}"
        self.selector = start_selector(start, resume)
        self.last_time = float((resume or {}).get("last_frame_time") or 0.0)
        self.live = start == "NOW" and not resume
        self.sampler = sampler
        self.metrics = metrics
        self.stop = stop
        self.idle_exit = idle_exit
        self.control = aws.client(session, "kinesisvideo")
        self._media = None
        self._body = None
        self.frame_index = 0

    def _media_client(self, refresh: bool = False):
        if self._media is None or refresh:
            endpoint = aws.retry(
                lambda: self.control.get_data_endpoint(StreamName=self.stream, APIName="GET_MEDIA")["DataEndpoint"],
                what=f"GetDataEndpoint for {self.stream}",
                give_up_after=RECONNECT_GIVE_UP,
            )
            read_timeout = min(self.idle_exit, 20.0) if self.idle_exit else 60.0
            self._media = aws.client(
                self.session,
                "kinesis-video-media",
                endpoint_url=endpoint,
                config=aws.Config(read_timeout=read_timeout, retries={"mode": "standard", "max_attempts": 2}),
            )
            log.info("media endpoint %s", endpoint)
        return self._media

    def __iter__(self) -> Iterator[Frame | FragmentEnd]:
        last_media = time.monotonic()
        failing_since: float | None = None
        attempt = 0
        refresh = False
        while not self.stop.is_set():
            try:
                media = self._media_client(refresh)
                log.info("GetMedia %s from %s", self.stream, self.selector)
                self._body = media.get_media(StreamName=self.stream, StartSelector=self.selector)["Payload"]
                fragments = mkv.iter_fragments(self._body)
                first = True
                while True:
                    asked = time.monotonic()
                    fragment = next(fragments, None)
                    if fragment is None or self.stop.is_set():
                        break
                    last_media = time.monotonic()
                    if not self.live and not first and last_media - asked >= LIVE_EDGE_WAIT:
                        self.live = True
                        log.info(
                            "caught up with the producer at fragment %s: from now on old frames are dropped if inference falls behind",
                            fragment.fragment_number,
                        )
                    first = False
                    failing_since, attempt = None, 0
                    yield from self._fragment(fragment)
                if self.stop.is_set():
                    return
                self._close_body()
                refresh = False
            except aws.FatalError as exc:
                raise SourceError(str(exc)) from None
            except Exception as exc:
                self._close_body()
                if self.stop.is_set():
                    return
                code = exc.response.get("Error", {}).get("Code", "") if isinstance(exc, aws.ClientError) else ""
                if code in FATAL_CODES:
                    raise SourceError(f"GetMedia on {self.stream} failed: {aws.describe(exc)}") from None
                failing_since = failing_since or time.monotonic()
                if time.monotonic() - failing_since > RECONNECT_GIVE_UP:
                    raise SourceError(f"GetMedia on {self.stream} failing for {RECONNECT_GIVE_UP:.0f}s: {aws.describe(exc)}") from None
                if isinstance(exc, mkv.MkvError):
                    self.metrics.count("CorruptMedia")
                if self._idle(last_media):
                    return
                attempt += 1
                refresh = isinstance(exc, (aws.ClientError, aws.EndpointConnectionError))
                self.metrics.count("Reconnects")
                log.warning("GetMedia stream interrupted (%s); reconnecting from %s", aws.describe(exc), self.selector)
                self.stop.wait(aws.backoff(attempt, base=0.2, cap=3.0))
                continue
            if self._idle(last_media):
                return
            self.stop.wait(0.2)  # the body ended cleanly: the stream has no new data yet; GetMedia is limited to 5 calls/s

    def _idle(self, last_media: float) -> bool:
        if self.idle_exit and time.monotonic() - last_media >= self.idle_exit:
            log.info("no new media on %s for %.0fs; stopping", self.stream, self.idle_exit)
            return True
        return False

    def _fragment(self, fragment: mkv.Fragment) -> Iterator[Frame | FragmentEnd]:
        number = fragment.fragment_number
        if fragment.continuation_token:
            self.selector = {"StartSelectorType": "CONTINUATION_TOKEN", "ContinuationToken": fragment.continuation_token}
        elif number:
            self.selector = {"StartSelectorType": "FRAGMENT_NUMBER", "AfterFragmentNumber": number}
        if fragment.error_code:
            log.warning("GetMedia error %s (%s) at fragment %s", fragment.error_code, fragment.error_id, number)
            return
        if not number or fragment.producer_timestamp is None:
            self.metrics.count("CorruptMedia")
            log.warning("fragment without number or producer timestamp skipped")
            return
        self.metrics.count("Fragments")
        if fragment.millis_behind_now is not None:
            self.metrics.gauge("MillisBehindNow", fragment.millis_behind_now)
        cluster_ms = float(fragment.cluster_timecode or 0)
        frames = 0
        last_time = self.last_time
        block_times = [fragment.producer_timestamp + offset / 1000.0 for offset in fragment.block_timecodes]
        if block_times and not self.sampler.wants_any([t for t in block_times if t > self.last_time + 1e-6]):
            self.metrics.count("FramesRead", len(block_times))
            self.frame_index += len(block_times)
            self.last_time = max(self.last_time, *block_times)
            log.debug("fragment %s: sampling wants none of its frames, not decoded", number)
            yield FragmentEnd(fragment=number, frames=len(block_times), checkpoint=self._position(fragment, self.last_time))
            return
        try:
            for position, (pts_ms, av_frame) in enumerate(decode(fragment.data)):
                frames += 1
                self.frame_index += 1
                self.metrics.count("FramesRead")
                frame_time = fragment.producer_timestamp + (pts_ms - cluster_ms) / 1000.0
                if frame_time <= self.last_time + 1e-6:
                    self.metrics.count("FramesSkipped")
                    continue
                last_time = max(last_time, frame_time)
                if not self.sampler.keep(frame_time):
                    continue
                self.metrics.count("FramesSampled")
                yield Frame(
                    image=av_frame.to_ndarray(format="bgr24"),
                    source={"type": "kvs", "uri": self.uri, "fragment_number": number, "frame_in_fragment": position},
                    frame_index=self.frame_index - 1,
                    frame_time=frame_time,
                    read_at=time.monotonic(),
                    fragment=number,
                    fragment_time=fragment.producer_timestamp,
                    live=self.live,
                    server_time=fragment.server_timestamp,
                    millis_behind_now=fragment.millis_behind_now,
                )
                if self.stop.is_set():
                    return
            if not frames and fragment.block_timecodes:
                self.metrics.count("CorruptMedia")
                log.warning("fragment %s: no frame could be decoded, skipped", number)
        except (av.error.FFmpegError, ValueError, IndexError) as exc:
            self.metrics.count("CorruptMedia")
            log.warning("fragment %s: undecodable after %d frames (%s), rest skipped", number, frames, exc)
        self.last_time = last_time
        yield FragmentEnd(fragment=number, frames=frames, checkpoint=self._position(fragment, last_time))

    @staticmethod
    def _position(fragment: mkv.Fragment, last_time: float) -> dict:
        return {
            "fragment_number": fragment.fragment_number,
            "producer_timestamp": fragment.producer_timestamp,
            "continuation_token": fragment.continuation_token,
            "last_frame_time": last_time,
        }

    def _close_body(self) -> None:
        body, self._body = self._body, None
        if body is not None:
            try:
                body.close()
            except Exception:  # closing a broken connection may fail again; nothing to do about it
                pass

    def close(self) -> None:
        """Called from another thread on shutdown: closing the body there would wait for the reader's
        blocked read (both hold the buffer's lock) until the stream sends more or ends, so the socket
        is shut down instead, which ends that read at once."""
        raw = getattr(self._body, "_raw_stream", None)
        sock = getattr(getattr(raw, "connection", None), "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:  # already closed by the other side
                pass
