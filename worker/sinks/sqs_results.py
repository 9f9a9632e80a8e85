"""One message per frame (contract v1) to SQS, in SendMessageBatch calls of up to 10.

Throttling, 5xx, resets and calls with no answer are retried (botocore's standard mode, then the
write policy, worker/retry.py `WritePolicy`); entries a batch reports as failed are resent under
the same policy, which botocore does not do; errors retrying cannot fix stop the worker. A batch never spans two Kinesis Video fragments: a fragment's checkpoint is then written
before any message of the next one is sent, so a SIGKILL makes a restart redo at most one fragment. A batch sent again after a timeout may already be in the queue: delivery is at least once,
each message carries its frame id so consumers deduplicate, and such resends are counted
(MessagesResent).
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable

from worker import aws, contract
from worker.retry import Abandoned, Incomplete
from worker.sinks import Context, Result
from worker.sinks.threads import STOP, OneThread

BATCH_SIZE = 10
BATCH_WAIT = 0.1  # seconds the first message of a batch waits for company


class SqsResultSink(OneThread):
    name = "sqs-results"
    required = True

    def __init__(self, ctx: Context, done: Callable[[Result], None], queue_size: int = 32):
        super().__init__(ctx, queue_size, "sqs-sender")
        self.done = done
        self._attempts = 0  # HTTP attempts of the current SendMessageBatch: botocore's retries and ours
        ctx.sqs.meta.events.register("request-created.sqs.SendMessageBatch", self._attempted)
        self._thread.start()

    @classmethod
    def from_context(cls, ctx: Context, done: Callable[[Result], None]) -> SqsResultSink:
        return cls(ctx, done)

    def _attempted(self, **_) -> None:
        self._attempts += 1

    def _loop(self) -> None:
        batch: list[Result] = []
        first_at = 0.0
        stopping = False
        while not (stopping and not batch):
            timeout = max(0.0, first_at + BATCH_WAIT - time.monotonic()) if batch else None
            try:
                item = self._queue.get(timeout=timeout) if not stopping else None
            except queue.Empty:
                item = None
            if item is STOP:
                stopping = True
            elif item is not None:
                if batch and item.frame.fragment != batch[-1].frame.fragment and not self._flush(batch):
                    return
                if not batch or item.frame.fragment != batch[-1].frame.fragment:
                    batch, first_at = [], time.monotonic()
                batch.append(item)
            if batch and (stopping or len(batch) >= BATCH_SIZE or time.monotonic() - first_at >= BATCH_WAIT):
                if not self._flush(batch):
                    return
                batch = []

    def _flush(self, batch: list[Result]) -> bool:
        """Send one batch; False (the worker failing) if that cannot be done."""
        try:
            self._send(batch)
        except Abandoned:  # stopped during an outage: the frames stay unfinished, redone after a restart
            return False
        except Exception as exc:  # fatal: a frame would be lost
            self.ctx.fail(exc)
            return False
        return True

    def _send(self, batch: list[Result]) -> None:
        ctx = self.ctx
        now = time.time()
        for r in batch:
            f = r.frame
            r.message = contract.build(
                bucket=ctx.bucket,
                stream_name=ctx.stream_name,
                frame_index=f.frame_index,
                source=f.source,
                frame_id=r.frame_id,
                frame_time=f.frame_time,
                width=r.width,
                height=r.height,
                model=ctx.model,
                inference_ms=r.inference_ms,
                detections=r.detections,
                now=now,
                uploaded=r.key is not None,
                counts=r.extra.get("counts"),
            )
        pending = {str(i): r for i, r in enumerate(batch)}

        def send() -> None:
            """Send what is pending, as many calls as it takes; Incomplete when entries failed and wait to be resent."""
            while pending:
                if not ctx.fence():  # the lease ended (checked before every attempt): these stay undelivered, released
                    return
                entries, size = [], 0
                for i, r in pending.items():
                    body = contract.dumps(r.message)
                    if entries and size + len(body) > contract.MAX_BODY_BYTES:
                        break
                    entries.append({"Id": i, "MessageBody": body})
                    size += len(body)
                self._attempts = 0
                try:
                    response = ctx.sqs.send_message_batch(QueueUrl=ctx.queue_url, Entries=entries)
                finally:
                    ctx.metrics.count("MessagesResent", len(entries) * max(0, self._attempts - 1))
                for ok in response.get("Successful", []):
                    self.done(pending.pop(ok["Id"]))
                failed = [f for f in response.get("Failed", []) if f.get("Id") in pending]
                fatal = [f for f in failed if f.get("SenderFault")]
                if fatal:
                    raise aws.FatalError(f"SendMessageBatch rejected a message: {fatal[0].get('Code')}: {fatal[0].get('Message', '')}")
                if failed:
                    ctx.metrics.count("Retries", len(failed))  # each failed entry is sent again
                    raise Incomplete(f"{len(failed)} of {len(entries)} entries failed ({failed[0].get('Code')})")

        ctx.writes.write(
            send,
            what=f"SQS SendMessageBatch for stream {ctx.stream_name} ({len(batch)} messages)",
            on_retry=self._retrying,
        )

    def _retrying(self, exc: BaseException) -> None:
        if not isinstance(exc, Incomplete):  # failed entries are counted as they fail
            self.ctx.metrics.count("Retries")
