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

from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from infra.stacks.queues import consumer_queue

SNS_MANAGED_KEY = "alias/aws/sns"


class EventsDelivery(Construct):
    def __init__(self, scope: Construct, id: str) -> None:
        super().__init__(scope, id)
        self.topic = sns.Topic(
            self,
            "Topic",
            master_key=kms.Alias.from_alias_name(self, "SnsManagedKey", SNS_MANAGED_KEY),
            enforce_ssl=True,
        )
        self.queue, self.dead_letters = consumer_queue(self, "Queue")
        self.topic.add_subscription(subscriptions.SqsSubscription(self.queue, raw_message_delivery=True))
