"""A frame's events (`kinase.event/1`, worker/events/) to the environment's SNS topic, in PublishBatch calls.

It sits after the frame's JPEG is in S3 (an event's `snapshot_key`) and before the frame's message:
a frame counts as delivered, and its fragment can be checkpointed, only once its events are
published, so a SIGKILL loses none; a restart redoes the frames after the checkpoint, and their
events, with the same deterministic `event_id`s (delivery is at least once; consumers deduplicate
by id, as they do frames by `frame_id`). Each event carries the message attributes that
subscriptions filter on (worker/events/attributes.py). One thread, in order: frames without events
pass straight on behind those with, so the chain's order holds. Without a topic
(KINASE_EVENTS_TOPIC_ARN empty) events are counted and logged by the analyse stage only.
Entries a batch reports as failed are resent under the write policy; errors retrying cannot fix stop the worker.
"""

from __future__ import annotations

from collections.abc import Callable

from worker import aws
from worker.events import contract as events
from worker.events.attributes import message_attributes
from worker.retry import Abandoned, Incomplete
from worker.sinks import Context, Result
from worker.sinks.threads import STOP, OneThread

BATCH_SIZE = 10  # PublishBatch takes at most 10 entries


class SnsEventSink(OneThread):
    name = "sns-events"
    required = True

    def __init__(self, ctx: Context, done: Callable[[Result], None], sns=None, topic_arn: str = "", queue_size: int = 32):
        super().__init__(ctx, queue_size, "sns-publisher")
        self.done = done
        self.sns, self.topic_arn = sns, topic_arn
        self._thread.start()

    @classmethod
    def from_context(cls, ctx: Context, done: Callable[[Result], None]) -> SnsEventSink:
        return cls(ctx, done, sns=ctx.options.get("sns"), topic_arn=ctx.options.get("events_topic_arn", ""))

    def submit(self, result: Result) -> None:
        """Without a topic nothing is published: the frame goes straight on, and the chain holds no more frames than
        it did without this sink (what an outage's back-pressure counts on)."""
        if self.topic_arn:
            super().submit(result)
        else:
            self.done(result)

    def _loop(self) -> None:
        while True:
            result = self._queue.get()
            if result is STOP:
                return
            if self.ctx.failed.is_set():
                continue
            found = result.extra.get("events") or []
            try:
                if found and self.topic_arn:
                    self.publish(found)
            except Abandoned:  # stopped during an outage: the frame stays unfinished, redone after a restart
                return
            except Exception as exc:  # fatal: an event would be lost
                self.ctx.fail(exc)
                return
            self.done(result)

    def publish(self, found: list[dict]) -> None:
        ctx = self.ctx
        pending = {str(i): event for i, event in enumerate(found)}

        def send() -> None:
            while pending:
                if not ctx.fence():  # the lease ended: the stream's next owner publishes them
                    return
                entries = [
                    {"Id": i, "Message": events.dumps(event), "MessageAttributes": message_attributes(event)}
                    for i, event in list(pending.items())[:BATCH_SIZE]
                ]
                response = self.sns.publish_batch(TopicArn=self.topic_arn, PublishBatchRequestEntries=entries)
                for ok in response.get("Successful", []):
                    pending.pop(ok["Id"], None)
                    ctx.metrics.count("EventsPublished")
                failed = [f for f in response.get("Failed", []) if f.get("Id") in pending]
                fatal = [f for f in failed if f.get("SenderFault")]
                if fatal:
                    raise aws.FatalError(f"SNS PublishBatch rejected an event: {fatal[0].get('Code')}: {fatal[0].get('Message', '')}")
                if failed:
                    ctx.metrics.count("Retries", len(failed))
                    raise Incomplete(f"{len(failed)} of {len(entries)} events failed ({failed[0].get('Code')})")

        ctx.writes.write(
            send,
            what=f"SNS PublishBatch for stream {ctx.stream_name} ({len(found)} events)",
            on_retry=lambda exc: None if isinstance(exc, Incomplete) else ctx.metrics.count("Retries"),
        )
