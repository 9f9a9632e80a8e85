"""`kinase events`: the watcher's session (receivers, acks, --save, the live table) on the events queue.

What differs from `kinase watch`, and why:
- Bodies are `kinase.event/1` (worker/events/contract.py). SQS and SNS deliver at least once, so the
  same event may come twice under two message ids: it is shown once (deduplicated by `event_id`),
  and the extra copy is deleted and counted.
- Events the filters hide stay on the queue for other readers: they are held out of sight while the
  session runs (so it sees each of them once: every receive counts toward the queue's
  maxReceiveCount) and made visible again when it ends, never deleted.
- Without `--follow` the session drains: it stops once a receive, asked after the last batch it
  handled, comes back empty. One receiver then, so "after" means something.
Invalid messages are counted and left to come back, as in `kinase watch`: after maxReceiveCount
receives SQS moves them to the events dead-letter queue.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kinase_cli.ui import jsonout
from kinase_cli.watch import events_view
from kinase_cli.watch.event_stats import EventStats
from kinase_cli.watch.receiving import Holder, Received
from kinase_cli.watch.session import PEEK_HOLD_S, REFRESH_PER_SECOND, REMEMBERED_IDS, RETRY_VISIBILITY_S, Session

DRAIN_POLL_S = 1
FOLLOW_RECEIVERS = 4


def accept(body: str) -> dict:
    """The validated event; raises ContractError (EventError) when the body is not a v1 event.

    The time is parsed here too: the schema's date-time format is only checked when jsonschema's
    optional format support is installed.
    """
    from worker.contract import parse_iso
    from worker.events.contract import EventError, parse

    event = parse(body)
    try:
        parse_iso(event["time"])
    except ValueError:
        raise EventError(f"invalid at time: {event['time']!r} is not a date-time") from None
    return event


@dataclass(frozen=True)
class EventFilter:
    """The operator's `--stream` and `--type` (each repeatable; empty: everything)."""

    streams: frozenset[str] = frozenset()
    types: frozenset[str] = frozenset()

    def shows(self, event: dict) -> bool:
        return (not self.streams or event["stream_name"] in self.streams) and (not self.types or event["type"] in self.types)


@dataclass(frozen=True)
class EventOptions:
    json: bool = False
    save: Path | None = None
    filter: EventFilter = EventFilter()
    count: int | None = None
    idle_timeout: float | None = None
    follow: bool = False
    peek: bool = False
    plain_lines: bool = True
    on_event: Callable[[dict], None] | None = None  # sees every shown event (the demo counts them)

    @property
    def receivers(self) -> int:
        return FOLLOW_RECEIVERS if self.follow else 1


class EventSession(Session):
    stats_class = EventStats
    noun = "event"

    def __init__(self, res, opts: EventOptions, out, err):
        super().__init__(res, opts, out, err)
        if self.holder is None:  # filtered-out events are held even when shown ones are deleted
            self.holder = Holder(self.acker, PEEK_HOLD_S, self.stop)
        self._drained_after = 0  # the receiver's empty polls when the newest batch was handled

    def _poll_wait_s(self) -> int:
        wait = super()._poll_wait_s()
        return wait if self.opts.follow else min(wait, DRAIN_POLL_S)

    def _ended(self) -> str | None:
        if self.opts.follow:
            return None
        empty_polls = self.receivers[0].empty_polls  # read before the queue: a batch put after it is still seen below
        if empty_polls > self._drained_after and self.batches.empty():
            return "queue drained"
        return None

    def _live(self):
        from rich.live import Live

        def render():
            rows = max(3, self.out.size.height - 8)
            return events_view.live(self.stats, self.res.queue_url.rsplit("/", 1)[-1], rows)

        return Live(get_renderable=render, console=self.out, refresh_per_second=REFRESH_PER_SECOND, vertical_overflow="crop")

    def _handle(self, received: Received) -> bool:
        """Validate, deduplicate, filter, show and ack one message; False when it showed nothing new."""
        from worker.events.contract import EventError

        self._drained_after = self.receivers[0].empty_polls
        try:
            event = accept(received.body)
        except EventError as exc:
            self.budget.settled(False)
            if self.opts.peek:
                self.holder.hold(received.receipt_handle)
            else:
                self.acker.set_visibility(received.receipt_handle, RETRY_VISIBILITY_S)
            row = self.stats.bad(received.message_id, exc.reason)
            if row is not None:
                self._show_bad(received, row)
            return row is not None
        if event["event_id"] in self.handled:
            self.budget.settled(False)
            self.stats.duplicate()
            self._done(received)
            return False
        self.handled[event["event_id"]] = None
        if len(self.handled) > REMEMBERED_IDS:
            self.handled.popitem(last=False)
        if not self.opts.filter.shows(event):
            with self.stats.lock:
                self.stats.filtered += 1
            self.budget.settled(False)
            self.holder.hold(received.receipt_handle)
            return True
        row = self.stats.event(event)
        self.budget.settled(True)
        self._show(event, row)
        if self.opts.on_event is not None:
            self.opts.on_event(event)
        key = event.get("snapshot_key")
        if self.saver is None or key is None:  # null: the frame's JPEG was not uploaded
            self._done(received)
        else:
            self.saver.submit(key).add_done_callback(lambda f: self._saved(f, received, key))
        return True

    def _done(self, received: Received) -> None:
        if self.opts.peek:
            self.holder.hold(received.receipt_handle)
        else:
            self.acker.delete(received.receipt_handle)

    def _show(self, event: dict, row) -> None:
        """Show one event; in live mode its cells are built here, so a row that cannot render is never acked."""
        if self.mode == "live":
            events_view.cells(row)
        elif self.mode == "json":
            jsonout.emit_line(event)
        elif self.mode == "plain":
            self.out.file.write(events_view.line(row) + "\n")
            self.out.file.flush()
