"""Where a Kinesis Video worker resumes: `s3://BUCKET/checkpoints/<stream>.json`.

A checkpoint is a position, never a time: the stream incarnation (ARN and creation time), a
fragment number, and either "all of it" (`next_offset` null, with the continuation token after it)
or the offset of the first frame not yet handled in it (`next_offset`, with the fragment's server
timestamp to start reading at it again). One of another incarnation (the stream was deleted and
created again), an older format, or unreadable, is set aside (copied to
`checkpoints/<stream>.set-aside-<time>.json`) with a warning and a reported gap, and the start
policy applies.

The ledger counts, per fragment, the frames handed to delivery and not yet delivered. It writes:
- a start checkpoint as soon as the first fragment of a run without a checkpoint is read, so a
  SIGKILL at any moment after loses nothing that was persisted in the stream;
- after each fragment whose end has been read and whose frames are all delivered, oldest first,
  so the checkpoint never gets ahead of a frame still in flight;
- on shutdown, after the flush, the offset after the last frame handled in a fragment cut short,
  so a restart redoes none of it.
Each position written may carry `stages`: the per-frame stages' state at that position
(worker/stages/: {stage name: state}, opaque here), taken on the inference thread when the
fragment's end (or the run's last frame) passed; every store keeps it inside the record, and a
resume hands it back to the stages.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict

from worker import aws, layout
from worker.contract import iso
from worker.frames import FragmentEnd, Frame, fragment_order
from worker.metrics import Metrics
from worker.retry import WritePolicy, error_code
from worker.sources.incarnation import Incarnation

log = logging.getLogger("kinase.worker.checkpoint")
VERSION = 2
GAPS_KEPT = 10  # the newest reported gaps the record keeps


def _order(position: dict) -> tuple[int, float]:
    offset = position.get("next_offset")
    return fragment_order(position["fragment_number"]), float("inf") if offset is None else offset


def unusable(data: dict, source: str, incarnation: Incarnation) -> str | None:
    """Why a stored checkpoint cannot be resumed from here (None when it can): the rule of every store."""
    if data.get("version") != VERSION or not data.get("fragment_number"):
        return f"its format (version {data.get('version')!r}) is not version {VERSION}"
    if data.get("source") != source or data.get("stream_arn") != incarnation.arn:
        return f"it belongs to {data.get('source')} {data.get('stream_arn')} (created {data.get('stream_created')}), not to {incarnation}"
    return None


def record(stream: str, source: str, incarnation: Incarnation, position: dict, **extra) -> dict:
    """The checkpoint record every store writes: the stream incarnation and the position in it."""
    return {
        "version": VERSION,
        "stream": stream,
        "source": source,
        "stream_arn": incarnation.arn,
        "stream_created": incarnation.created,
        **position,
        **extra,
        "updated_at": iso(time.time()),
    }


class CheckpointStore:
    """The checkpoint in S3. Every call follows the write policy (`writes`): a checkpoint outlasts an outage as frames do."""

    def __init__(
        self,
        s3,
        bucket: str,
        key: str,
        stream: str,
        source: str,
        incarnation: Incarnation,
        metrics: Metrics,
        writes: WritePolicy | None = None,
    ):
        self.s3, self.bucket, self.key, self.stream, self.source = s3, bucket, key, stream, source
        self.incarnation, self.metrics = incarnation, metrics
        self.writes = writes or WritePolicy()
        self.earlier_gaps: list[dict] = []  # gaps recorded by earlier runs

    def load(self) -> dict | None:
        """The checkpoint of this stream incarnation, or None (after setting aside one that is not)."""
        try:
            body = self.writes.write(
                lambda: self.s3.get_object(Bucket=self.bucket, Key=self.key)["Body"].read(),
                what=f"S3 read checkpoint s3://{self.bucket}/{self.key}",
            )
        except aws.FatalError as exc:
            if error_code(exc.__cause__) in ("NoSuchKey", "404"):
                return None
            raise
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            self.set_aside(body, None, "it is not a JSON object")
            return None
        why = unusable(data, self.source, self.incarnation)
        if why:
            self.set_aside(body, data, why)
            return None
        self.earlier_gaps = [g for g in data.get("gaps") or [] if isinstance(g, dict)]
        return data

    def set_aside(self, body: bytes, data: dict | None, why: str) -> None:
        """Keep an unusable checkpoint beside the real one, warn, and report the gap it leaves."""
        aside = layout.set_aside_key(self.key, time.time())
        self.writes.write(
            lambda: self.s3.put_object(Bucket=self.bucket, Key=aside, Body=body, ContentType="application/json"),
            what=f"S3 set aside checkpoint s3://{self.bucket}/{aside}",
        )
        log.warning("checkpoint s3://%s/%s set aside as %s: %s; the start policy applies", self.bucket, self.key, aside, why)
        start = str((data or {}).get("fragment_number") or "")
        self.metrics.gap(start, "", reason=f"checkpoint set aside ({why})")

    def save(self, position: dict) -> dict:
        gaps = (self.earlier_gaps + [gap.record() for gap in self.metrics.gaps])[-GAPS_KEPT:]  # shown by `kinase status`
        written = record(self.stream, self.source, self.incarnation, position, gaps=gaps)
        body = json.dumps(written, sort_keys=True).encode()
        self.writes.write(
            lambda: self.s3.put_object(Bucket=self.bucket, Key=self.key, Body=body, ContentType="application/json"),
            what=f"S3 write checkpoint s3://{self.bucket}/{self.key}",
            on_retry=lambda _exc: self.metrics.count("Retries"),
        )
        return written


class Ledger:
    """Tracks delivery per fragment and moves the checkpoint forward, never back."""

    def __init__(self, store: CheckpointStore | None, metrics: Metrics, position: dict | None = None):
        self.store = store
        self.metrics = metrics
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._pending: OrderedDict[str, int] = OrderedDict()
        self._ended: dict[str, FragmentEnd] = {}
        self._through: dict[str, tuple[int, float | None]] = {}  # fragment -> (highest offset submitted, server timestamp)
        self.position: dict | None = position  # the last position written (or loaded)

    def started(self, fragment: str, server_timestamp: float | None) -> None:
        """The first fragment of a run: without a checkpoint yet, record that reading starts at it."""
        if self.position is None:
            self._write({"fragment_number": fragment, "next_offset": 0, "server_timestamp": server_timestamp, "continuation_token": None})

    def submitted(self, frame: Frame) -> None:
        if frame.fragment is not None:
            with self._lock:
                self._pending[frame.fragment] = self._pending.get(frame.fragment, 0) + 1
                self._through[frame.fragment] = (frame.offset or 0, frame.server_time)

    def delivered(self, frame: Frame) -> None:
        if frame.fragment is None:
            return
        with self._lock:
            self._pending[frame.fragment] -= 1
        self._advance()

    def fragment_end(self, end: FragmentEnd, stages: dict | None = None) -> None:
        """Every frame of `end.fragment` was read; `stages`: the stages' state after its last frame, saved with its checkpoint."""
        if stages:
            end = FragmentEnd(end.fragment, {**end.checkpoint, "stages": stages}, end.frames, end.failed)
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
                self._through.pop(fragment, None)
                done = self._ended.pop(fragment)
        if done is not None:
            self._write(dict(done.checkpoint))

    def final(self, stages: dict | None = None) -> None:
        """After the flush: record the frames handled in a fragment cut short (all delivered, in order), with the
        stages' state after the last of them."""
        with self._lock:
            if any(self._pending.values()):
                return
            cut = [(f, self._through[f]) for f in self._pending if f in self._through]
        if cut:
            fragment, (offset, server_timestamp) = cut[-1]
            position = {
                "fragment_number": fragment,
                "next_offset": offset + 1,
                "server_timestamp": server_timestamp,
                "continuation_token": None,
            }
            self._write({**position, "stages": stages} if stages else position)

    def _write(self, position: dict) -> None:
        if self.store is None:
            return
        with self._write_lock:
            if self.position and _order(position) <= _order(self.position):
                return
            if self.store.save(position) is None:  # not written (a fleet worker's lease ended): the position stays
                return
            self.position = position
        self.metrics.count("Checkpoints")
        log.debug("checkpoint %s", position)
