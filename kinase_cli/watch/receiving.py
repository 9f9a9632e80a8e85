"""Receiving from SQS for an operator who keeps the watcher open all day.

- `Receiver` threads long-poll in batches of 10; the first always polls, the others join in only
  while batches come back full (the queue is deep).
- `Acker` deletes handled messages and changes visibilities in batches of 10, off the render path.
- `Holder` keeps messages that `--peek` has shown invisible (renewing their visibility) so that
  the session sees each message once, and makes them visible to everyone again when it ends.
- `DepthPoller` reads queue and DLQ depth every few seconds, not per message.

Lost connections, throttling and 5xx answers are retried with exponential backoff (worker/retry.py,
the policy the worker uses too); only errors an operator must fix (no such queue, access denied) end the watcher.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from kinase_cli.aws import queues
from worker.retry import Backoff, is_transient  # the one retry policy, shared with the worker

MAX_BATCH = 10


@dataclass(frozen=True)
class Received:
    message_id: str
    receipt_handle: str
    body: str
    receive_count: int


class Budget:
    """How many more messages may be requested under `--count`, so a run does not over-receive.

    Messages in flight (asked for, not yet classified) are reserved; only shown frames use up
    the count, so invalid or filtered messages give their slot back.
    """

    def __init__(self, limit: int | None):
        self.limit = limit
        self.shown = 0
        self._pending = 0
        self._lock = threading.Lock()

    def take(self, wanted: int = MAX_BATCH) -> int:
        with self._lock:
            if self.limit is None:
                return wanted
            n = max(0, min(wanted, self.limit - self.shown - self._pending))
            self._pending += n
            return n

    def unused(self, n: int) -> None:
        with self._lock:
            if self.limit is not None:
                self._pending -= n

    def settled(self, shown: bool) -> None:
        with self._lock:
            if self.limit is not None:
                self._pending -= 1
            if shown:
                self.shown += 1

    @property
    def exhausted(self) -> bool:
        return self.limit is not None and self.shown >= self.limit


class Receiver(threading.Thread):
    """One long-polling loop; puts lists of `Received` on `out`."""

    def __init__(
        self,
        index: int,
        sqs,
        queue_url: str,
        out: queue.Queue,
        budget: Budget,
        stop: threading.Event,
        deep: threading.Event,
        wait_s: int,
        visibility_s: int | None,
        status: Callable[[str], None],
    ):
        super().__init__(name=f"kinase-receive-{index}", daemon=True)
        self.index, self.sqs, self.queue_url, self.out = index, sqs, queue_url, out
        self.budget, self.stop, self.deep = budget, stop, deep
        self.wait_s, self.visibility_s, self.status = wait_s, visibility_s, status
        self.error: BaseException | None = None
        self.empty_polls = 0  # receives that came back with nothing: how `kinase events` knows the queue is drained

    def run(self) -> None:
        backoff = Backoff(base=0.25, cap=15.0)
        while not self.stop.is_set():
            if self.index > 0 and not self.deep.wait(0.25):
                continue
            asked = self.budget.take()
            if asked == 0:
                self.stop.wait(0.05)
                continue
            try:
                batch = self._receive(asked)
            except Exception as exc:  # classified below: transient ones are retried
                self.budget.unused(asked)
                if not is_transient(exc):
                    self.error = exc
                    self.stop.set()
                    return
                delay = backoff.next_delay()
                self.status(f"reconnecting in {delay:.1f}s ({type(exc).__name__})")
                self.stop.wait(delay)
                continue
            if backoff.attempt:
                self.status("reconnected")
                backoff.reset()
            self.budget.unused(asked - len(batch))
            if asked == MAX_BATCH and len(batch) == MAX_BATCH:
                self.deep.set()
            elif len(batch) < asked:
                self.deep.clear()
            if batch:
                self.out.put(batch)
            else:
                self.empty_polls += 1

    def _receive(self, asked: int) -> list[Received]:
        params = dict(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=asked,
            WaitTimeSeconds=self.wait_s,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        if self.visibility_s is not None:
            params["VisibilityTimeout"] = self.visibility_s
        response = self.sqs.receive_message(**params)
        return [
            Received(m["MessageId"], m["ReceiptHandle"], m.get("Body", ""), int(m.get("Attributes", {}).get("ApproximateReceiveCount", 1)))
            for m in response.get("Messages", [])
        ]


class Acker(threading.Thread):
    """Deletes and visibility changes, sent in batches of 10 from one background thread."""

    def __init__(self, sqs, queue_url: str, warn: Callable[[str], None]):
        super().__init__(name="kinase-ack", daemon=True)
        self.sqs, self.queue_url, self.warn = sqs, queue_url, warn
        self._todo: queue.Queue = queue.Queue()
        self.deleted = 0
        self.failed = 0

    def delete(self, handle: str) -> None:
        self._todo.put(("delete", handle, None))

    def set_visibility(self, handle: str, seconds: int) -> None:
        self._todo.put(("visibility", handle, seconds))

    def close(self) -> None:
        self._todo.put(None)
        self.join()

    def run(self) -> None:
        closing = False
        while not closing:
            item = self._todo.get()
            if item is None:
                break
            items = [item]
            deadline = time.monotonic() + 0.05
            while len(items) < 64:
                try:
                    nxt = self._todo.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if nxt is None:
                    closing = True
                    break
                items.append(nxt)
            for kind in ("delete", "visibility"):
                chosen = [i for i in items if i[0] == kind]
                for start in range(0, len(chosen), MAX_BATCH):
                    self._send(kind, chosen[start : start + MAX_BATCH])

    def _send(self, kind: str, items: list[tuple]) -> None:
        if kind == "delete":
            entries = [{"Id": str(i), "ReceiptHandle": h} for i, (_, h, _) in enumerate(items)]
            call, what = self.sqs.delete_message_batch, "delete"
        else:
            entries = [{"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": s} for i, (_, h, s) in enumerate(items)]
            call, what = self.sqs.change_message_visibility_batch, "visibility change"
        backoff = Backoff(base=0.25, cap=5.0)
        while True:
            try:
                response = call(QueueUrl=self.queue_url, Entries=entries)
                break
            except Exception as exc:  # transient: retried a few times; else reported
                if not is_transient(exc) or backoff.attempt >= 6:
                    self.failed += len(entries)
                    self.warn(f"{what} of {len(entries)} message(s) failed: {exc}")
                    return
                time.sleep(backoff.next_delay())
        if kind == "delete":
            self.deleted += len(response.get("Successful", []))
        for failure in response.get("Failed", []):
            self.failed += 1
            self.warn(f"{what} failed ({failure.get('Code')}): the message will be delivered again")


class Holder(threading.Thread):
    """Keeps peeked messages invisible while the session runs, then hands them back (visibility 0).

    Every ReceiveMessage counts toward the queue's maxReceiveCount, so re-receiving what was
    already shown would walk good messages into the DLQ; holding them costs each message exactly
    one receive per peek session.
    """

    def __init__(self, acker: Acker, hold_s: int, stop: threading.Event):
        super().__init__(name="kinase-hold", daemon=True)
        self.acker, self.hold_s, self.stop = acker, hold_s, stop
        self._handles: list[str] = []
        self._lock = threading.Lock()

    def hold(self, handle: str) -> None:
        with self._lock:
            self._handles.append(handle)

    def run(self) -> None:
        while not self.stop.wait(self.hold_s / 3):
            with self._lock:
                handles = list(self._handles)
            for handle in handles:
                self.acker.set_visibility(handle, self.hold_s)

    def release(self) -> None:
        with self._lock:
            handles, self._handles = self._handles, []
        for handle in handles:
            self.acker.set_visibility(handle, 0)


class DepthPoller(threading.Thread):
    """Queue and DLQ depth (visible, in flight) every `every_s` seconds."""

    def __init__(self, sqs, queue_url: str, dlq_url: str | None, stats, stop: threading.Event, every_s: float = 2.0):
        super().__init__(name="kinase-depth", daemon=True)
        self.sqs, self.queue_url, self.dlq_url, self.stats, self.stop, self.every_s = sqs, queue_url, dlq_url, stats, stop, every_s

    def poll(self) -> None:
        try:
            results = queues.depth(self.sqs, self.queue_url)
            dlq = queues.depth(self.sqs, self.dlq_url) if self.dlq_url else None
        except Exception:  # depth is informative only; the receivers report connection trouble
            return
        with self.stats.lock:
            self.stats.queue_depth, self.stats.in_flight = results
            if dlq is not None:
                self.stats.dlq_depth = dlq.visible

    def run(self) -> None:
        while True:
            self.poll()
            if self.stop.wait(self.every_s):
                return
