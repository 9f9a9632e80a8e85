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
