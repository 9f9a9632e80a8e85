"""The worker loop: a reader thread, inference on the main thread, delivery threads behind it.

Between reader and inference sits a small queue. For live frames (RTSP; Kinesis Video at the live
edge) it favours the newest: when inference falls behind, frames that have waited too long are
dropped and counted, so latency stays bounded, not growing with how long the overload lasts.
Fragment ends are never dropped, so checkpoints still move. For files, S3 objects and Kinesis
Video media read from the archive (KINASE_START=EARLIEST, or resuming from a checkpoint, until
the reader catches up with the producer) the queue blocks the reader instead, and every sampled
frame is processed. Whatever the camera's resolution, the bytes of frames waiting are bounded for
the whole worker (all its streams) by one FrameBudget (worker/framebudget.py, KINASE_FRAME_MEMORY_MB).

On the inference thread each frame goes through the named stages of worker/stages/ (detect, then
deliver; the events stages track and analyse go between them), which also snapshot their state
into each checkpoint and restore it at a resume.

Stopping (SIGTERM, KINASE_MAX_FRAMES, end of the source): stop reading, deliver what inference
has already produced, write the checkpoint, report. Frames read but not yet inferred are counted
as unfinished and left for the next run, which resumes from the checkpoint. At the end every frame
read is accounted for (worker.metrics.OUTCOMES); the summary says so, or says by how many not.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from worker import aws
from worker import detector as detectors
from worker.checkpoint import CheckpointStore, Ledger
from worker.events import contract as events
from worker.events.attributes import message_attributes
from worker.events.camera_health import CameraHealth
from worker.events.rules_in_force import RulesInForce
from worker.framebudget import FrameBudget
from worker.frames import FragmentEnd, Frame, Watermark
from worker.metrics import Metrics
from worker.outage import Outage
from worker.retry import WritePolicy, count_retries
from worker.settings import BY_FIELD, Settings
from worker.sinks import Delivery
from worker.sources import SourceError, open_source
from worker.sources.incarnation import describe
from worker.stages import Context, Stages

log = logging.getLogger("kinase.worker")

_END = object()
SHUTDOWN_BUDGET = 25.0  # seconds to flush after a stop; Fargate kills 30 s after SIGTERM
LIVE_MAX_WAIT = 1.0  # seconds a live frame may wait for inference while newer frames are queued
LIVE_MAX_FRAMES = 64  # live frames queued at most (memory: 64 x 6 MB at 1080p)


class FrameQueue:
    """Bounded hand-over from the reader thread.

    A recorded frame waits for room. A live frame never waits: frames arrive in bursts (a Kinesis
    Video fragment is decoded at once), so a burst is queued whole, but a live frame that has
    waited longer than `max_wait` is dropped when a newer one is queued behind it, and beyond
    `live_cap` frames the oldest is dropped to bound memory. Behind recorded frames (a backlog, say
    after an outage in KINASE_OUTAGE=CATCHUP) a live frame's wait counts from when the last of them
    went to inference. Latency stays near `max_wait` plus one
    inference however long inference stays slower than the stream; when inference keeps up on
    average, nothing is dropped.
    """

    def __init__(
        self,
        maxsize: int,
        metrics: Metrics,
        stop: threading.Event,
        *,
        max_wait: float = LIVE_MAX_WAIT,
        live_cap: int = LIVE_MAX_FRAMES,
        on_drop: Callable[[Frame], None] = lambda _frame: None,
        hold: Callable[[Frame], bool] = lambda _frame: False,
        budget: FrameBudget | None = None,
    ):
        """`budget`: the worker-wide bound on the bytes of frames waiting, shared with the other streams' queues
        (worker/framebudget.py); its condition is this queue's lock. None: a budget of its own, with no bound."""
        self.maxsize, self.metrics, self.stop = maxsize, metrics, stop
        self.max_wait, self.live_cap, self.on_drop = max_wait, live_cap, on_drop
        self.hold = hold  # a live frame it holds is queued as a recorded one (worker/outage.py, KINASE_OUTAGE=CATCHUP)
        self._recorded_out = 0.0  # time.monotonic() when the last recorded frame went to inference
        self._items: deque = deque()
        self._frames = 0
        self.waiting_bytes = 0
        self.budget = budget or FrameBudget()
        self._cond = self.budget.cond
        self.budget.join(self)
        self._closed: str | None = None  # after discard(): the outcome a frame put late is counted under

    def put(self, item) -> None:
        with self._cond:
            if isinstance(item, Frame) and self._closed:  # the reader outlived the stop: nothing will take this frame
                self.metrics.count(self._closed)
                return
            if isinstance(item, Frame):
                if item.live and self.hold(item):  # catching up: this frame and those queued become recorded ones
                    for queued in (item, *self._items):
                        if isinstance(queued, Frame):
                            queued.live = False
                if item.live:
                    if self._frames >= self.live_cap:  # recorded frames (a backlog caught up on) are never dropped
                        self.drop_oldest_live()
                else:
                    while self._frames >= self.maxsize and not self.stop.is_set():
                        self._cond.wait(0.2)
                if not self.budget.admit(self, item.image, item.live, self.stop):
                    self._drop(item)
                    return
                self._frames += 1
                self.waiting_bytes += item.image.nbytes
            self._items.append(item)
            self._cond.notify_all()

    def has_live(self) -> bool:
        """Whether a live frame waits here (one the budget may drop); called with the budget's condition held."""
        return any(isinstance(queued, Frame) and queued.live for queued in self._items)

    def drop_oldest_live(self) -> None:
        """Drop the oldest live frame waiting, to make room in the budget; called with its condition held."""
        for i, queued in enumerate(self._items):
            if isinstance(queued, Frame) and queued.live:
                del self._items[i]
                self._taken(queued)
                self._drop(queued)
                return

    def _taken(self, frame: Frame) -> None:
        """`frame` left the queue (the budget counts its bytes until its pixels are freed)."""
        self._frames -= 1
        self.waiting_bytes -= frame.image.nbytes

    def _drop(self, frame: Frame) -> None:
        self.metrics.count("FramesDropped")
        self.on_drop(frame)

    def discard(self, outcome: str = "FramesUnfinished") -> int:
        """Empty the queue after a stop; the frames it held are counted under `outcome` (returns how many)."""
        with self._cond:
            frames = sum(isinstance(item, Frame) for item in self._items)
            self._closed = outcome
            self._items.clear()
            self._frames = 0
            self.waiting_bytes = 0
            self.budget.leave(self)
            self._cond.notify_all()
        self.metrics.count(outcome, frames)
        return frames

    def get(self, timeout: float):
        """The next item, or None if nothing came within `timeout`."""
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            while self._items:
                item = self._items.popleft()
                if isinstance(item, Frame):
                    self._taken(item)
                    now = time.monotonic()
                    if not item.live:
                        self._recorded_out = now
                    waited = now - max(item.read_at, self._recorded_out)  # behind recorded frames (a backlog) it waits from their end
                    stale = item.live and self._frames > 0 and waited > self.max_wait and not self.hold(item)
                    if stale:
                        self._drop(item)
                        continue
                self._cond.notify_all()
                return item
            self._cond.notify_all()
            return None


class Worker:
    def __init__(
        self,
        settings: Settings,
        *,
        session=None,
        stop: threading.Event | None = None,
        metrics_out=None,
        detector=None,
        checkpoints=None,
        fence: Callable[[], bool] | None = None,
        budget: FrameBudget | None = None,
        rules: RulesInForce | None = None,
    ):
        """`detector` and `checkpoints` (incarnation, metrics, write policy -> store) let the fleet (worker/fleet/main.py) share
        one detector between its streams and keep checkpoints in the stream's lease; `fence` (the fleet's
        LeaseCoordinator.fence) says whether the stream's lease is still ours: once it is not, nothing more is
        delivered and the frames not delivered are FramesReleased, redone by the stream's next owner; `budget` is the
        fleet worker's one FrameBudget for all its streams (None: this worker makes its own, worker/framebudget.py);
        `rules` the rules in force, shared by the fleet worker's streams (None: this worker reads its own)."""
        self.settings = settings
        self.rules = rules
        self.health = CameraHealth(0.0)  # replaced when reading starts: loading the model is not the camera's silence
        self._analyse = None  # the analyse stage, once built: it makes the camera events
        self._sns = None
        self.budget = budget
        self.detector, self.checkpoints = detector, checkpoints
        self.fence = fence or (lambda: True)
        self._dropped: deque[tuple[str, int]] = deque()  # positions of live drops not yet known to be behind a checkpoint
        self._drop_lock = threading.Lock()
        self._ledger: Ledger | None = None
        self.stop = stop or threading.Event()
        self.metrics = Metrics(settings.stream_name, out=metrics_out)
        self.writes = WritePolicy(settings.write_patience, settings.write_warn_after)
        self.session = session or aws.session()
        count_retries(self.session.events, lambda _operation: self.metrics.count("Retries"))
        self.error: str | None = None
        self._delivery: Delivery | None = None
        self._ticking = threading.Event()  # set: the metrics timer stops
        self._ticker = threading.Thread(target=self._tick, name="metrics", daemon=True)

    def run(self) -> int:
        self._ticker.start()
        try:
            return self._run()
        finally:
            self._stop_ticking()

    def _stop_ticking(self) -> None:
        self._ticking.set()
        self._ticker.join()

    def _tick(self) -> None:
        """Metrics on a timer, apart from the inference loop: while delivery blocks it (an S3 or SQS outage), the
        metric lines go on saying 0 fps and a growing DeliveryLagMs, and writes pending too long are warned about."""
        interval = self.settings.metrics_interval
        step = min(1.0, interval, self.writes.warn_after / 2)
        next_emit = time.monotonic() + interval
        while not self._ticking.wait(step):
            self.writes.check()
            if self.health.check():
                self._camera("camera_offline")
            if time.monotonic() >= next_emit:
                self._emit()
                log.info("metrics: %s", self.metrics.summary())
                next_emit = time.monotonic() + interval

    def _emit(self) -> None:
        if self._delivery is not None:
            self.metrics.gauge("DeliveryLagMs", self._delivery.waiting_ms())
        if self.budget is not None:
            self.metrics.gauge("FrameBytesPeak", self.budget.peak)
        self.metrics.emit()

    def _run(self) -> int:
        s = self.settings
        calls = aws.Config(read_timeout=s.call_timeout, connect_timeout=min(s.call_timeout, aws.CONNECT_TIMEOUT))
        s3 = aws.client(self.session, "s3", config=calls)
        sqs = aws.client(self.session, "sqs", config=calls)
        self._sns = aws.client(self.session, "sns", config=calls) if s.events_topic_arn else None
        own_rules = self.rules is None
        if own_rules:
            self.rules = RulesInForce(s3, s.bucket, s.rules_poll).start()
        detector = self.detector or detectors.for_settings(s)
        log.info("model %s (%s, %d classes, imgsz %d)", detector.name, detector.runtime, len(detector.names), detector.imgsz)
        store = None
        resume = None
        incarnation = None
        if s.source_kind.resumable:
            incarnation = describe(self.session, s.kvs_stream)
            log.info("stream %s", incarnation)
        if incarnation is not None and s.checkpoint:
            store = (
                self.checkpoints(incarnation, self.metrics, self.writes)
                if self.checkpoints
                else CheckpointStore(s3, s.bucket, s.checkpoint_key, s.stream_name, s.source, incarnation, self.metrics, self.writes)
            )
            resume = store.load()
            if resume:
                offset = resume.get("next_offset")
                log.info(
                    "resuming %s at fragment %s (%s)",
                    s.source,
                    resume["fragment_number"],
                    "after all of it" if offset is None else f"from frame {offset}",
                )
        ledger = Ledger(store, self.metrics, position=resume)
        self._ledger = ledger
        source = open_source(s, self.session, s3, self.metrics, self.stop, resume, incarnation.arn if incarnation else None)
        delivery = Delivery(
            s3,
            sqs,
            bucket=s.bucket,
            queue_url=s.queue_url,
            stream_name=s.stream_name,
            model=detector.name,
            ledger=ledger,
            metrics=self.metrics,
            writes=self.writes,
            fence=self.fence,
            stop=self.stop,
            upload=s.upload,
            jpeg_quality=s.jpeg_quality,
            sns=self._sns,
            events_topic_arn=s.events_topic_arn,
        )
        stages = Stages(Context(s, self.metrics, detector, delivery, self.session, self.rules))
        self._analyse = stages.named("analyse")
        if resume:
            stages.restore(resume.get("stages"))
        self._outage = Outage(s.outage, self.writes, self.metrics, s.max_lag)
        self.budget = self.budget or FrameBudget.for_settings(s)
        frames = FrameQueue(
            8, metrics=self.metrics, stop=self.stop, on_drop=self._dropped_frame, hold=self._outage.holds, budget=self.budget
        )
        reader = threading.Thread(target=self._read, args=(source, frames, ledger), name="reader", daemon=True)
        log.info("reading %s", s.source)
        self.health = CameraHealth(s.camera_offline_s if s.live else 0.0)
        reader.start()
        self._delivery = delivery
        try:
            self._infer(stages, frames, delivery, ledger)
        finally:
            self.stop.set()
            source.close()
            budget = threading.Timer(SHUTDOWN_BUDGET, self.writes.abandon)  # writes still failing then are given up
            budget.start()
            delivered = delivery.close(SHUTDOWN_BUDGET)
            if delivery.error is not None:
                self.error = self.error or str(delivery.error)
            elif delivered:
                try:
                    ledger.final(stages.snapshot())
                except aws.FatalError as exc:
                    self.error = self.error or str(exc)
            else:
                self.error = self.error or f"could not deliver the frames in flight within {SHUTDOWN_BUDGET:.0f}s"
            budget.cancel()
            if own_rules:
                self.rules.stop()
            self.writes.abandon()
            reader.join(2.0)
            frames.discard(self._unfinished())
            if not self.fence():
                self._release_drops()
            self._stop_ticking()
            self._emit()
            log.info("summary: %s", self.metrics.summary())
            if self.metrics.balance() and not reader.is_alive():
                log.warning("accounting: %d frames read are not accounted for", self.metrics.balance())
        if self.error:
            log.error("error: %s", self.error)
            return 1
        return 0

    def _camera(self, type_: str) -> None:
        """A camera event, apart from any frame: logged, counted, and published on a thread of its own, so a
        publish waiting on an outage holds up neither the reader nor the metrics timer."""
        if self._analyse is None:
            return
        event = self._analyse.camera(type_, time.time())
        self.metrics.event(event)
        log.warning("%s: %s (no media for %gs)", type_, self.settings.stream_name, self.settings.camera_offline_s)
        if self._sns is not None:
            threading.Thread(target=self._publish_alone, args=(event,), name="camera-event", daemon=True).start()

    def _publish_alone(self, event: dict) -> None:
        try:
            self.writes.write(
                lambda: self._sns.publish(
                    TopicArn=self.settings.events_topic_arn, Message=events.dumps(event), MessageAttributes=message_attributes(event)
                ),
                what=f"SNS Publish of {event['type']} for stream {self.settings.stream_name}",
            )
            self.metrics.count("EventsPublished")
        except aws.FatalError as exc:
            log.error("could not publish %s: %s", event["type"], exc)

    def _unfinished(self) -> str:
        """The outcome of a frame read and not delivered at a stop: released when the lease is no longer ours."""
        return "FramesUnfinished" if self.fence() else "FramesReleased"

    def _behind_checkpoint(self, position: tuple[str, int]) -> bool:
        checkpoint = self._ledger.position if self._ledger is not None else None
        return checkpoint is None or Watermark.from_checkpoint(checkpoint).covers(*position)

    def _dropped_frame(self, frame: Frame) -> None:
        """Remember where a live frame was dropped until a checkpoint written is past it (then it is lost for good)."""
        if frame.fragment is None:
            return
        with self._drop_lock:
            self._dropped.append((frame.fragment, frame.offset or 0))
            while self._dropped and self._behind_checkpoint(self._dropped[0]):
                self._dropped.popleft()

    def _release_drops(self) -> None:
        """After the lease ended: live drops past the last checkpoint written are not lost, since the stream's next
        owner resumes from that checkpoint and redoes them; they move from FramesDropped to FramesReleased, so
        the drops a stream reports are the frames really lost. (The ledger's position is the last checkpoint
        written: a save refused for a lost lease leaves it where it was.)"""
        with self._drop_lock:
            redone = sum(1 for position in self._dropped if not self._behind_checkpoint(position))
            self._dropped.clear()
        if redone:
            log.info("%d frames dropped after the last checkpoint are redone by the stream's next owner: released", redone)
            self.metrics.move("FramesDropped", "FramesReleased", redone)

    def _read(self, source, frames: FrameQueue, ledger: Ledger) -> None:
        started = False
        try:
            for item in source:
                if self.stop.is_set():
                    if isinstance(item, Frame):
                        self.metrics.count(self._unfinished())
                    break
                if not started and isinstance(item, (Frame, FragmentEnd)) and (item.fragment is not None):
                    started = True
                    server_time = item.server_time if isinstance(item, Frame) else item.checkpoint.get("server_timestamp")
                    ledger.started(item.fragment, server_time)
                if isinstance(item, Frame) and self.health.media():
                    self._camera("camera_online")
                if isinstance(item, Frame) and self._outage.skips(item):
                    continue
                frames.put(item)
        except SourceError as exc:
            self.error = str(exc)
        except Exception as exc:  # a bug in a source must stop the worker with one line, not hang it
            log.exception("reader failed")
            self.error = f"reading {self.settings.source} failed: {exc}"
        finally:
            self._outage.report()
            frames.put(_END)

    def _infer(self, stages: Stages, frames: FrameQueue, delivery: Delivery, ledger: Ledger) -> None:
        processed = 0
        while not self.stop.is_set() and not delivery.failed.is_set():
            item = frames.get(timeout=0.2)
            if item is None:
                continue
            if item is _END:
                return
            if isinstance(item, FragmentEnd):
                ledger.fragment_end(item, stages.snapshot())
                continue
            stages(item)
            processed += 1
            if self.settings.max_frames and processed >= self.settings.max_frames:
                log.info("processed %d frames (%s); stopping", processed, BY_FIELD["max_frames"].name)
                return
