"""Helpers for the watch and dlq tests: the deployed local stack as they use it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from support.poll import until


@dataclass
class Stack:
    outputs: dict
    endpoint: str
    _clients: dict = field(default_factory=dict)

    def client(self, service: str):
        if service not in self._clients:
            import boto3

            self._clients[service] = boto3.client(
                service,
                endpoint_url=self.endpoint,
                region_name="us-east-1",
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
        return self._clients[service]

    @property
    def queue(self) -> str:
        return self.outputs["ResultsQueueUrl"]

    @property
    def dlq(self) -> str:
        return self.outputs["DeadLetterQueueUrl"]

    @property
    def bucket(self) -> str:
        return self.outputs["FramesBucketName"]

    @property
    def max_receives(self) -> int:
        """The results queue's maxReceiveCount, as deployed."""
        attrs = self.client("sqs").get_queue_attributes(QueueUrl=self.queue, AttributeNames=["RedrivePolicy"])["Attributes"]
        return int(json.loads(attrs["RedrivePolicy"])["maxReceiveCount"])

    def depth(self, url: str) -> tuple[int, int]:
        """(visible, in flight)"""
        a = self.client("sqs").get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        return int(a["ApproximateNumberOfMessages"]), int(a["ApproximateNumberOfMessagesNotVisible"])

    def send(self, bodies: list[str]) -> None:
        sqs = self.client("sqs")
        for start in range(0, len(bodies), 10):
            chunk = bodies[start : start + 10]
            r = sqs.send_message_batch(QueueUrl=self.queue, Entries=[{"Id": str(i), "MessageBody": b} for i, b in enumerate(chunk)])
            assert not r.get("Failed"), r

    def reset(self) -> None:
        """Empty both queues without PurgeQueue (SQS allows one purge a minute per queue).

        Messages a previous test left in flight come back within a few seconds (the watcher
        gives what it cannot handle a short visibility timeout) and are drained then.
        """
        sqs = self.client("sqs")

        def drained() -> bool:
            if self.depth(self.queue) == (0, 0) and self.depth(self.dlq) == (0, 0):
                return True
            for url in (self.queue, self.dlq):
                got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
                if got:
                    sqs.delete_message_batch(
                        QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)]
                    )
            return False

        until(drained, lambda: f"queues drained: {self.depth(self.queue)} {self.depth(self.dlq)}", timeout=60, every=0.25)
