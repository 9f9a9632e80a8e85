"""Where a processed frame goes: the sinks, composed in order.

A sink takes a `Result` (the frame, its detections, its S3 key and frame id), does its part on its
own threads, and calls `done(result)` when it has it; the next sink then gets it. When the last
sink has it, the frame is delivered: counted, and acknowledged to the checkpoint ledger. The chain
is the annotated JPEG to S3, then the frame's events to SNS, then the message to SQS, so a consumer
never sees a key (a frame's or an event's snapshot) that is not there yet.

Adding a sink (say, a webhook) is one module with a class following `Sink` (built by
`from_context`) plus one line in `SINKS`. A sink whose `required` is False is a side branch: it
gets each result as it passes its place in the chain, but the frame goes on without waiting for
it, is acknowledged without it, and its failures are logged instead of stopping the worker.
"""

from __future__ import annotations

import logging
import pkgutil
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

from worker import contract, layout
from worker.checkpoint import Ledger
from worker.frames import Frame
from worker.metrics import Metrics
from worker.retry import WritePolicy

log = logging.getLogger("kinase.worker.sinks")

SINKS = [
    "worker.sinks.s3_frames:S3FrameSink",
    "worker.sinks.sns_events:SnsEventSink",
    "worker.sinks.sqs_results:SqsResultSink",
]


@dataclass
class Result:
    frame: Frame
    detections: list[dict]
    inference_ms: float
    frame_id: str = ""
    key: str | None = ""  # None: the upload policy kept this frame's JPEG out of S3
    width: int = 0
    height: int = 0
    message: dict | None = None
    extra: dict = field(default_factory=dict)  # what the stages attached for delivery (worker/stages/: Work.extra)


@dataclass
class Context:
    """What a sink may use: clients, where to deliver, the metrics, the write policy, and how to stop the worker."""

    s3: object
    sqs: object
    bucket: str
    queue_url: str
    stream_name: str
    model: str
    metrics: Metrics
    fail: Callable[[BaseException], None]
    failed: threading.Event
    writes: WritePolicy = field(default_factory=WritePolicy)
    options: dict = field(default_factory=dict)
    # whether the worker may still deliver this stream (a fleet worker: its lease; see LeaseCoordinator.fence).
    # A sink asks right before each write; when it says no, the sink writes nothing and passes nothing on.
    fence: Callable[[], bool] = lambda: True
    # set when the worker stops: the first sink, full (an outage), no longer waits to take a new result (left unfinished)
    stopping: threading.Event = field(default_factory=threading.Event)


class Sink(Protocol):
    name: str
    required: bool

    @classmethod
    def from_context(cls, ctx: Context, done: Callable[[Result], None]) -> Sink: ...

    def submit(self, result: Result) -> None:
        """Take one result (may block while the sink is full: that bounds memory); call `done` once it is stored."""

    def close(self, deadline: float) -> bool:
        """Finish what was submitted by `deadline` (time.monotonic()), stop the threads; False if that did not finish."""


def _branch(side: Callable[[Result], None], main: Callable[[Result], None]) -> Callable[[Result], None]:
    def both(result: Result) -> None:
        side(result)
        main(result)

    return both


class Delivery:
    """The sinks of `SINKS` composed in order, feeding the checkpoint ledger."""

    def __init__(
        self,
        s3,
        sqs,
        *,
        bucket: str,
        queue_url: str,
        stream_name: str,
        model: str,
        ledger: Ledger,
        metrics: Metrics,
        writes: WritePolicy | None = None,
        fence: Callable[[], bool] = lambda: True,
        stop: threading.Event | None = None,
        **options,
    ):
        self.ledger, self.metrics, self.stream_name = ledger, metrics, stream_name
        self.fence = fence
        self.error: BaseException | None = None
        self.failed = threading.Event()
        self._lock = threading.Lock()
        self._in_flight: OrderedDict[str, float] = OrderedDict()  # frame id -> when it was read (time.monotonic())
        ctx = Context(
            s3,
            sqs,
            bucket,
            queue_url,
            stream_name,
            model,
            metrics,
            self._fail,
            self.failed,
            writes or WritePolicy(),
            options,
            fence,
            stop or threading.Event(),
        )
        self.sinks: list[Sink] = []
        done = self._delivered
        for path in reversed(SINKS):
            cls = pkgutil.resolve_name(path)
            if cls.required:
                sink = cls.from_context(ctx, done)
                done = sink.submit
            else:
                sink = cls.from_context(replace(ctx, fail=self._optional_failed(cls.name)), lambda _result: None)
                done = _branch(sink.submit, done)
            self.sinks.insert(0, sink)
        self._head = done

    def submit(self, frame: Frame, detections: list[dict], inference_ms: float, extra: dict | None = None) -> None:
        """Hand one processed frame to the first sink; blocks while it is full."""
        self.ledger.submitted(frame)
        frame_id = contract.frame_id(self.stream_name, frame.source)
        result = Result(frame, detections, inference_ms, frame_id=frame_id, key=layout.frame_key(frame_id), extra=extra or {})
        with self._lock:
            self._in_flight[frame_id] = frame.read_at
        self._head(result)

    def _delivered(self, result: Result) -> None:
        with self._lock:
            self._in_flight.pop(result.frame_id, None)
        self.metrics.count("FramesDelivered")
        if result.message is not None:
            self.metrics.time("LatencyMs", result.message["latency_ms"])
        self.ledger.delivered(result.frame)
        log.debug("delivered %s", result.key)

    def close(self, timeout: float = 25.0) -> bool:
        """Deliver everything submitted, sink by sink in order; False if that did not finish in time or failed.

        Frames still in flight afterwards are counted as FramesUnfinished: they are not
        checkpointed, so a restart does them again; or as FramesReleased when the fence is closed (the
        stream's lease ended: its next owner does them again)."""
        deadline = time.monotonic() + timeout
        finished = all([sink.close(deadline) for sink in self.sinks])
        with self._lock:
            left = len(self._in_flight)
            self._in_flight.clear()
        if left:
            self.metrics.count("FramesUnfinished" if self.fence() else "FramesReleased", left)
        return finished and not self.failed.is_set()

    def waiting_ms(self) -> float:
        """How long the oldest frame handed to delivery has waited since it was read (0 when none waits):
        it grows while a sink is blocked, when no frame is delivered and so no latency is measured."""
        with self._lock:
            oldest = next(iter(self._in_flight.values()), None)
        return 0.0 if oldest is None else round((time.monotonic() - oldest) * 1000, 1)

    def _optional_failed(self, name: str) -> Callable[[BaseException], None]:
        def failed(exc: BaseException) -> None:
            log.warning("sink %s (optional) failed: %s", name, exc)

        return failed

    def _fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        self.failed.set()
