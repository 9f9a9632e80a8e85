"""The demo's events: its video's rules put in force before the worker starts, and the events queue read after it.

The demo's video (event_samples.events_video) has a counting line and a zone whose every crossing, entry,
exit and dwell is known, so what the worker published can be counted against that truth (scoring.event_counts).
"""

from __future__ import annotations

import io
import time

from rich.console import Console

from kinase_cli.ui import console
from kinase_cli.watch.events_session import EventOptions, EventSession
from kinase_cli.watch.session import Resources

DRAIN_IDLE_TIMEOUT_S = 30


def apply_rules(target, out: dict, doc: dict) -> int:
    """Put `doc` in force in the environment (as `kinase rules apply` does); returns its version. The worker
    reads the rules in force when it starts, so this comes before it."""
    from worker import rules
    from worker.contract import iso

    return rules.publish(target.client("s3"), out["FramesBucketName"], doc, iso(time.time()))


def read(target, out: dict) -> tuple[list[dict], dict]:
    """Every event on the events queue (deduplicated by event_id, deleted once read, as `kinase events` does),
    read after the worker has exited: it publishes a frame's events before the frame, so the last frame
    watched means the last event sent. Returns the events and the session's summary."""
    resources = Resources(
        sqs=target.client("sqs"),
        s3=target.client("s3"),
        queue_url=out["EventsQueueUrl"],
        dlq_url=out.get("EventsDeadLetterQueueUrl"),
        bucket=out["FramesBucketName"],
    )
    found: list[dict] = []
    opts = EventOptions(idle_timeout=DRAIN_IDLE_TIMEOUT_S, plain_lines=False, on_event=found.append)
    unshown = Console(file=io.StringIO())  # counted, not listed: the demo's summary shows them against the truth
    summary, _ = EventSession(resources, opts, unshown, console.err).run()
    return found, summary
