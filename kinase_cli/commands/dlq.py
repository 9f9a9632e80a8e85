"""`kinase dlq`: the results queue's dead-letter queue: list (with why), redrive, purge."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Annotated

import typer

from kinase_cli.aws import outputs, queues
from kinase_cli.aws.target import Target
from kinase_cli.options import Json, Yes, with_target
from kinase_cli.ui import console, jsonout
from kinase_cli.ui.confirm import confirm
from kinase_cli.ui.errors import KinaseError
from kinase_cli.watch import deadletter
from worker.retry import error_code

PURGE_INTERVAL = 60  # seconds SQS requires between two purges of one queue

dlq = typer.Typer(
    help="Inspect and drain the results dead-letter queue (messages `kinase watch` could not accept).",
    no_args_is_help=True,
    epilog="Examples:\n\n  kinase dlq ls --local\n\n  kinase dlq redrive -y\n\n  kinase dlq purge --yes",
)


def _queues(target: Target):
    out = outputs.read(target, required=("storage",))
    return target.client("sqs"), out


@dlq.command("ls", epilog="Examples:\n\n  kinase dlq ls\n\n  kinase dlq ls --json | jq '.data.messages[].reason'")
@with_target
def ls(
    json_: Json = False,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10000, help="Read at most this many messages.")] = 1000,
    *,
    target: Target,
) -> None:
    """List dead letters: id, first received, receive count and why each fails validation.

    Reading counts as a receive: each listed message's receive count grows by one.
    """
    from kinase_cli.ui.text import join, plain

    sqs, out = _queues(target)
    url = out["DeadLetterQueueUrl"]
    letters = deadletter.peek(sqs, url, out.get("FramesBucketName"), limit)
    if json_:
        jsonout.emit("dlq ls", {"queue_url": url, "messages": [d.as_dict() for d in letters]})
        return
    if not letters:
        console.info("the dead-letter queue is empty")
        return
    for d in letters:
        first = (
            "-"
            if d.first_received is None
            else datetime.fromtimestamp(d.first_received / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        )
        console.out.print(
            join(plain(d.message_id, style="bold"), f"  first received {first} UTC  receives {d.receive_count}"),
            highlight=False,
            soft_wrap=True,
        )
        console.out.print(
            join("    ", plain(d.reason, style="green" if d.reason == "valid" else "red", limit=500)), highlight=False, soft_wrap=True
        )
    console.info(f"{len(letters)} dead letter(s) in {url.rsplit('/', 1)[-1]}; listing counts as one more receive of each")


@dlq.command("redrive", epilog="Examples:\n\n  kinase dlq redrive\n\n  kinase dlq redrive --local -y --json")
@with_target
def redrive(yes: Yes = False, json_: Json = False, *, target: Target) -> None:
    """Move every dead letter back to the results queue (after fixing what made them fail).

    Each message is sent to the results queue before it is deleted from the DLQ, so nothing is lost.
    """
    from kinase_cli.ui.text import join, plain

    sqs, out = _queues(target)
    source, destination = out["DeadLetterQueueUrl"], out["ResultsQueueUrl"]
    waiting = queues.depth(sqs, source).visible
    moved, problems = 0, []
    if waiting == 0:
        console.info("the dead-letter queue is empty")
    else:
        confirm(f"Move {waiting} message(s) from the dead-letter queue back to the results queue?", yes)
        moved, problems = deadletter.move(sqs, source, destination)
        console.info(f"moved {moved} message(s) to {destination.rsplit('/', 1)[-1]}")
    if json_:
        jsonout.emit("dlq redrive", {"from_queue_url": source, "to_queue_url": destination, "moved": moved, "problems": problems})
    if problems:
        for problem in problems:
            console.err.print(join(("warning:", "yellow"), " ", plain(problem, limit=500)), highlight=False, soft_wrap=True)
        raise KinaseError(f"{len(problems)} message(s) were not moved cleanly", "run `kinase dlq ls` and retry")


@dlq.command("purge", epilog="Examples:\n\n  kinase dlq purge --yes\n\n  kinase dlq purge --local --yes --json")
@with_target
def purge(yes: Yes = False, json_: Json = False, *, target: Target) -> None:
    """Delete every message in the dead-letter queue (asks first unless --yes)."""
    sqs, out = _queues(target)
    url = out["DeadLetterQueueUrl"]
    waiting = queues.depth(sqs, url).visible
    confirm(f"Delete all {waiting} message(s) in the dead-letter queue? This cannot be undone.", yes)
    _purge(sqs, url)
    if json_:
        jsonout.emit("dlq purge", {"queue_url": url, "purged": waiting})
        return
    console.info(f"purged {url.rsplit('/', 1)[-1]} ({waiting} message(s))")


def _purge(sqs, url: str) -> None:
    """PurgeQueue, waiting out SQS's one purge per queue per 60 seconds (PurgeQueueInProgress) rather than
    failing a purge the operator confirmed."""
    from botocore.exceptions import ClientError

    deadline = time.monotonic() + PURGE_INTERVAL + 10
    while True:
        try:
            sqs.purge_queue(QueueUrl=url)
            return
        except ClientError as exc:
            if not error_code(exc).endswith("PurgeQueueInProgress") or time.monotonic() > deadline:
                raise
            console.info(f"{url.rsplit('/', 1)[-1]} was purged less than {PURGE_INTERVAL} s ago (SQS allows one purge a minute): waiting")
            time.sleep(5)


def register(app: typer.Typer) -> None:
    app.add_typer(dlq, name="dlq")
