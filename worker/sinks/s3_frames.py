"""The annotated JPEG of each frame to S3, under its deterministic key (`frames/<frame id>.jpg`).

A frame with events is always uploaded, whatever the upload policy: it is their snapshot.

Uploads run on several threads, but results go on to the next sink in the order they came, so
messages are sent in frame order and no message of a fragment precedes the last one of the
fragment before it (which is what lets a checkpoint keep up: see worker/sinks/sqs_results.py)."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

from worker.annotate import annotate, jpeg
from worker.retry import Abandoned
from worker.sinks import Context, Result
from worker.sinks.threads import STOP, put_until
from worker.upload import parse as parse_upload


class S3FrameSink:
    name = "s3-frames"
    required = True

    def __init__(
        self,
        ctx: Context,
        done: Callable[[Result], None],
        threads: int = 4,
        queue_size: int = 8,
        upload: str = "all",
        jpeg_quality: int = 85,
    ):
        self.ctx, self.done = ctx, done
        self.policy, self.jpeg_quality = parse_upload(upload), jpeg_quality
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._order = threading.Lock()
        self._submitted = 0
        self._next = 0  # the sequence number of the next result to hand on
        self._uploaded: dict[int, Result] = {}
        self._threads = [threading.Thread(target=self._loop, name=f"upload-{i}", daemon=True) for i in range(threads)]
        for t in self._threads:
            t.start()

    @classmethod
    def from_context(cls, ctx: Context, done: Callable[[Result], None]) -> S3FrameSink:
        return cls(ctx, done, **{k: v for k, v in ctx.options.items() if k in ("threads", "queue_size", "upload", "jpeg_quality")})

    def submit(self, result: Result) -> None:
        if put_until(self._queue, (self._submitted, result), None, self.ctx.failed, self.ctx.stopping):
            self._submitted += 1

    def _hand_on(self, seq: int, result: Result) -> None:
        with self._order:
            self._uploaded[seq] = result
            while self._next in self._uploaded:
                self.done(self._uploaded.pop(self._next))
                self._next += 1

    def close(self, deadline: float) -> bool:
        for _ in self._threads:
            put_until(self._queue, STOP, deadline, self.ctx.failed)
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    def _loop(self) -> None:
        ctx = self.ctx
        while True:
            item = self._queue.get()
            if item is STOP:
                return
            if ctx.failed.is_set():
                continue
            seq, result = item
            if not ctx.fence():  # the lease ended: no upload; the message sink sends nothing either
                result.frame.image = None
                self._hand_on(seq, result)
                continue
            try:
                result.height, result.width = result.frame.image.shape[:2]
                if not (self.policy.wants(result.frame.frame_index, result.detections) or result.extra.get("events")):
                    result.key = None
                    result.frame.image = None
                    ctx.metrics.count("FramesNotUploaded")
                    self._hand_on(seq, result)  # in order, like an uploaded one
                    continue
                body = jpeg(annotate(result.frame.image, result.detections, result.extra.get("rules")), self.jpeg_quality)
                result.frame.image = None  # the pixels are not needed any more; free them while the message waits
                ctx.writes.write(
                    lambda: ctx.s3.put_object(Bucket=ctx.bucket, Key=result.key, Body=body, ContentType="image/jpeg"),
                    what=f"S3 PutObject for stream {ctx.stream_name} (s3://{ctx.bucket}/{result.key})",
                    on_retry=lambda _exc: ctx.metrics.count("Retries"),
                )
                self._hand_on(seq, result)
            except Abandoned:  # stopped during an outage: the frame stays unfinished, redone after a restart
                return
            except Exception as exc:  # any failure here is fatal for the worker: a frame would be lost
                ctx.fail(exc)
