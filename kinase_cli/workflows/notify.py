"""Subscriptions to the environment's events topic (`kinase notify`): endpoints, filter policies, listing, removal.

A subscriber says where (`email:ADDRESS`, `https://URL`, `sqs:QUEUE_ARN`) and which events: a filter
policy on the message attributes every event is published with (worker/events/attributes.py). By
default only alerts (alert = "true": the events an alert rule chose, after its cooldown), so a
person walking past a camera at 5 fps is not hundreds of e-mails. SNS evaluates the policy, so a
subscriber is never sent what it did not ask for.

The events queue the storage stack subscribes for `kinase events` is the stack's own subscription:
listed, never removed here (CloudFormation owns it).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from kinase_cli.aws import outputs
from kinase_cli.aws.target import Target
from kinase_cli.ui.errors import KinaseError
from kinase_cli.ui.text import visible
from worker.events import attributes

PENDING = "PendingConfirmation"  # the SubscriptionArn SNS lists for a subscription not confirmed yet
CONFIRMED_BY_ENDPOINT = ("email", "email-json", "http", "https")  # SNS sends these a confirmation message first
MAX_FILTER_COMBINATIONS = 150  # SNS: the product of the policy's value counts (Developer Guide, "Filter policy constraints")
ENDPOINT_FORMS = "give email:ADDRESS, https://URL or sqs:QUEUE_ARN"

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_SQS_ARN = re.compile(r"arn:aws[a-z-]*:sqs:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,80}(\.fifo)?")


@dataclass(frozen=True)
class Endpoint:
    protocol: str  # SNS's: email, https, http, sqs
    address: str  # SNS's Endpoint: the address, URL or queue ARN

    @property
    def text(self) -> str:
        """As the operator writes it (and `notify ls` shows it)."""
        return self.address if self.protocol in ("http", "https") else f"{self.protocol}:{self.address}"


def parse_endpoint(text: str) -> Endpoint:
    """`email:ADDRESS`, `https://URL` (or `http://URL`, unencrypted) or `sqs:QUEUE_ARN`; anything else is one error line."""
    shown = visible(text, limit=200)
    kind, _, rest = text.partition(":")
    if kind == "email":
        if not _EMAIL.fullmatch(rest):
            raise KinaseError(f"bad e-mail endpoint '{shown}': not an address", ENDPOINT_FORMS, exit_code=2)
        return Endpoint("email", rest)
    if kind in ("https", "http"):
        url = urlsplit(text)
        if not rest.startswith("//") or not url.hostname or re.search(r"\s", text):
            raise KinaseError(f"bad webhook endpoint '{shown}': not a URL with a host", ENDPOINT_FORMS, exit_code=2)
        return Endpoint(kind, text)
    if kind == "sqs":
        if not _SQS_ARN.fullmatch(rest):
            raise KinaseError(f"bad queue endpoint '{shown}': not an SQS queue ARN (arn:aws:sqs:REGION:ACCOUNT:NAME)", exit_code=2)
        return Endpoint("sqs", rest)
    raise KinaseError(f"bad endpoint '{shown}'", ENDPOINT_FORMS, exit_code=2)


def filter_policy(*, types: list[str], streams: list[str], classes: list[str], every_event: bool) -> dict[str, list[str]] | None:
    """The subscription's filter policy on the message attributes; None (every event) for `--all` alone."""
    from worker.events.contract import TYPES

    unknown = [t for t in types if t not in TYPES]
    if unknown:
        raise KinaseError(f"unknown event type '{visible(unknown[0], limit=60)}'", f"one of {', '.join(TYPES)}", exit_code=2)
    policy = {} if every_event else {attributes.ALERT: [attributes.TRUE]}
    for name, values in ((attributes.TYPE, types), (attributes.STREAM, streams), (attributes.CLASS, classes)):
        if values:
            policy[name] = sorted(set(values))
    combinations = math.prod(len(values) for values in policy.values())
    if combinations > MAX_FILTER_COMBINATIONS:
        raise KinaseError(
            f"the filter has {combinations} combinations of values; SNS allows {MAX_FILTER_COMBINATIONS}",
            "split it into several subscriptions",
            exit_code=2,
        )
    return policy or None


def describe_filter(policy: dict | None) -> str:
    """`alert=true type=line_crossed,dwell`, or `every event`."""
    if not policy:
        return "every event"
    return " ".join(f"{name}={','.join(str(v) for v in values)}" for name, values in policy.items())


class Topic:
    """The environment's events topic and its subscriptions."""

    def __init__(self, target: Target):
        out = outputs.read(target, required=("storage",))
        self.arn = out["EventsTopicArn"]
        self.events_queue = out["EventsQueueUrl"].rstrip("/").rsplit("/", 2)[-2:]  # [account, name]
        self.sns = target.client("sns")

    def subscriptions(self) -> list[dict]:
        """Every subscription: protocol, endpoint, filter, pending, whether it is the stack's own events queue, its ARN."""
        rows = []
        for page in self.sns.get_paginator("list_subscriptions_by_topic").paginate(TopicArn=self.arn):
            for sub in page["Subscriptions"]:
                arn = sub["SubscriptionArn"]
                pending = arn == PENDING
                policy = None
                if not pending:
                    attrs = self.sns.get_subscription_attributes(SubscriptionArn=arn)["Attributes"]
                    pending = attrs.get(PENDING, "false") == "true"
                    policy = json.loads(attrs["FilterPolicy"]) if attrs.get("FilterPolicy") else None
                endpoint = Endpoint(sub["Protocol"], sub["Endpoint"])
                rows.append(
                    {
                        "protocol": endpoint.protocol,
                        "endpoint": endpoint.text,
                        "filter": policy,
                        "pending_confirmation": pending,
                        "events_queue": self._is_events_queue(endpoint),
                        "subscription_arn": None if arn == PENDING else arn,
                    }
                )
        return rows

    def _is_events_queue(self, endpoint: Endpoint) -> bool:
        return endpoint.protocol == "sqs" and endpoint.address.split(":")[4:] == self.events_queue

    def subscribe(self, endpoint: Endpoint, policy: dict | None) -> dict:
        """A new subscription (an existing one for the endpoint is an error: SNS refuses other attributes for it)."""
        if any(row["endpoint"] == endpoint.text for row in self.subscriptions()):
            raise KinaseError(
                f"{visible(endpoint.text, limit=200)} is already subscribed", "`kinase notify rm` it first to change its filter"
            )
        attrs = {"FilterPolicyScope": "MessageAttributes", "FilterPolicy": json.dumps(policy)} if policy else {}
        if endpoint.protocol == "sqs":
            attrs["RawMessageDelivery"] = "true"  # the body is the event, as on kinase's own events queue
        arn = self.sns.subscribe(
            TopicArn=self.arn, Protocol=endpoint.protocol, Endpoint=endpoint.address, Attributes=attrs, ReturnSubscriptionArn=True
        )["SubscriptionArn"]
        pending = endpoint.protocol in CONFIRMED_BY_ENDPOINT and (
            self.sns.get_subscription_attributes(SubscriptionArn=arn)["Attributes"].get(PENDING, "false") == "true"
        )
        return {
            "subscription_arn": arn,
            "protocol": endpoint.protocol,
            "endpoint": endpoint.text,
            "filter": policy,
            "pending_confirmation": pending,
            "topic_arn": self.arn,
        }

    def find(self, text: str) -> list[dict]:
        """The subscriptions `text` names: a subscription ARN, or an endpoint as `add` takes it."""
        rows = self.subscriptions()
        if text.startswith("arn:") and ":sns:" in text:
            return [row for row in rows if row["subscription_arn"] == text]
        wanted = parse_endpoint(text).text
        return [row for row in rows if row["endpoint"] == wanted]

    def unsubscribe(self, row: dict) -> None:
        if row["events_queue"]:
            raise KinaseError(
                "that is the stack's own subscription of the events queue (`kinase events` reads it)", "it goes with `kinase destroy`"
            )
        if row["subscription_arn"] is None:
            raise KinaseError(
                f"{visible(row['endpoint'], limit=200)} has not confirmed its subscription yet, and SNS names no subscription to remove",
                "SNS deletes a subscription that is never confirmed",
            )
        self.sns.unsubscribe(SubscriptionArn=row["subscription_arn"])
