"""Cross-stream batching for the fleet worker: frames of different streams in one network call.

Each stream's pipeline asks for one frame at a time and waits for the answer, so a batch can only
gather frames of different streams. Requests are served in arrival order, so a stream with a
backlog cannot starve a live one: the oldest waiting request leads the next batch, waits at most
KINASE_BATCH_WAIT milliseconds from its own arrival for the other active streams to ask too, then
takes up to KINASE_BATCH of the oldest requests into one `detect_batch` call. Under load the wait
costs nothing: requests queue up behind the running batch and the next one is full at once. With
one active stream there is nothing to wait for.

Whether it pays depends on the backend and the hardware: a GPU gains from batches; on the CPU
measured (docs/BENCHMARKS.md, `python -m bench.fleet_bench`) batch > 1 was slower per frame, so
KINASE_BATCH defaults to 1: one frame a call, in arrival order. A backend whose model has no dynamic batch axis runs a batch
frame by frame.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque

ACTIVE_WINDOW = 2.0  # seconds: a stream thread that asked within this long is expected to ask again
POLL = 0.05  # seconds between looks at which stream threads are still alive while a batch gathers


class _Request:
    __slots__ = ("image", "arrived", "result", "error", "done")

    def __init__(self, image):
        self.image = image
        self.arrived = time.monotonic()
        self.result = None
        self.error: BaseException | None = None
        self.done = False


class BatchingDetector:
    """One detector shared by the fleet's streams, first come first served, up to `max_batch` frames a call."""

    def __init__(self, detector, max_batch: int, max_wait: float):
        self._detector = detector
        self.max_batch = max_batch if getattr(detector, "batchable", False) else 1
        self.max_wait = max_wait
        self._cond = threading.Condition()
        self._pending: deque[_Request] = deque()
        self._busy = False
        self._callers: dict[threading.Thread, float] = {}
        self.batches: Counter[int] = Counter()  # batch size -> network calls

    def __getattr__(self, name):
        return getattr(self._detector, name)

    def _active(self, now: float) -> int:
        for thread, last in list(self._callers.items()):
            if not thread.is_alive() or now - last > ACTIVE_WINDOW:
                del self._callers[thread]
        return len(self._callers)

    def detect(self, image):
        request = _Request(image)
        with self._cond:
            self._callers[threading.current_thread()] = request.arrived
            self._pending.append(request)
            self._cond.notify_all()
            while not request.done and (self._busy or self._pending[0] is not request):
                self._cond.wait()
            if request.done:
                return self._answer(request)
            self._busy = True
            deadline = request.arrived + self.max_wait
            while len(self._pending) < min(self.max_batch, self._active(time.monotonic())):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, POLL))
            batch = [self._pending.popleft() for _ in range(min(self.max_batch, len(self._pending)))]
        try:
            if len(batch) == 1:
                results = [self._detector.detect(batch[0].image)]
            else:
                results = self._detector.detect_batch([r.image for r in batch])
        except BaseException as exc:  # every stream in the batch sees the failure its own call would have raised
            results = None
            for r in batch:
                r.error = exc
        with self._cond:
            for i, r in enumerate(batch):
                if results is not None:
                    r.result = results[i]
                r.done = True
            self.batches[len(batch)] += 1
            self._busy = False
            self._cond.notify_all()
        return self._answer(request)

    @staticmethod
    def _answer(request: _Request):
        if request.error is not None:
            raise request.error
        return request.result

    def warm(self, image) -> None:
        """Run each batch size once before the streams start: a backend that compiles per input shape
        (OpenVINO) would otherwise compile in the middle of a live stream, long enough to drop frames."""
        for size in range(2, self.max_batch + 1):
            self._detector.detect_batch([image] * size)

    def describe(self) -> str:
        """Network calls by batch size, for the worker's last log lines."""
        calls = sum(self.batches.values())
        frames = sum(size * n for size, n in self.batches.items())
        sizes = ", ".join(f"{size}: {n}" for size, n in sorted(self.batches.items()))
        return f"{frames} frames in {calls} network calls (batch size: calls {{{sizes}}}), at most {self.max_batch} a call"
