"""Where events go: one SNS topic per environment, and the events queue kinase itself reads (storage stack).

Workers publish every event to the topic with message attributes (worker/events/), so each
subscriber filters what it wants (`kinase notify add`: email, HTTPS webhooks, SQS queues, with a
filter policy). The events queue is subscribed with raw message delivery, so its bodies are the
event JSON itself (`kinase events` reads it), with a dead-letter queue like the results queue.

The topic is encrypted with the AWS-managed key `alias/aws/sns`: its key policy lets every
principal of the account use it through SNS, so publishers need no KMS grant of their own and no
customer key is kept (or paid for, or rotated). AWS services that publish as service principals
(CloudWatch alarms, EventBridge) cannot use that key, but only the workers publish here.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

SNS_MANAGED_KEY = "alias/aws/sns"
# `kinase events` may download an event's snapshot before deleting its message.
CONSUMER_VISIBILITY_SECONDS = 120
MAX_RECEIVES = 5


class EventsDelivery(Construct):
    def __init__(self, scope: Construct, id: str) -> None:
        super().__init__(scope, id)
        self.topic = sns.Topic(
            self,
            "Topic",
            master_key=kms.Alias.from_alias_name(self, "SnsManagedKey", SNS_MANAGED_KEY),
            enforce_ssl=True,
        )
        self.dead_letters = sqs.Queue(
            self,
            "DeadLetterQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=cdk.Duration.days(14),
        )
        self.queue = sqs.Queue(
            self,
            "Queue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            visibility_timeout=cdk.Duration.seconds(CONSUMER_VISIBILITY_SECONDS),
            retention_period=cdk.Duration.days(4),
            dead_letter_queue=sqs.DeadLetterQueue(queue=self.dead_letters, max_receive_count=MAX_RECEIVES),
        )
        self.topic.add_subscription(subscriptions.SqsSubscription(self.queue, raw_message_delivery=True))
