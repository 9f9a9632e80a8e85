"""Delivery: the annotated JPEG to S3, then one message per frame to SQS.

Inference hands each result to a bounded queue and goes on with the next frame; upload threads
draw, encode and put the JPEG, then pass the message to one batching thread that sends
SendMessageBatch when it has 10 or after a short wait. The S3 object exists before its message
is sent, so a consumer never sees a key that is not there yet. Keys are deterministic, so a frame
sent again after a failure or a restart overwrites itself. Throttling and 5xx are retried with
backoff; entries a batch reports as failed are resent; errors retrying cannot fix stop the worker.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass

from worker import aws, contract
from worker.annotate import annotate, jpeg
from worker.checkpoint import Ledger
from worker.frames import Frame
from worker.metrics import Metrics

log = logging.getLogger("kinase.worker.sinks")

BATCH_SIZE = 10
BATCH_WAIT = 0.1  # seconds the first message of a batch waits for company
_STOP = object()


@dataclass
class Result:
    frame: Frame
    detections: list[dict]
    inference_ms: float
    key: str = ""
    width: int = 0
    height: int = 0
    message: dict | None = None


class Delivery:
    def __init__(
        self,
        s3,
        sqs,
        *,
        bucket: str,
        queue_url: str,
        stream_name: str,
        model: str,
        ledger: Ledger,
        metrics: Metrics,
        upload_threads: int = 4,
        queue_size: int = 8,
        give_up_after: float = 300.0,
    ):
        self.s3, self.sqs = s3, sqs
        self.bucket, self.queue_url, self.stream_name, self.model = bucket, queue_url, stream_name, model
        self.ledger, self.metrics = ledger, metrics
        self.give_up_after = give_up_after
        self._uploads: queue.Queue = queue.Queue(maxsize=queue_size)
        self._messages: queue.Queue = queue.Queue(maxsize=queue_size * 4)
        self.error: BaseException | None = None
        self.failed = threading.Event()
        self._uploaders = [threading.Thread(target=self._upload_loop, name=f"upload-{i}", daemon=True) for i in range(upload_threads)]
        self._sender = threading.Thread(target=self._send_loop, name="sqs-sender", daemon=True)
        for t in (*self._uploaders, self._sender):
            t.start()

    def submit(self, frame: Frame, detections: list[dict], inference_ms: float) -> None:
        """Queue one result; blocks while the queue is full, which is what bounds memory."""
        self.ledger.submitted(frame)
        result = Result(frame, detections, inference_ms, key=contract.frame_key(self.stream_name, frame.source))
        while not self.failed.is_set():
            try:
                self._uploads.put(result, timeout=0.5)
                return
            except queue.Full:
                continue

    def close(self, timeout: float = 25.0) -> bool:
        """Deliver everything queued, then stop the threads; False if that did not finish in time or failed."""
        deadline = time.monotonic() + timeout
        for _ in self._uploaders:
            self._put_until(self._uploads, _STOP, deadline)
        for t in self._uploaders:
            t.join(max(0.0, deadline - time.monotonic()))
        self._put_until(self._messages, _STOP, deadline)
        self._sender.join(max(0.0, deadline - time.monotonic()))
        finished = not any(t.is_alive() for t in (*self._uploaders, self._sender))
        return finished and not self.failed.is_set()

    def _put_until(self, q: queue.Queue, item, deadline: float) -> None:
        while time.monotonic() < deadline and not self.failed.is_set():
            try:
                q.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def _fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        self.failed.set()

    def _retried(self) -> None:
        self.metrics.count("DeliveryRetries")

    def _upload_loop(self) -> None:
        while True:
            result = self._uploads.get()
            if result is _STOP or self.failed.is_set():
                if result is _STOP:
                    return
                continue
            try:
                result.height, result.width = result.frame.image.shape[:2]
                body = jpeg(annotate(result.frame.image, result.detections))
                result.frame.image = None  # the pixels are not needed any more; free them while the message waits
                aws.retry(
                    lambda: self.s3.put_object(Bucket=self.bucket, Key=result.key, Body=body, ContentType="image/jpeg"),
                    what=f"PutObject s3://{self.bucket}/{result.key}",
                    give_up_after=self.give_up_after,
                    on_retry=self._retried,
                )
                self._messages.put(result)
            except Exception as exc:  # any failure here is fatal for the worker: a frame would be lost
                self._fail(exc)

    def _send_loop(self) -> None:
        batch: list[Result] = []
        first_at = 0.0
        stopping = False
        while not (stopping and not batch):
            timeout = max(0.0, first_at + BATCH_WAIT - time.monotonic()) if batch else None
            try:
                item = self._messages.get(timeout=timeout) if not stopping else None
            except queue.Empty:
                item = None
            if item is _STOP:
                stopping = True
            elif item is not None:
                if not batch:
                    first_at = time.monotonic()
                batch.append(item)
            if batch and (stopping or len(batch) >= BATCH_SIZE or time.monotonic() - first_at >= BATCH_WAIT):
                try:
                    self._send(batch)
                except Exception as exc:  # fatal, as above
                    self._fail(exc)
                    return
                batch = []

    def _send(self, batch: list[Result]) -> None:
        now = time.time()
        for r in batch:
            f = r.frame
            r.message = contract.build(
                bucket=self.bucket,
                stream_name=self.stream_name,
                frame_index=f.frame_index,
                source=f.source,
                frame_time=f.frame_time,
                width=r.width,
                height=r.height,
                model=self.model,
                inference_ms=r.inference_ms,
                detections=r.detections,
                now=now,
            )
        pending = {str(i): r for i, r in enumerate(batch)}
        started = time.monotonic()
        attempt = 0
        while pending:
            entries, size = [], 0
            for i, r in pending.items():
                body = contract.dumps(r.message)
                if entries and size + len(body) > contract.MAX_BODY_BYTES:
                    break
                entries.append({"Id": i, "MessageBody": body})
                size += len(body)
            response = aws.retry(
                lambda: self.sqs.send_message_batch(QueueUrl=self.queue_url, Entries=entries),
                what="SendMessageBatch",
                give_up_after=self.give_up_after,
                on_retry=self._retried,
            )
            for ok in response.get("Successful", []):
                r = pending.pop(ok["Id"])
                self.metrics.count("FramesDelivered")
                self.metrics.time("LatencyMs", r.message["latency_ms"])
                self.ledger.delivered(r.frame)
                log.debug("delivered %s", r.key)
            failed = [f for f in response.get("Failed", []) if f.get("Id") in pending]
            if not failed:
                continue
            fatal = [f for f in failed if f.get("SenderFault")]
            if fatal:
                raise aws.FatalError(f"SendMessageBatch rejected a message: {fatal[0].get('Code')}: {fatal[0].get('Message', '')}")
            if time.monotonic() - started > self.give_up_after:
                raise aws.FatalError(f"SendMessageBatch: {len(failed)} entries still failing after {self.give_up_after:.0f}s")
            attempt += 1
            self.metrics.count("DeliveryRetries", len(failed))
            log.warning("SendMessageBatch: %d of %d entries failed (%s); resending them", len(failed), len(entries), failed[0].get("Code"))
            time.sleep(aws.backoff(attempt))
