"""`kinase logs`: the worker's logs, from CloudWatch Logs or, on the local stack, the local runs' files."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from kinase_cli import interrupts
from kinase_cli.aws import outputs as stack_outputs
from kinase_cli.aws import taskdef
from kinase_cli.aws.log_tail import CloudWatchTail, poll_seconds, since_time
from kinase_cli.aws.target import Target
from kinase_cli.local import runs as local_runs
from kinase_cli.options import Json, with_target
from kinase_cli.ui import console, jsonout
from kinase_cli.ui.errors import KinaseError
from kinase_cli.ui.text import join, plain
from worker.contract import iso

EPILOG = """\
Examples:

  kinase logs                          # the last 10 minutes of every worker task
  kinase logs --follow --since 1h
  kinase logs --task 0123456789abcdef0123456789abcdef
  kinase logs --json | jq -r .message
  kinase logs --local                  # the local worker runs (`kinase run-task --local`)

--json prints one JSON object per line: {"timestamp", "task", "stream", "message"}.
"""


@with_target
def logs(
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new events until Ctrl-C.")] = False,
    since: Annotated[str, typer.Option("--since", help="Start this long ago (30s, 10m, 2h, 1d) or at an ISO time.")] = "10m",
    task: Annotated[Optional[str], typer.Option("--task", help="Only this task id (or ARN).", show_default=False)] = None,
    json_: Json = False,
    *,
    target: Target,
) -> None:
    """Show the worker's logs (CloudWatch Logs; with --local, the local worker runs' logs)."""
    start = since_time(since)
    task_id = task.rsplit("/", 1)[-1] if task else None
    outputs = stack_outputs.read(target, required=("compute",))
    if target.local:
        if task_id and not local_runs.log_file(task_id).exists():
            raise KinaseError(f"no local worker run {task_id}", f"list them with `kinase status{target.hint_flag()}`")
        tail = local_runs.Tail(start, [task_id] if task_id else None)
    else:
        streams = None
        if task_id:
            prefix = taskdef.log_stream_prefix(taskdef.current(target, outputs), outputs["ContainerName"])
            streams = [f"{prefix}/{task_id}" if prefix else task_id]
        tail = CloudWatchTail(target.client("logs", connect_timeout=5, read_timeout=10), outputs["LogGroupName"], start, streams)
    several = task_id is None

    def show() -> int:
        events = tail.poll()
        for event in events:
            if json_:
                jsonout.emit_line(event)
            else:
                where = f" {event['task'][:8]}" if several else ""
                console.out.print(
                    join((f"{event['timestamp']}", "dim"), plain(where, style="dim"), " ", plain(event["message"])),
                    highlight=False,
                    soft_wrap=True,
                )
        return len(events)

    if not follow:
        if not show() and not json_:
            console.info(f"no worker log events since {iso(start)}")
        return
    # Ctrl-C / SIGTERM only set `stop`: the poll in progress (bounded by the client's timeouts)
    # completes and the loop ends, instead of an exception landing inside botocore (see interrupts).
    with interrupts.Stop() as stop:
        show()
        while not stop.wait(poll_seconds()):
            show()


def register(app: typer.Typer) -> None:
    app.command("logs", help=logs.__doc__, epilog=EPILOG)(logs)
