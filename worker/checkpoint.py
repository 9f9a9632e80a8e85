"""Where a Kinesis Video worker resumes: `s3://BUCKET/checkpoints/<stream>.json`.

The ledger counts, per fragment, the frames handed to delivery and not yet delivered. A fragment
is checkpointed once its end has been read and all its frames are delivered (JPEG in S3, message
in SQS), oldest first, so the checkpoint never gets ahead of a frame still in flight. On shutdown,
after the flush, the checkpoint also records the newest frame delivered from the fragment that was
cut short, so a restart redoes none of it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict

from worker import aws
from worker.contract import iso
from worker.frames import FragmentEnd, Frame
from worker.metrics import Metrics

log = logging.getLogger("kinase.worker.checkpoint")
VERSION = 1


class CheckpointStore:
    def __init__(self, s3, bucket: str, key: str, stream: str, source: str):
        self.s3, self.bucket, self.key, self.stream, self.source = s3, bucket, key, stream, source

    def load(self) -> dict | None:
        try:
            body = aws.retry(
                lambda: self.s3.get_object(Bucket=self.bucket, Key=self.key)["Body"].read(),
                what=f"read checkpoint s3://{self.bucket}/{self.key}",
                give_up_after=60,
            )
        except aws.FatalError as exc:
            cause = exc.__cause__
            if isinstance(cause, aws.ClientError) and cause.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        try:
            data = json.loads(body)
        except ValueError:
            log.warning("checkpoint s3://%s/%s is not JSON; ignored", self.bucket, self.key)
            return None
        if data.get("version") != VERSION or data.get("source") != self.source:
            log.warning("checkpoint s3://%s/%s is for %s; ignored", self.bucket, self.key, data.get("source"))
            return None
        return data

    def save(self, position: dict) -> dict:
        record = {"version": VERSION, "stream": self.stream, "source": self.source, **position, "updated_at": iso(time.time())}
        body = json.dumps(record, sort_keys=True).encode()
        aws.retry(
            lambda: self.s3.put_object(Bucket=self.bucket, Key=self.key, Body=body, ContentType="application/json"),
            what=f"write checkpoint s3://{self.bucket}/{self.key}",
            give_up_after=60,
        )
        return record


class Ledger:
    """Tracks delivery per fragment and moves the checkpoint forward when a whole fragment is delivered."""

    def __init__(self, store: CheckpointStore | None, metrics: Metrics):
        self.store = store
        self.metrics = metrics
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._pending: OrderedDict[str, int] = OrderedDict()
        self._ended: dict[str, FragmentEnd] = {}
        self.position: dict | None = None  # the last position written
        self._delivered_time = 0.0
        self._first: tuple[str, float | None] | None = None  # the first fragment this run delivered from

    def submitted(self, frame: Frame) -> None:
        if frame.fragment is not None:
            with self._lock:
                self._pending[frame.fragment] = self._pending.get(frame.fragment, 0) + 1
                self._first = self._first or (frame.fragment, frame.fragment_time)

    def delivered(self, frame: Frame) -> None:
        if frame.fragment is None:
            return
        with self._lock:
            self._pending[frame.fragment] -= 1
            self._delivered_time = max(self._delivered_time, frame.frame_time)
        self._advance()

    def fragment_end(self, end: FragmentEnd) -> None:
        with self._lock:
            self._pending.setdefault(end.fragment, 0)
            self._ended[end.fragment] = end
        self._advance()

    def _advance(self) -> None:
        done = None
        with self._lock:
            while self._pending:
                fragment, count = next(iter(self._pending.items()))
                if count or fragment not in self._ended:
                    break
                self._pending.popitem(last=False)
                done = self._ended.pop(fragment)
        if done is not None:
            self._write(dict(done.checkpoint))

    def final(self) -> None:
        """After the flush: record the newest delivered frame even if its fragment was cut short."""
        with self._lock:
            delivered_time = self._delivered_time
            clean = all(count == 0 for count in self._pending.values())
        position = dict(self.position or {})
        if not position and self._first is not None:
            position = {"fragment_number": self._first[0], "producer_timestamp": self._first[1], "continuation_token": None}
        if clean and delivered_time > float(position.get("last_frame_time") or 0.0):
            position["last_frame_time"] = delivered_time
            self._write(position)

    def _write(self, position: dict) -> None:
        if self.store is None:
            return
        with self._write_lock:
            if self.position and float(position.get("last_frame_time") or 0) < float(self.position.get("last_frame_time") or 0):
                return
            self.store.save(position)
            self.position = position
        self.metrics.count("Checkpoints")
        log.debug("checkpoint %s", position)
