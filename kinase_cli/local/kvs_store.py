"""In-memory Kinesis Video streams for the local endpoint: stream records and their fragments.

A test and demo stand-in, not a product: everything lives in memory, bounded by each stream's
retention (and, whatever the retention, by a byte budget so a long demo cannot eat the machine).
Readers block on a condition variable until new fragments arrive, which is what GetMedia(NOW)
needs.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field

ACCOUNT = "123456789012"

# Real fragment numbers are 47-digit decimal strings. A fixed prefix and a zero-padded counter keep
# that shape, and keep string order equal to numeric order.
_FRAGMENT_PREFIX = "91343852333181432392682062"
_FRAGMENT_DIGITS = 21

ZERO_RETENTION_FRAGMENTS = 300  # what a retention of 0 still keeps for live readers
MAX_BYTES_PER_STREAM = 256 * 1024 * 1024


class StoreError(Exception):
    """An error the service reports with an AWS error code and HTTP status."""

    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def not_found() -> StoreError:
    return StoreError("ResourceNotFoundException", "The requested stream is not found or not active.", 404)


@dataclass
class Fragment:
    number: str
    server_timestamp: float  # epoch seconds
    producer_timestamp: float  # epoch seconds
    duration_ms: int
    header: bytes  # EBML header + Segment start + Info + Tracks, shared by a PutMedia session
    cluster: bytes  # the Cluster, timecode made absolute (producer time in ms)

    @property
    def size(self) -> int:
        return len(self.cluster)


@dataclass
class Stream:
    name: str
    arn: str
    media_type: str | None
    retention_hours: int
    device_name: str | None
    kms_key_id: str
    creation_time: float
    version: str = field(default_factory=lambda: uuid.uuid4().hex[:20])
    fragments: deque = field(default_factory=deque)
    bytes: int = 0
    deleted: bool = False
    readers: int = 0  # open GetMedia connections
    calls: deque = field(default_factory=deque)  # monotonic times of the GetMedia calls of the last second
    producer: bool = False  # a PutMedia connection is open

    def info(self) -> dict:
        info = {
            "StreamName": self.name,
            "StreamARN": self.arn,
            "KmsKeyId": self.kms_key_id,
            "Version": self.version,
            "Status": "ACTIVE",
            "CreationTime": self.creation_time,
            "DataRetentionInHours": self.retention_hours,
        }
        if self.media_type:
            info["MediaType"] = self.media_type
        if self.device_name:
            info["DeviceName"] = self.device_name
        return info


class Store:
    def __init__(self, region: str = "us-east-1"):
        self.region = region
        self.streams: dict[str, Stream] = {}
        self.changed = threading.Condition()
        self._counter = itertools.count(1)

    # control plane

    def create(self, name: str, media_type=None, retention_hours=0, device_name=None, kms_key_id=None) -> Stream:
        with self.changed:
            if name in self.streams:
                raise StoreError("ResourceInUseException", f"The stream {name} already exists.", 400)
            created = time.time()
            stream = Stream(
                name=name,
                arn=f"arn:aws:kinesisvideo:{self.region}:{ACCOUNT}:stream/{name}/{int(created * 1000)}",
                media_type=media_type,
                retention_hours=int(retention_hours or 0),
                device_name=device_name,
                kms_key_id=kms_key_id or f"arn:aws:kms:{self.region}:{ACCOUNT}:alias/aws/kinesisvideo",
                creation_time=created,
            )
            self.streams[name] = stream
            return stream

    def get(self, name: str | None = None, arn: str | None = None) -> Stream:
        if bool(name) == bool(arn):
            raise StoreError("InvalidArgumentException", "Specify either StreamName or StreamARN, not both.")
        with self.changed:
            if name:
                stream = self.streams.get(name)
            else:
                stream = next((s for s in self.streams.values() if s.arn == arn), None)
        if stream is None:
            raise not_found()
        return stream

    def delete(self, arn: str, current_version: str | None = None) -> None:
        stream = self.get(arn=arn)
        if current_version and current_version != stream.version:
            raise StoreError("VersionMismatchException", "The stream version does not match CurrentVersion.")
        with self.changed:
            stream.deleted = True
            del self.streams[stream.name]
            self.changed.notify_all()

    def list(self, prefix: str | None = None) -> list[Stream]:
        with self.changed:
            streams = sorted(self.streams.values(), key=lambda s: s.name)
        return [s for s in streams if not prefix or s.name.startswith(prefix)]

    # media

    def next_fragment_number(self) -> str:
        return _FRAGMENT_PREFIX + str(next(self._counter)).zfill(_FRAGMENT_DIGITS)

    def append(self, stream: Stream, fragment: Fragment) -> None:
        with self.changed:
            stream.fragments.append(fragment)
            stream.bytes += fragment.size
            self._trim(stream)
            self.changed.notify_all()

    def _trim(self, stream: Stream) -> None:
        frags = stream.fragments
        if stream.retention_hours > 0:
            oldest = time.time() - stream.retention_hours * 3600
            while frags and frags[0].server_timestamp < oldest:
                stream.bytes -= frags.popleft().size
        else:
            while len(frags) > ZERO_RETENTION_FRAGMENTS:
                stream.bytes -= frags.popleft().size
        while len(frags) > 1 and stream.bytes > MAX_BYTES_PER_STREAM:
            stream.bytes -= frags.popleft().size

    def fragments_after(self, stream: Stream, number: str | None) -> list[Fragment]:
        """Retained fragments with a number greater than `number` (all of them when None)."""
        with self.changed:
            self._trim(stream)
            return [f for f in stream.fragments if number is None or f.number > number]

    def wait_after(self, stream: Stream, number: str | None, timeout: float) -> list[Fragment]:
        """Like `fragments_after`, but wait up to `timeout` seconds for at least one."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                found = self.fragments_after(stream, number)
                left = deadline - time.monotonic()
                if found or stream.deleted or left <= 0:
                    return found
                self.changed.wait(left)

    def retains(self, stream: Stream, number: str) -> bool:
        """Whether `number` is one of the stream's retained fragments."""
        with self.changed:
            self._trim(stream)
            return any(f.number == number for f in stream.fragments)

    def count_call(self, stream: Stream, per_second: int) -> None:
        """A GetMedia call; more than `per_second` in one second on a stream: ClientLimitExceededException."""
        now = time.monotonic()
        with self.changed:
            while stream.calls and stream.calls[0] <= now - 1.0:
                stream.calls.popleft()
            if len(stream.calls) >= per_second:
                raise StoreError(
                    "ClientLimitExceededException",
                    f"Kinesis Video Streams has throttled the request: more than {per_second} GetMedia calls per second on this stream.",
                )
            stream.calls.append(now)

    def open_reader(self, stream: Stream, limit: int) -> None:
        """Count a GetMedia connection; beyond `limit` per stream, ConnectionLimitExceededException."""
        with self.changed:
            if stream.readers >= limit:
                raise StoreError(
                    "ConnectionLimitExceededException",
                    f"Kinesis Video Streams has throttled the request: {limit} GetMedia connections to this stream are open.",
                )
            stream.readers += 1

    def close_reader(self, stream: Stream) -> None:
        with self.changed:
            stream.readers -= 1

    def open_producer(self, stream: Stream) -> None:
        """One PutMedia connection per stream: a second one gets ConnectionLimitExceededException."""
        with self.changed:
            if stream.producer:
                raise StoreError("ConnectionLimitExceededException", "A PutMedia connection to this stream is already open.")
            stream.producer = True

    def close_producer(self, stream: Stream) -> None:
        with self.changed:
            stream.producer = False

    def last_number(self, stream: Stream) -> str | None:
        with self.changed:
            return stream.fragments[-1].number if stream.fragments else None
