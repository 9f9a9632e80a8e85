"""Kinesis Video Streams through GetMedia.

GetDataEndpoint(GET_MEDIA) gives the media endpoint; GetMedia returns one long streaming body,
a run of small standalone Matroska files, one per fragment. `worker.sources.mkv.iter_fragments` splits it
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

Resuming: the continuation token of the last fragment read (or, for a fragment only partly
handled, its server timestamp) is where a new GetMedia starts after a dropped connection or a
restart. Frames are recognised by position (`worker.frames.Watermark`: fragment number and offset
in the fragment), never by producer time, so a frame at a position already handled is not done
again (counted as FramesDeduplicated) whether the start is inclusive or exclusive, and frames
whose producer clock jumped back are still processed.

Idle is not failure: a connection that was open and then sent nothing until the read timeout, was
reset (a middlebox dropping idle connections) or ended (the service ends GetMedia sessions) is
renewed from the position reached; only consecutive GetMedia calls that fail count towards
giving up.

Accounting: every frame read here ends as sampled out or corrupt, or goes on to the pipeline as a
Frame (see worker.metrics.OUTCOMES). Frames are the video track's blocks only: a camera's audio
blocks in the same clusters are neither read nor counted, and positions count video frames.
"""

from __future__ import annotations

import io
import logging
import socket
import threading
import time
from collections.abc import Iterator

import av

from worker import aws
from worker.frames import FragmentEnd, Frame, Watermark
from worker.metrics import Metrics
from worker.retry import delay, error_code
from worker.settings import var
from worker.sources import incarnation as incarnations
from worker.sources import mkv
from worker.sources.errors import SourceError
from worker.sources.kinds import kvs_source
from worker.sources.sampling import Sampler

log = logging.getLogger("kinase.worker.source")

LIVE_EDGE_WAIT = 0.25  # seconds the reader waited for a fragment: the producer, not the archive, sets the pace
READ_TIMEOUT = 60.0  # seconds without a byte before an open GetMedia connection counts as idle and is renewed
GIVE_UP_AFTER = 300.0  # seconds of failing GetMedia calls (errors, never idleness) before the worker gives up
MAX_LAG = 30.0  # seconds a backlog read after a restart may be behind live before the reader jumps to the live edge
BULK_PACE = 0.8  # fragments arriving faster than this fraction of their duration are an upload in bulk, not a live camera
MIN_CALL_INTERVAL = 0.25  # GetMedia allows 5 calls per second per stream (API_dataplane_GetMedia): keep under it
CLOCK_MARGIN = 2.0  # seconds our clock may run ahead of the service's (Fargate's is NTP-synced)
RETRY_MIN_WAIT, RETRY_MAX_WAIT = 0.5, 15.0  # backoff between failing GetMedia calls
FATAL_CODES = {"ResourceNotFoundException", "NotAuthorizedException", "AccessDeniedException", "InvalidArgumentException"}
FRAGMENT_NOT_FOUND = "4000"  # GetMedia error tag: the requested fragment is not in the stream
KMS_ERRORS = {str(code) for code in range(4500, 4507)}  # GetMedia error tags: the stream's KMS key cannot be used


class ErrorTag(Exception):
    """GetMedia stopped with AWS_KINESISVIDEO_ERROR_ID / _ERROR_CODE tags in the body."""

    def __init__(self, error_id: str, code: str):
        super().__init__(f"GetMedia error {error_id} ({code})")
        self.error_id, self.code = error_id, code


def is_read_timeout(exc: BaseException) -> bool:
    """No byte arrived within the read timeout (urllib3's or botocore's ReadTimeoutError, a socket timeout)."""
    return isinstance(exc, TimeoutError) or any(cls.__name__ == "ReadTimeoutError" for cls in type(exc).__mro__)


def is_connection_end(exc: BaseException) -> bool:
    """The connection of a body being read was reset or cut (urllib3's ProtocolError, botocore's
    ResponseStreamingError, a socket error), as opposed to what the service said (error tags) or sent (media)."""
    if isinstance(exc, (ErrorTag, mkv.MkvError)):
        return False
    names = {cls.__name__ for cls in type(exc).__mro__}
    return isinstance(exc, OSError) or bool(names & {"ProtocolError", "ResponseStreamingError", "IncompleteRead", "HTTPException"})


def _duration(fragment: mkv.Fragment) -> float:
    """A fragment's duration in seconds, from its block timecodes (one frame interval past the last)."""
    blocks = fragment.block_timecodes
    if len(blocks) < 2:
        return 1.0
    return (max(blocks) - min(blocks)) / 1000 * len(blocks) / (len(blocks) - 1)


def start_selector(start: str, resume: dict | None) -> dict:
    """Where GetMedia starts: after the checkpoint when there is one, else NOW or EARLIEST.

    A checkpoint of a fragment only partly handled (`next_offset` set) restarts at that fragment;
    the frames already handled in it are recognised by position. Never by producer timestamp: a
    camera's clock is data, not a position."""
    if resume and resume.get("continuation_token") and resume.get("next_offset") is None:
        return {"StartSelectorType": "CONTINUATION_TOKEN", "ContinuationToken": resume["continuation_token"]}
    if resume and resume.get("next_offset") is not None and resume.get("server_timestamp"):
        # FRAGMENT_NUMBER starts after the fragment (API reference); the server timestamp starts at it.
        return {"StartSelectorType": "SERVER_TIMESTAMP", "StartTimestamp": float(resume["server_timestamp"])}
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
        incarnation: str | None = None,
        max_lag: float = MAX_LAG,
        read_timeout: float = READ_TIMEOUT,
        give_up_after: float = GIVE_UP_AFTER,
    ):
        self.session = session
        self.stream = stream
        self.uri = kvs_source(stream)
        self.selector = start_selector(start, resume)
        self.seen = Watermark.from_checkpoint(resume)
        self.incarnation = getattr(incarnation, "arn", incarnation)  # an Incarnation or its ARN
        self.live = start == "NOW" and not resume
        self.sampler = sampler
        self.metrics = metrics
        self.stop = stop
        self.idle_exit = idle_exit
        self.start = start
        self.max_lag = max_lag
        self.bounded = bool(resume)  # resumed from a checkpoint: the backlog may not stay behind live beyond max_lag
        self.read_timeout = read_timeout
        self.give_up_after = give_up_after
        self.set_aside = False  # GetMedia answered 4000 for the checkpoint's position
        self._pending_gap: dict | None = None
        self.idle_since: float | None = None
        self.last_media = time.monotonic()
        self._last_call = 0.0
        self._previous_arrival: tuple[float, float] | None = None  # (server timestamp, duration) of the last fragment read
        self.fragment_live = self.live
        self._bulk_by_pace = False
        self.control = aws.client(session, "kinesisvideo")
        self._media = None
        self._body = None
        self.frame_index = 0

    def _media_client(self, refresh: bool = False):
        if self._media is None or refresh:
            endpoint = aws.retry(
                lambda: self.control.get_data_endpoint(StreamName=self.stream, APIName="GET_MEDIA")["DataEndpoint"],
                what=f"GetDataEndpoint for {self.stream}",
                give_up_after=self.give_up_after,
            )
            read_timeout = min(self.idle_exit, self.read_timeout) if self.idle_exit else self.read_timeout
            self._media = aws.client(
                self.session,
                "kinesis-video-media",
                endpoint_url=endpoint,
                config=aws.Config(read_timeout=read_timeout, retries={"mode": "standard", "max_attempts": 2}),
            )
            log.info("media endpoint %s", endpoint)
        return self._media

    def _describe(self) -> str:
        """The stream incarnation: its ARN, which ends in its creation time (DescribeStream)."""
        return incarnations.describe(self.session, self.stream).arn

    def __iter__(self) -> Iterator[Frame | FragmentEnd]:
        try:
            yield from self._read()
        finally:
            self._report_gap(None)

    def _read(self) -> Iterator[Frame | FragmentEnd]:  # noqa: C901 GetMedia's retry loop: resume, refresh, errors, gaps, pacing in one place
        if self.incarnation is None:
            self.incarnation = self._describe()
        self.last_media = time.monotonic()
        failing_since: float | None = None
        attempt = 0
        refresh = False
        while not self.stop.is_set():
            self._pace_calls()
            in_body = False
            connected_at = time.monotonic()
            try:
                media = self._media_client(refresh)
                log.log(logging.DEBUG if self.idle_since is not None else logging.INFO, "GetMedia %s from %s", self.stream, self.selector)
                asked_at = time.time()
                self._body = media.get_media(StreamName=self.stream, StartSelector=self.selector)["Payload"]
                in_body = True
                if self.selector["StartSelectorType"] == "NOW":
                    # A reconnect from NOW would skip what arrived while reconnecting (an idle stream's connection is
                    # renewed every read timeout): it goes on from when this connection was asked for instead.
                    self.selector = {"StartSelectorType": "SERVER_TIMESTAMP", "StartTimestamp": asked_at - CLOCK_MARGIN}
                fragments = mkv.iter_fragments(self._body)
                first = True
                while True:
                    asked = time.monotonic()
                    fragment = next(fragments, None)
                    if fragment is None or self.stop.is_set():
                        break
                    if fragment.error_id or fragment.error_code:
                        raise ErrorTag(fragment.error_id or "", fragment.error_code or "")
                    now = time.monotonic()
                    if self.idle_since is not None:
                        log.info("media again on %s after %.0fs idle", self.stream, now - self.idle_since)
                        self.idle_since = None
                    self.last_media = now
                    failing_since, attempt = None, 0
                    if not self.live and not first and now - asked >= LIVE_EDGE_WAIT:
                        self.live = True
                        log.info(
                            "caught up with the producer at fragment %s: from now on old frames are dropped if inference falls behind",
                            fragment.fragment_number,
                        )
                    first = False
                    if self._too_far_behind(fragment):
                        break
                    self._report_gap(fragment)
                    self.fragment_live = self.live and not self._uploaded_in_bulk(fragment)
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
                if in_body and is_read_timeout(exc):
                    failing_since, attempt = None, 0  # the service held the connection: idle, not failing
                    self._went_idle()
                    if self._idle_exit_due():
                        return
                    continue
                if in_body and is_connection_end(exc):
                    # The call succeeded and its connection was then reset or cut (a middlebox resetting idle
                    # connections, a session the service ended): reconnect from the position reached, not a failure.
                    failing_since, attempt = None, 0
                    self.metrics.count("Reconnects")
                    if self.last_media < connected_at:
                        self._went_idle()
                        log.debug(
                            "idle GetMedia connection on %s ended (%s); reconnecting from %s", self.stream, aws.describe(exc), self.selector
                        )
                    else:
                        log.info(
                            "GetMedia connection on %s ended (%s); reconnecting from %s", self.stream, aws.describe(exc), self.selector
                        )
                    if self._idle_exit_due():
                        return
                    continue
                if isinstance(exc, ErrorTag) and exc.error_id == FRAGMENT_NOT_FOUND:
                    self._set_aside(exc)
                elif isinstance(exc, ErrorTag) and exc.error_id in KMS_ERRORS:
                    raise SourceError(
                        f"GetMedia on {self.stream}: KMS error {exc.error_id} ({exc.code}): check the stream's KMS key and the task role's access to it"
                    ) from None
                code = error_code(exc)
                if code in FATAL_CODES:
                    raise SourceError(f"GetMedia on {self.stream} failed: {aws.describe(exc)}") from None
                failing_since = failing_since or time.monotonic()
                if time.monotonic() - failing_since > self.give_up_after:
                    raise SourceError(f"GetMedia on {self.stream} failing for {self.give_up_after:.0f}s: {aws.describe(exc)}") from None
                if isinstance(exc, mkv.MkvError):
                    self.metrics.count("CorruptMedia")
                attempt += 1
                refresh = isinstance(exc, (aws.ClientError, aws.EndpointConnectionError))
                self.metrics.count("Reconnects")
                log.warning("GetMedia on %s interrupted (%s); reconnecting from %s", self.stream, aws.describe(exc), self.selector)
                self.stop.wait(max(RETRY_MIN_WAIT, delay(attempt, base=0.5, cap=RETRY_MAX_WAIT)))
                continue
            if self._idle_exit_due():
                return

    def _uploaded_in_bulk(self, fragment: mkv.Fragment) -> bool:
        """Recorded media uploaded faster than real time (an offline upload, a camera flushing its buffer after an
        outage): fragments arriving much faster than their own duration, or the first one after a pause arriving
        long after it was shot. Its frames are all processed even at the live edge (PutMedia's offline mode: latency
        is not the concern there); a camera sending at its own pace is live, and its old frames may be dropped."""
        arrived, shot, duration = fragment.server_timestamp, fragment.producer_timestamp, _duration(fragment)
        previous, self._previous_arrival = self._previous_arrival, (arrived, duration)
        if arrived is None or shot is None:
            return False
        by_pace = previous is not None and arrived - previous[0] < BULK_PACE * previous[1]
        late = arrived - shot > duration + 1  # (a camera clock that is off can make this true: only after a pause or a bulk upload)
        paused = previous is None or arrived - previous[0] > 2 * previous[1]
        bulk = by_pace or (late and (paused or self._bulk_by_pace))
        self._bulk_by_pace = by_pace
        return bulk

    def _pace_calls(self) -> None:
        """GetMedia allows 5 calls per second per stream: never call sooner than MIN_CALL_INTERVAL after the last."""
        wait = self._last_call + MIN_CALL_INTERVAL - time.monotonic()
        if wait > 0:
            self.stop.wait(wait)
        self._last_call = time.monotonic()

    def _went_idle(self) -> None:
        """Log an idle period once when it starts (and once when media comes again), not per reconnect."""
        if self.idle_since is None:
            self.idle_since = self.last_media
            log.info(
                "no new media on %s for %.0fs: the stream is idle; waiting (the connection is renewed every %.0fs)",
                self.stream,
                time.monotonic() - self.last_media,
                self.read_timeout,
            )
        else:
            log.debug("still idle on %s; reconnecting from %s", self.stream, self.selector)

    def _idle_exit_due(self) -> bool:
        if self.idle_exit and time.monotonic() - self.last_media >= self.idle_exit:
            log.info("no new media on %s for %.0fs; stopping (%s)", self.stream, self.idle_exit, var("idle_exit"))
            return True
        return False

    def _set_aside(self, exc: ErrorTag) -> None:
        """Error 4000: the start point is not in the stream (older than its retention, or from an earlier
        incarnation of it). The checkpoint is set aside, the start policy applies, the gap is reported."""
        where = self.selector.get("ContinuationToken") or self.selector.get("AfterFragmentNumber") or ""
        self.incarnation = self._describe()
        log.warning(
            "GetMedia on %s: error %s (%s) for the checkpoint's fragment %s (older than the stream's retention, or the "
            "stream was created again): checkpoint set aside, starting at %s",
            self.stream,
            exc.error_id,
            exc.code,
            where,
            self.start,
        )
        self.selector = {"StartSelectorType": self.start}
        self.seen = Watermark()
        self.live = self.start == "NOW"
        self.bounded = False
        self.set_aside = True
        self._pending_gap = {
            "start": where,
            "frames": 0,
            "reason": f"GetMedia error {exc.error_id} ({exc.code}): checkpoint set aside, restarted at {self.start}",
        }

    def _too_far_behind(self, fragment: mkv.Fragment) -> bool:
        """After a restart, the backlog is read in order only while it is no older than KINASE_MAX_LAG:
        past that, the rest of it is skipped (reported as a gap) and reading goes on at the live edge."""
        if not self.bounded or self.live or not self.max_lag or fragment.server_timestamp is None:
            return False
        behind = max(time.time() - fragment.server_timestamp, (fragment.millis_behind_now or 0) / 1000)
        if behind <= self.max_lag:
            return False
        number = fragment.fragment_number or ""
        frames = len([o for o in range(len(fragment.block_timecodes)) if not self.seen.covers(number, o)]) if number else 0
        self.metrics.count("FramesRead", frames)
        self.frame_index += frames
        self._pending_gap = {
            "start": number,
            "frames": frames,
            "since": fragment.server_timestamp,
            "duration": _duration(fragment),
            "reason": f"the backlog was {behind:.0f}s behind live (over {var('max_lag')}={self.max_lag:g}s): skipped to the live edge",
        }
        log.info(
            "%s: fragment %s is %.0fs behind live, over the maximum lag of %gs: jumping to the live edge",
            self.stream,
            number,
            behind,
            self.max_lag,
        )
        self.selector = {"StartSelectorType": "NOW"}
        self.live = True
        return True

    def _report_gap(self, resumed: mkv.Fragment | None) -> None:
        """Report a pending gap once the first fragment after it is known (or at the end: where unknown)."""
        gap, self._pending_gap = self._pending_gap, None
        if gap is None:
            return
        end = (resumed.fragment_number or "") if resumed is not None else ""
        fragments = 0
        if resumed is not None and gap.get("since") is not None and resumed.server_timestamp is not None:
            fragments = max(1, round((resumed.server_timestamp - gap["since"]) / max(gap["duration"], 0.001)))
        self.metrics.gap(gap["start"], end, fragments=fragments, frames=gap["frames"], reason=gap["reason"], stream=self.stream)

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
        blocks = len(fragment.block_timecodes)
        new = [offset for offset in range(blocks) if not self.seen.covers(number, offset)]
        block_times = [fragment.producer_timestamp + fragment.block_timecodes[offset] / 1000.0 for offset in new]
        if blocks and not self.sampler.wants_any(block_times):
            self.metrics.count("FramesDeduplicated", blocks - len(new))
            self.metrics.count("FramesRead", len(new))
            self.metrics.count("FramesSampledOut", len(new))
            self.frame_index += len(new)
            self.seen.fragment_done(number)
            log.debug("fragment %s: sampling wants none of its frames, not decoded", number)
            yield FragmentEnd(fragment=number, frames=blocks, checkpoint=self._position(fragment))
            return
        try:
            for position, (pts_ms, av_frame) in enumerate(decode(fragment.data)):
                frames += 1
                if self.seen.covers(number, position):
                    self.metrics.count("FramesDeduplicated")
                    continue
                self.frame_index += 1
                self.metrics.count("FramesRead")
                frame_time = fragment.producer_timestamp + (pts_ms - cluster_ms) / 1000.0
                if not self.sampler.keep(frame_time):
                    self.metrics.count("FramesSampledOut")
                    continue
                yield Frame(
                    image=av_frame.to_ndarray(format="bgr24"),
                    source={
                        "type": "kvs",
                        "uri": self.uri,
                        "stream_arn": self.incarnation,
                        "fragment_number": number,
                        "frame_in_fragment": position,
                    },
                    frame_index=self.frame_index - 1,
                    frame_time=frame_time,
                    read_at=time.monotonic(),
                    fragment=number,
                    fragment_time=fragment.producer_timestamp,
                    live=self.fragment_live,
                    server_time=fragment.server_timestamp,
                    millis_behind_now=fragment.millis_behind_now,
                    offset=position,
                    incarnation=self.incarnation,
                )
                if self.stop.is_set():
                    return
            if not frames and fragment.block_timecodes:
                self.metrics.count("CorruptMedia")
                log.warning("fragment %s: no frame could be decoded, skipped", number)
        except (av.error.FFmpegError, ValueError, IndexError) as exc:
            self.metrics.count("CorruptMedia")
            log.warning("fragment %s: undecodable after %d frames (%s), rest skipped", number, frames, exc)
        lost = [offset for offset in range(frames, blocks) if not self.seen.covers(number, offset)]
        self.metrics.count("FramesRead", len(lost))
        self.metrics.count("FramesCorrupt", len(lost))
        self.seen.fragment_done(number)
        yield FragmentEnd(fragment=number, frames=max(frames, blocks), checkpoint=self._position(fragment))

    @staticmethod
    def _position(fragment: mkv.Fragment) -> dict:
        """Where to resume once this fragment is handled: after it (`next_offset` None = all of it)."""
        return {
            "fragment_number": fragment.fragment_number,
            "producer_timestamp": fragment.producer_timestamp,
            "server_timestamp": fragment.server_timestamp,
            "continuation_token": fragment.continuation_token,
            "next_offset": None,
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
        is shut down instead, which ends that read at once. A gap still waiting for the fragment after it is
        reported now (where it ends is unknown), so the exit summary accounts for it."""
        self._report_gap(None)
        raw = getattr(self._body, "_raw_stream", None)
        sock = getattr(getattr(raw, "connection", None), "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:  # already closed by the other side
                pass


def open_kvs(settings, session, s3, sampler: Sampler, metrics: Metrics, stop: threading.Event, resume=None, incarnation=None) -> KvsSource:
    """A Kinesis Video stream, from the checkpoint `resume` when there is one (worker/sources/kinds.py: its opener)."""
    return KvsSource(
        session,
        settings.kvs_stream,
        start=settings.start,
        resume=resume,
        sampler=sampler,
        metrics=metrics,
        stop=stop,
        idle_exit=settings.idle_exit,
        max_lag=settings.max_lag,
        read_timeout=settings.read_timeout,
        give_up_after=settings.give_up_after,
        incarnation=incarnation,
    )
