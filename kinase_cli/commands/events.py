"""`kinase events`: read the events queue (lines crossed, zones, dwell, first sightings, cameras) as a table or JSON lines."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from kinase_cli.aws import outputs
from kinase_cli.aws.target import Target
from kinase_cli.options import Json, with_target
from kinase_cli.ui import console
from kinase_cli.ui.errors import KinaseError
from kinase_cli.ui.text import visible

EPILOG = """\
Examples:

  kinase events --local                        # what is queued now, then stop
  kinase events --follow                       # live table until Ctrl+C
  kinase events --follow --type line_crossed --stream cam1
  kinase events --json | jq -c '{type, stream_name, counts}'
  kinase events --follow --save snapshots/     # each event's annotated frame
  kinase events --peek                         # look without consuming

`kinase events` owns the events queue: each event it shows is deleted (--peek leaves them for others).
Events the filters hide stay on the queue. `kinase watch` and the web view read counts from frames, not from this queue.

Messages that break the event contract are counted and left on the queue; after the queue's maxReceiveCount receives SQS moves them to its dead-letter queue.
"""


@with_target
def events(
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep reading as events arrive (without it: show what is queued, then stop).")
    ] = False,
    json_: Json = False,
    stream: Annotated[
        Optional[list[str]],
        typer.Option("--stream", metavar="NAME", help="Show only events of this stream (repeatable).", show_default=False),
    ] = None,
    types: Annotated[
        Optional[list[str]], typer.Option("--type", metavar="TYPE", help="Show only events of this type (repeatable).", show_default=False)
    ] = None,
    count: Annotated[Optional[int], typer.Option("--count", "-n", min=1, help="Stop after N shown events.", show_default=False)] = None,
    idle_timeout: Annotated[
        Optional[float],
        typer.Option("--idle-timeout", metavar="SECONDS", min=0.1, help="Stop after this long without a new event.", show_default=False),
    ] = None,
    save: Annotated[
        Optional[Path],
        typer.Option(
            "--save", metavar="DIR", help="Download each shown event's snapshot (its annotated frame) into DIR.", show_default=False
        ),
    ] = None,
    peek: Annotated[
        bool,
        typer.Option("--peek", help="Show without deleting: events go back on the queue when the command ends (each costs one receive)."),
    ] = False,
    *,
    target: Target,
) -> None:
    """Show events: time, stream, event, object (class #track), where (line and direction, or zone), counts.

    Ends when the queue is drained (or, with --follow, on --count, --idle-timeout or Ctrl+C), always with a summary on stderr and exit code 0.
    """
    from worker.events.contract import TYPES

    unknown = [t for t in types or () if t not in TYPES]
    if unknown:
        raise KinaseError(f"unknown event type '{visible(unknown[0], limit=60)}'", f"use one of {', '.join(TYPES)}", exit_code=2)
    from kinase_cli.watch.events_session import EventFilter, EventOptions, EventSession
    from kinase_cli.watch.events_view import summary_text
    from kinase_cli.watch.session import Resources

    out = outputs.read(target, required=("storage",))
    resources = Resources(
        sqs=target.client("sqs"),
        s3=target.client("s3"),
        queue_url=out["EventsQueueUrl"],
        dlq_url=out.get("EventsDeadLetterQueueUrl"),
        bucket=out["FramesBucketName"],
    )
    opts = EventOptions(
        json=json_,
        save=save,
        filter=EventFilter(streams=frozenset(stream or ()), types=frozenset(types or ())),
        count=count,
        idle_timeout=idle_timeout,
        follow=follow,
        peek=peek,
    )
    summary, reason = EventSession(resources, opts, console.out, console.err).run()
    console.info(summary_text(summary, reason))


def register(app: typer.Typer) -> None:
    app.command("events", epilog=EPILOG)(events)
