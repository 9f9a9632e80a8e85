"""What the threaded sinks share: a bounded queue and a stop marker that waits for room only until a deadline."""

from __future__ import annotations

import queue
import threading
import time

STOP = object()


def put_until(q: queue.Queue, item, deadline: float | None, failed: threading.Event, stopping: threading.Event | None = None) -> bool:
    """Put `item` unless the worker failed, `deadline` (time.monotonic()) passed, or the queue stays full while
    `stopping` is set; True if it went in."""
    while not failed.is_set() and (deadline is None or time.monotonic() < deadline):
        try:
            q.put(item, timeout=0.2)
            return True
        except queue.Full:
            if stopping is not None and stopping.is_set():
                return False
    return False


class OneThread:
    """What a sink that works on one thread in order has: a bounded queue in front of its `_loop`, `submit` and `close`."""

    def __init__(self, ctx, queue_size: int, name: str):
        self.ctx = ctx
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def _loop(self) -> None:
        raise NotImplementedError

    def submit(self, result) -> None:
        put_until(self._queue, result, None, self.ctx.failed)

    def close(self, deadline: float) -> bool:
        put_until(self._queue, STOP, deadline, self.ctx.failed)
        self._thread.join(max(0.0, deadline - time.monotonic()))
        return not self._thread.is_alive()
