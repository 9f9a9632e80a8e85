"""Where results land: annotated frames in S3, one message per frame in SQS (with a dead-letter queue), events in SNS."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra import naming
from infra.stacks.events import EventsDelivery
from infra.stacks.fleet import lease_table
from infra.stacks.outputs import output
from infra.stacks.queues import consumer_queue
from worker.layout import FRAMES_PREFIX, INPUTS_PREFIX

FRAMES_EXPIRE_DAYS = naming.FRAMES_EXPIRE_DAYS
# Videos `kinase run-task --source FILE` uploads under inputs/ for the worker to read.
INPUTS_EXPIRE_DAYS = 7
ACCESS_LOGS_EXPIRE_DAYS = 90


class StorageStack(cdk.Stack):
    def __init__(self, scope: Construct, id: str, **kwargs) -> None:
        super().__init__(scope, id, **kwargs)
        access_logs = s3.Bucket(
            self,
            "AccessLogsBucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[s3.LifecycleRule(expiration=cdk.Duration.days(ACCESS_LOGS_EXPIRE_DAYS))],
            # Audit logs outlive the stack (and a bucket that still holds objects cannot be deleted).
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )
        self.bucket = s3.Bucket(
            self,
            "FramesBucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=access_logs,
            server_access_logs_prefix="frames-bucket/",
            lifecycle_rules=[
                s3.LifecycleRule(id="expire-frames", prefix=FRAMES_PREFIX, expiration=cdk.Duration.days(FRAMES_EXPIRE_DAYS)),
                s3.LifecycleRule(id="expire-inputs", prefix=INPUTS_PREFIX, expiration=cdk.Duration.days(INPUTS_EXPIRE_DAYS)),
                s3.LifecycleRule(id="abort-uploads", abort_incomplete_multipart_upload_after=cdk.Duration.days(1)),
            ],
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        self.queue, self.dead_letters = consumer_queue(self, "ResultsQueue")
        self.leases = lease_table(self)
        self.events = EventsDelivery(self, "Events")

        output(self, "FramesBucketName", export=True, value=self.bucket.bucket_name)
        output(self, "ResultsQueueUrl", export=True, value=self.queue.queue_url)
        output(self, "ResultsQueueArn", export=True, value=self.queue.queue_arn)
        output(self, "DeadLetterQueueUrl", export=True, value=self.dead_letters.queue_url)
        output(self, "LeaseTableName", export=True, value=self.leases.table_name)
        output(self, "EventsTopicArn", export=True, value=self.events.topic.topic_arn)
        output(self, "EventsQueueUrl", value=self.events.queue.queue_url)
