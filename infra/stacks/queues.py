"""The one shape of a queue that kinase reads (the results queue, the events queue): encrypted, TLS only, with its
own dead-letter queue after MAX_RECEIVES receives, a visibility long enough for a consumer that downloads a frame
or a snapshot before it deletes the message (`kinase watch`, `kinase events`)."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_sqs as sqs
from constructs import Construct

CONSUMER_VISIBILITY_SECONDS = 120
MAX_RECEIVES = 5


def consumer_queue(scope: Construct, id: str) -> tuple[sqs.Queue, sqs.Queue]:
    """The queue `id` and its dead-letter queue (`DeadLetterQueue` in `scope`)."""
    dead_letters = sqs.Queue(
        scope,
        "DeadLetterQueue",
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        retention_period=cdk.Duration.days(14),
    )
    queue = sqs.Queue(
        scope,
        id,
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        visibility_timeout=cdk.Duration.seconds(CONSUMER_VISIBILITY_SECONDS),
        retention_period=cdk.Duration.days(4),
        dead_letter_queue=sqs.DeadLetterQueue(queue=dead_letters, max_receive_count=MAX_RECEIVES),
    )
    return queue, dead_letters
