"""One watch session: receivers feed batches, the main thread validates, shows, saves, then acks.

A message is deleted only once it has been handled: shown (table row, plain line or JSON line)
and, with `--save`, written to disk or its save error reported. A save error is the operator's
disk, not the message: it is reported once for that frame (and counted in the summary) and the
message is deleted like any shown frame, never shown again nor walked to the DLQ. Whatever was
received and not handled when the watcher stops, for any reason, is handed back (visibility 0).
Messages that fail validation are never deleted: their
visibility is cut to `INVALID_VISIBILITY_S` so they come back quickly (another consumer may
understand them) and, after the queue's maxReceiveCount receives, SQS moves them to the DLQ.
Changing visibility does not count as a receive; each ReceiveMessage does.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from kinase_cli import interrupts
from kinase_cli.ui import jsonout
from kinase_cli.ui.errors import translate
from kinase_cli.ui.text import join, plain
from kinase_cli.watch import view
from kinase_cli.watch.messages import Filter, accept
from kinase_cli.watch.receiving import Acker, Budget, DepthPoller, Holder, Received, Receiver
from kinase_cli.watch.stats import Row, Stats

RETRY_VISIBILITY_S = 2
REMEMBERED_IDS = 100_000
# A receive still waiting when the watcher exits would take messages with it (invisible for the
# queue's visibility timeout), so exit waits for open polls: a short poll keeps that wait short.
LONG_POLL_S = 5
PEEK_HOLD_S = 60
REFRESH_PER_SECOND = 8


@dataclass(frozen=True)
class Options:
    json: bool = False
    save: Path | None = None
    filter: Filter = Filter()
    count: int | None = None
    idle_timeout: float | None = None
    peek: bool = False
    receivers: int = 4
    on_frame: Callable[[dict], None] | None = None  # sees every shown message (the demo scores them)
    plain_lines: bool = True  # without a terminal, a line per frame; the demo turns them off (its summary tells)


@dataclass(frozen=True)
class Resources:
    """Where the session reads from, all taken from the stack outputs."""

    sqs: object
    s3: object
    queue_url: str
    dlq_url: str | None
    bucket: str


class Session:
    stats_class = Stats
    noun = "frame"  # what a message shows, in the session's warnings

    def __init__(self, res: Resources, opts: Options, out: Console, err: Console):
        self.res, self.opts, self.out, self.err = res, opts, out, err
        self.stats = self.stats_class()
        self.budget = Budget(opts.count)
        self.stop = threading.Event()
        self.interrupted = interrupts.Stop()
        self.deep = threading.Event()
        self.batches: queue.Queue = queue.Queue(maxsize=max(2, opts.receivers * 2))
        self.handled: OrderedDict[str, None] = OrderedDict()
        self.mode = "json" if opts.json else ("live" if out.is_terminal else ("plain" if opts.plain_lines else "quiet"))
        self.acker = Acker(res.sqs, res.queue_url, self._warn)
        self.holder = Holder(self.acker, PEEK_HOLD_S, self.stop) if opts.peek else None
        self.saver = None
        if opts.save is not None:
            from kinase_cli.watch.saver import Saver

            self.saver = Saver(res.s3, res.bucket, opts.save)
        self.wait_s = self._poll_wait_s()
        self.receivers = [
            Receiver(
                i,
                res.sqs,
                res.queue_url,
                self.batches,
                self.budget,
                self.stop,
                self.deep,
                self.wait_s,
                PEEK_HOLD_S if opts.peek else None,
                self._status,
            )
            for i in range(max(1, opts.receivers))
        ]
        self.depth = DepthPoller(res.sqs, res.queue_url, res.dlq_url, self.stats, self.stop)

    def _poll_wait_s(self) -> int:
        """Seconds each long poll waits: no longer than --idle-timeout, so the watcher stops on time."""
        idle = self.opts.idle_timeout
        return LONG_POLL_S if idle is None else max(1, min(LONG_POLL_S, math.ceil(idle)))

    def _ended(self) -> str | None:
        """Why a subclass stops on its own (`kinase events` once the queue is drained); None to go on."""
        return None

    def _status(self, text: str) -> None:
        with self.stats.lock:
            self.stats.connection = text
        if self.mode != "live":
            self.err.print(plain(text, style="yellow"), highlight=False, soft_wrap=True)

    def _warn(self, text: str) -> None:
        if self.mode == "live":
            with self.stats.lock:
                self.stats.notice = text
        else:
            self.err.print(join(("warning:", "yellow"), " ", plain(text, limit=1000)), highlight=False, soft_wrap=True)

    def run(self) -> tuple[dict, str]:
        """Watch until --count, --idle-timeout or Ctrl+C; returns the summary and why it ended."""
        self.acker.start()
        self.depth.start()
        if self.holder:
            self.holder.start()
        for r in self.receivers:
            r.start()
        reason = "interrupted"
        display = self._live() if self.mode == "live" else nullcontext()
        try:
            # Ctrl+C, `kill` or a closed terminal set `interrupted`, checked between messages: no
            # exception lands inside a queue or SDK lock, so the shutdown below cannot deadlock on one.
            with self.interrupted, display:
                reason = self._loop()
        except KeyboardInterrupt:  # in-process callers without signal handlers
            reason = "interrupted"
        finally:
            self._shutdown(interrupted=reason == "interrupted")
        error = next((r.error for r in self.receivers if r.error is not None), None)
        if error is not None:
            raise translate(error) or error
        return self.stats.summary(), reason

    def _live(self):
        from rich.live import Live

        def render():
            rows = max(3, self.out.size.height - 10)
            return view.live(self.stats, self.res.queue_url.rsplit("/", 1)[-1], rows)

        return Live(get_renderable=render, console=self.out, refresh_per_second=REFRESH_PER_SECOND, vertical_overflow="crop")

    def _loop(self) -> str:
        last_activity = time.monotonic()
        while True:
            if self.interrupted.is_set():
                return "interrupted"
            if self.budget.exhausted:
                return f"--count {self.opts.count} reached"
            if self.stop.is_set():
                return "error"
            ended = self._ended()
            if ended is not None:
                return ended
            if self.opts.idle_timeout is not None and time.monotonic() - last_activity >= self.opts.idle_timeout:
                return f"idle for {self.opts.idle_timeout:g}s"
            try:
                batch = self.batches.get(timeout=0.1)
            except queue.Empty:
                continue
            for i, received in enumerate(batch):
                if self.interrupted.is_set():
                    self._release(batch[i:])
                    return "interrupted"
                try:
                    if self._handle(received):
                        last_activity = time.monotonic()
                except BaseException:
                    self._release(batch[i:])
                    raise

    def _handle(self, received: Received) -> bool:
        """Validate, filter, show and ack one message; False for a message seen before.

        SQS delivers at least once: a redelivered message (same id) is acked again, not shown twice.
        """
        from worker.contract import ContractError

        try:
            message = accept(received.body, self.res.bucket)
        except ContractError as exc:
            self.budget.settled(False)
            if self.holder:
                self.holder.hold(received.receipt_handle)
            else:
                self.acker.set_visibility(received.receipt_handle, RETRY_VISIBILITY_S)
            row = self.stats.bad(received.message_id, exc.reason)
            if row is not None:
                self._show_bad(received, row)
            return row is not None
        if received.message_id in self.handled:
            self.budget.settled(False)
            self._done(received)
            return False
        self.handled[received.message_id] = None
        if len(self.handled) > REMEMBERED_IDS:
            self.handled.popitem(last=False)
        detections = self.opts.filter.detections(message)
        if detections is None:
            with self.stats.lock:
                self.stats.filtered += 1
            self.budget.settled(False)
            self._done(received)
            return True
        row = self.stats.frame(message, detections)
        self.budget.settled(True)
        self._show(message, row)
        if self.opts.on_frame is not None:
            self.opts.on_frame(message)
        if self.saver is None or message["key"] is None:  # key null: the worker's upload policy kept this frame out of S3
            self._done(received)
        else:
            self.saver.submit(message["key"]).add_done_callback(lambda f: self._saved(f, received, message["key"]))
        return True

    def _saved(self, future, received: Received, key: str) -> None:
        error = future.exception()
        if error is None:
            with self.stats.lock:
                self.stats.saved += 1
            self._done(received)
            return
        with self.stats.lock:
            self.stats.save_errors += 1
        described = translate(error)
        self._warn(f"{self.noun} shown but not saved: {key}: {described.line() if described else error}")
        self._done(received)

    def _done(self, received: Received) -> None:
        if self.holder:
            self.holder.hold(received.receipt_handle)
        else:
            self.acker.delete(received.receipt_handle)

    def _show(self, message: dict, row: Row) -> None:
        """Show one frame; in live mode its cells are built here, so a row that cannot render is never acked."""
        if self.mode == "live":
            view.cells(row)
        elif self.mode == "json":
            jsonout.emit_line(message)
        elif self.mode == "plain":
            self.out.file.write(view.line(row) + "\n")
            self.out.file.flush()

    def _show_bad(self, received: Received, row: Row) -> None:
        if self.mode != "live":
            self._warn(f"invalid message {received.message_id} (receive #{received.receive_count}): {row.error}")

    def _release(self, batch: list[Received]) -> None:
        for received in batch:
            self.acker.set_visibility(received.receipt_handle, 0)

    def _shutdown(self, interrupted: bool) -> None:
        """Stop receiving, hand back what was received but not handled, finish saves and acks."""
        quit_now = "Ctrl+C again to quit now" if interrupted else "Ctrl+C to quit now"
        self.stop.set()
        deadline = time.monotonic() + self.wait_s + 2
        told = False
        while any(r.is_alive() for r in self.receivers) and time.monotonic() < deadline:
            if not told and time.monotonic() > deadline - self.wait_s - 1.5:
                self.err.print(
                    f"finishing: waiting up to {self.wait_s}s for open receives, to hand back what they get ({quit_now})",
                    style="dim",
                    highlight=False,
                    soft_wrap=True,
                )
                told = True
            self._release_queued()
            time.sleep(0.05)
        self._release_queued()
        if self.saver is not None:
            self.saver.close()
        if self.holder:
            self.holder.release()
        self.acker.close()

    def _release_queued(self) -> None:
        while True:
            try:
                self._release(self.batches.get_nowait())
            except queue.Empty:
                return
