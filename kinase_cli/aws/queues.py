"""The one queue-depth reader: `status`, `watch` and `dlq` all count messages through it."""

from __future__ import annotations

from typing import NamedTuple

VISIBLE = "ApproximateNumberOfMessages"
IN_FLIGHT = "ApproximateNumberOfMessagesNotVisible"


class Depth(NamedTuple):
    """SQS's approximate counts: messages waiting to be received, and received but not yet deleted."""

    visible: int
    in_flight: int


def depth(sqs, url: str) -> Depth:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[VISIBLE, IN_FLIGHT])["Attributes"]
    return Depth(int(attrs.get(VISIBLE, 0)), int(attrs.get(IN_FLIGHT, 0)))
