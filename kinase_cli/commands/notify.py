"""`kinase notify`: who is told about events (e-mail, HTTPS webhooks, SQS queues), through the environment's events topic."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from kinase_cli.aws.target import Target
from kinase_cli.options import Json, Yes, with_target
from kinase_cli.ui import console, jsonout
from kinase_cli.ui.confirm import confirm
from kinase_cli.ui.errors import KinaseError
from kinase_cli.ui.text import join, plain, visible

notify_app = typer.Typer(
    help="Subscribe e-mail addresses, webhooks and SQS queues to the environment's events (alerts by default).",
    no_args_is_help=True,
    epilog="Examples:\n\n  kinase notify add email:ops@example.com\n\n"
    "  kinase notify add https://hooks.example.com/kinase --type line_crossed --stream door-cam\n\n"
    "  kinase notify ls --json\n\n  kinase notify rm email:ops@example.com --yes",
)

Endpoint = Annotated[
    str,
    typer.Argument(help="email:ADDRESS, https://URL (http://URL: unencrypted) or sqs:QUEUE_ARN.", show_default=False),
]


@notify_app.command(
    "add",
    epilog="Examples:\n\n  kinase notify add email:ops@example.com\n\n"
    "  kinase notify add https://hooks.example.com/kinase --type dwell --class car\n\n"
    "  kinase notify add sqs:arn:aws:sqs:eu-west-1:123456789012:my-events --all --stream cam1 --local",
)
@with_target
def add(
    endpoint: Endpoint,
    type_: Annotated[Optional[list[str]], typer.Option("--type", help="Only events of this type (repeatable).", show_default=False)] = None,
    stream: Annotated[
        Optional[list[str]], typer.Option("--stream", help="Only events of this stream (repeatable).", show_default=False)
    ] = None,
    class_: Annotated[
        Optional[list[str]], typer.Option("--class", help="Only events about this object class (repeatable).", show_default=False)
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every event, not only alerts (the events an alert rule chose).")] = False,
    json_: Json = False,
    *,
    target: Target,
) -> None:
    """Subscribe an endpoint to the environment's events: alerts only unless --all, narrowed by --type, --stream, --class.

    E-mail and HTTPS endpoints must confirm first: SNS sends them a confirmation message (a link, or a
    SubscriptionConfirmation POST whose SubscribeURL the webhook must visit); nothing is delivered before.
    A webhook receives SNS's signed Notification JSON, the event in its Message; a queue receives the
    event itself (raw delivery) and must allow the topic to send to it (kinase says how).
    """
    from kinase_cli.workflows import notify

    wanted = notify.parse_endpoint(endpoint)
    policy = notify.filter_policy(types=type_ or [], streams=stream or [], classes=class_ or [], every_event=all_)
    if wanted.protocol == "http":
        console.warn("http:// endpoints receive the events unencrypted; prefer https://")
    created = notify.Topic(target).subscribe(wanted, policy)
    if json_:
        jsonout.emit("notify add", created)
    else:
        _say("subscribed ", plain(wanted.text, style="bold", limit=200), f" to environment {target.env}'s events: ")
        _say("  ", plain(notify.describe_filter(policy), limit=500))
    if wanted.protocol in notify.CONFIRMED_BY_ENDPOINT:
        console.info(
            f"{wanted.protocol} endpoints must confirm: SNS sends {visible(wanted.text, limit=200)} a confirmation message, "
            "and nothing is delivered until it is confirmed"
        )
    if wanted.protocol == "sqs":
        console.info(
            "the queue's access policy must allow sqs:SendMessage to the service principal sns.amazonaws.com "
            f"with the condition aws:SourceArn = {created['topic_arn']} (and SSE-SQS or a KMS key SNS may use)"
        )


@notify_app.command(
    "ls", epilog="Examples:\n\n  kinase notify ls\n\n  kinase notify ls --local --json | jq '.data.subscriptions[].endpoint'"
)
@with_target
def ls(json_: Json = False, *, target: Target) -> None:
    """List the subscriptions of the environment's events topic: protocol, endpoint, filter, whether confirmation is pending."""
    from rich.table import Table

    from kinase_cli.workflows import notify

    topic = notify.Topic(target)
    rows = topic.subscriptions()
    if json_:
        jsonout.emit("notify ls", {"topic_arn": topic.arn, "subscriptions": rows})
        return
    table = Table(title=f"events of environment {target.env}")
    for column in ("protocol", "endpoint", "filter", "pending confirmation"):
        table.add_column(column, overflow="fold")
    for row in rows:
        shown = "[dim](unknown until confirmed)[/dim]" if row["pending_confirmation"] and row["subscription_arn"] is None else None
        table.add_row(
            row["protocol"],
            join(plain(row["endpoint"], limit=300), ("  (kinase events)", "dim") if row["events_queue"] else ""),
            shown or plain(notify.describe_filter(row["filter"]), limit=500),
            "yes" if row["pending_confirmation"] else "no",
        )
    console.out.print(table)


@notify_app.command(
    "rm",
    epilog="Examples:\n\n  kinase notify rm email:ops@example.com\n\n"
    "  kinase notify rm arn:aws:sns:eu-west-1:123456789012:kinase-dev-storage-EventsTopic:0f1e... --yes --json",
)
@with_target
def rm(
    endpoint: Annotated[str, typer.Argument(help="The endpoint as `notify add` took it, or the subscription ARN.", show_default=False)],
    yes: Yes = False,
    json_: Json = False,
    *,
    target: Target,
) -> None:
    """Remove a subscription: nothing more is delivered to that endpoint (asks first unless --yes)."""
    from kinase_cli.workflows import notify

    topic = notify.Topic(target)
    found = topic.find(endpoint)
    if not found:
        raise KinaseError(f"no subscription of {visible(endpoint, limit=200)} to the events", "see `kinase notify ls`")
    (row,) = found
    confirm(f"Stop delivering events to {visible(row['endpoint'], limit=200)} ({notify.describe_filter(row['filter'])})?", yes)
    topic.unsubscribe(row)
    if json_:
        jsonout.emit("notify rm", {"removed": row})
        return
    _say("removed ", plain(row["endpoint"], style="bold", limit=200))


def _say(*parts) -> None:
    """What was done, on stderr (stdout is for --json and `ls`'s table); endpoints are the operator's text, never markup."""
    console.err.print(join(*parts), highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.add_typer(notify_app, name="notify")
