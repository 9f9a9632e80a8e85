"""One lease per stream in a DynamoDB table: which fleet worker reads which stream.

Modelled on the Kinesis Client Library's lease coordination, because ownership must never depend
on two machines' clocks agreeing:

- An item per stream holds `owner`, a `counter` and the stream's checkpoint. Every change of
  ownership (take, renew, release) is a conditional write on the counter (and the owner), so of two
  workers racing for one lease exactly one write succeeds.
- Nobody compares timestamps written by another machine. The owner renews by bumping the counter
  every `lease_duration / 3`; another worker treats a lease as expired when it has seen the same
  counter unchanged for longer than `lease_duration` on its OWN monotonic clock, and may then take
  it (conditional on that counter). The owner believes in its lease only until `lease_duration`
  after it SENT its last successful renewal, so the holder's belief ends before any taker's starts.
  It keeps that promise however its calls behave: a watchdog (`watch`) stops the pipeline at the
  belief end even while a renewal hangs, each pipeline sends only while its lease's `fence` is open,
  and the table's client times out in a fraction of the lease (worker/aws.py `lease_config`).
- Balancing: a worker below its share asks the most loaded worker (holding at least two more
  leases) for one of them by naming itself in `wanted_by`; the owner stops that stream's pipeline
  (flush, checkpoint) and releases it, and the requester takes it. Handing over, never stealing, so
  no stream is read by two workers beyond the renewal interval.
- A worker holds at most `max_streams` leases.
- The table is the list of the environment's streams: `kinase stream create` and `stream adopt`
  write a free lease, `stream rm` deletes it (its owner's next renewal fails and it stops the
  pipeline); a pipeline that finds its stream gone has the lease deleted. So workers need no
  ListStreams, which IAM cannot scope to the environment.
- Checkpoints live in the lease item and are written only while the writer still owns the lease
  (conditional on `owner`), so a worker that lost its lease cannot move a checkpoint backwards.

`LeaseTable` is the table client, `LeaseCoordinator` the per-worker loop; what runs for a held
stream is behind the `Pipelines` interface (worker/fleet/main.py implements it).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

from worker.contract import iso
from worker.retry import WritePolicy

log = logging.getLogger("kinase.worker.leases")

KEY = "stream"
ALIASES = {"#o": "owner", "#c": "counter"}
DEFAULT_LEASE_DURATION_S = 15.0


@dataclass(frozen=True)
class Lease:
    stream: str
    counter: int
    owner: str | None = None
    wanted_by: str | None = None
    adopted: bool = False
    lag_ms: float | None = None
    fps: float | None = None
    stats_at: str | None = None
    checkpoint: dict | None = None

    @classmethod
    def from_item(cls, item: dict) -> Lease:
        def num(name):
            return float(item[name]["N"]) if name in item else None

        checkpoint = None
        if "checkpoint" in item:
            try:
                checkpoint = json.loads(item["checkpoint"]["S"])
            except ValueError:
                checkpoint = None
        return cls(
            stream=item[KEY]["S"],
            counter=int(item.get("counter", {"N": "0"})["N"]),
            owner=item.get("owner", {}).get("S"),
            wanted_by=item.get("wanted_by", {}).get("S"),
            adopted=bool(item.get("adopted", {}).get("BOOL", False)),
            lag_ms=num("lag_ms"),
            fps=num("fps"),
            stats_at=item.get("stats_at", {}).get("S"),
            checkpoint=checkpoint,
        )


class LeaseTable:
    """The lease table's items, read and written with conditional writes only where ownership changes."""

    def __init__(self, client, table: str):
        self.client, self.table = client, table

    def _update(self, stream: str, update: str, condition: str, values: dict, **extra) -> dict | None:
        """One conditional write to a stream's lease; None when the condition fails (someone wrote it first).

        `#o` and `#c` stand for owner and counter (reserved words); a name is passed only where used,
        since DynamoDB refuses unused ExpressionAttributeNames."""
        names = {alias: name for alias, name in ALIASES.items() if alias in update + condition}
        try:
            return self.client.update_item(
                TableName=self.table,
                Key={KEY: {"S": stream}},
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
                **({"ExpressionAttributeNames": names} if names else {}),
                **extra,
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return None

    def scan(self) -> list[Lease]:
        items, kwargs = [], {"TableName": self.table, "ConsistentRead": True}
        while True:
            page = self.client.scan(**kwargs)
            items.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return [Lease.from_item(item) for item in items]
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def get(self, stream: str) -> Lease | None:
        item = self.client.get_item(TableName=self.table, Key={KEY: {"S": stream}}, ConsistentRead=True).get("Item")
        return Lease.from_item(item) if item else None

    def ensure(self, stream: str, *, adopted: bool = False) -> bool:
        """Create a free lease for a stream that has none; False when it exists already."""
        item = {KEY: {"S": stream}, "counter": {"N": "0"}}
        if adopted:
            item["adopted"] = {"BOOL": True}
        try:
            self.client.put_item(
                TableName=self.table, Item=item, ConditionExpression="attribute_not_exists(#k)", ExpressionAttributeNames={"#k": KEY}
            )
            return True
        except self.client.exceptions.ConditionalCheckFailedException:
            return False

    def take(self, stream: str, owner: str, counter: int, previous_owner: str | None) -> int | None:
        """Own a free or expired lease if nobody wrote it since we saw `counter`; the new counter, or None."""
        condition = "#c = :c AND " + ("attribute_not_exists(#o)" if previous_owner is None else "#o = :prev")
        values = {":c": {"N": str(counter)}, ":me": {"S": owner}, ":one": {"N": "1"}}
        if previous_owner is not None:
            values[":prev"] = {"S": previous_owner}
        done = self._update(stream, "SET #o = :me, #c = #c + :one REMOVE wanted_by", condition, values)
        return counter + 1 if done is not None else None

    def renew(self, stream: str, owner: str, counter: int, stats: dict | None = None) -> Lease | None:
        """Bump the counter of a lease we hold at `counter`; the lease after the write, or None if lost."""
        sets = ["#c = #c + :one"]
        values = {":c": {"N": str(counter)}, ":me": {"S": owner}, ":one": {"N": "1"}}
        for name in ("lag_ms", "fps"):
            if stats and stats.get(name) is not None:
                sets.append(f"{name} = :{name}")
                values[f":{name}"] = {"N": repr(float(stats[name]))}
        if stats:
            sets.append("stats_at = :at")
            values[":at"] = {"S": iso(time.time())}
        done = self._update(stream, "SET " + ", ".join(sets), "#o = :me AND #c = :c", values, ReturnValues="ALL_NEW")
        return Lease.from_item(done["Attributes"]) if done is not None else None

    def release(self, stream: str, owner: str) -> bool:
        return self._update(stream, "REMOVE #o SET #c = #c + :one", "#o = :me", {":me": {"S": owner}, ":one": {"N": "1"}}) is not None

    def request(self, stream: str, owner: str, requester: str) -> bool:
        """Ask the owner to hand this lease over; does not touch the counter, so it never looks renewed."""
        condition = "#o = :o AND attribute_not_exists(wanted_by)"
        return self._update(stream, "SET wanted_by = :r", condition, {":o": {"S": owner}, ":r": {"S": requester}}) is not None

    def withdraw(self, stream: str, requester: str) -> bool:
        """Take back a hand-over request (its requester's own, or one left standing by a worker that is gone)."""
        return self._update(stream, "REMOVE wanted_by", "wanted_by = :r", {":r": {"S": requester}}) is not None

    def delete(self, stream: str, *, owner: str | None = None, counter: int | None = None) -> bool:
        """Remove the lease of a stream that no longer exists: ours, a free one, or one seen expired at `counter`."""
        if owner is not None:
            condition, names, values = "#o = :o", {"#o": "owner"}, {":o": {"S": owner}}
        elif counter is not None:
            condition, names, values = "#c = :c", {"#c": "counter"}, {":c": {"N": str(counter)}}
        else:
            condition, names, values = "attribute_not_exists(#o)", {"#o": "owner"}, None
        kwargs = {"ExpressionAttributeValues": values} if values else {}
        try:
            self.client.delete_item(
                TableName=self.table, Key={KEY: {"S": stream}}, ConditionExpression=condition, ExpressionAttributeNames=names, **kwargs
            )
            return True
        except self.client.exceptions.ConditionalCheckFailedException:
            return False

    def set_aside(self, stream: str, owner: str) -> bool:
        """Move an unusable checkpoint to `checkpoint_set_aside`, kept for inspection."""
        update, condition = "SET checkpoint_set_aside = checkpoint REMOVE checkpoint", "#o = :me AND attribute_exists(checkpoint)"
        return self._update(stream, update, condition, {":me": {"S": owner}}) is not None

    def save_checkpoint(self, stream: str, owner: str, record: dict) -> bool:
        values = {":me": {"S": owner}, ":cp": {"S": json.dumps(record, sort_keys=True)}}
        return self._update(stream, "SET checkpoint = :cp", "#o = :me", values) is not None


class LeaseCheckpointStore:
    """The worker's checkpoint store (worker/checkpoint.py's `load`/`save`) kept in the stream's lease item.

    The same rules as the S3 store: a checkpoint of another stream incarnation, source or format is
    set aside (kept in the item as `checkpoint_set_aside`) with a warning and a reported gap. A save
    from a worker that no longer owns the lease is refused and logged: the new owner's checkpoint
    stands. Every call follows the write policy (`writes`, worker/retry.py): a DynamoDB throttle or
    outage during a checkpoint is retried as long as a frame upload would be, but only while `fence`
    (LeaseCoordinator.fence) says the lease is still believed in: after that the write is not tried
    again, so a pipeline whose lease ended during a DynamoDB hang stops within one call's timeout.
    """

    def __init__(
        self,
        table: LeaseTable,
        stream: str,
        owner: str,
        source: str,
        incarnation,
        metrics,
        writes: WritePolicy | None = None,
        fence: Callable[[], bool] = lambda: True,
    ):
        self.table, self.stream, self.owner, self.source = table, stream, owner, source
        self.incarnation, self.metrics = incarnation, metrics
        self.writes = writes or WritePolicy()
        self.fence = fence

    def load(self) -> dict | None:
        from worker.checkpoint import unusable

        lease = self.writes.write(lambda: self.table.get(self.stream), what=f"DynamoDB read the checkpoint of {self.stream}")
        data = lease.checkpoint if lease else None
        if not data:
            return None
        why = unusable(data, self.source, self.incarnation)
        if not why:
            return data
        self.writes.write(lambda: self.table.set_aside(self.stream, self.owner), what=f"DynamoDB set aside the checkpoint of {self.stream}")
        log.warning("checkpoint in the lease of %s set aside: %s; the start policy applies", self.stream, why)
        self.metrics.gap(str(data.get("fragment_number") or ""), "", reason=f"checkpoint set aside ({why})")
        return None

    def save(self, position: dict) -> dict | None:
        """The record written, or None when it was not (the lease is no longer ours): the ledger then keeps its
        position at the last checkpoint really written, the one the next owner resumes from."""
        from worker.checkpoint import record as checkpoint_record

        record = checkpoint_record(self.stream, self.source, self.incarnation, position)
        saved = self.writes.write(
            lambda: self.fence() and self.table.save_checkpoint(self.stream, self.owner, record),
            what=f"DynamoDB write the checkpoint of {self.stream}",
            on_retry=lambda _exc: self.metrics.count("Retries"),
        )
        if not saved:
            log.warning("checkpoint for %s not written: the lease is no longer ours", self.stream)
            return None
        return record


class Pipelines(Protocol):
    """What the coordinator drives for each held stream. Calls must not block (stop only asks)."""

    def start(self, stream: str) -> None: ...

    def stop(self, stream: str) -> None:
        """Begin stopping: stop reading, flush, checkpoint. `running` turns False when done."""

    def running(self, stream: str) -> bool: ...

    def stats(self, stream: str) -> dict:
        """`lag_ms` and `fps` of the stream's pipeline, written into the lease at each renewal."""

    def gone(self, stream: str) -> bool:
        """The stream's pipeline ended because the stream no longer exists (its lease is then deleted)."""


@dataclass
class Held:
    counter: int
    valid_until: float
    releasing: bool = False
    ended: bool = False  # the watchdog found its belief over and stopped the pipeline


@dataclass
class Seen:
    counter: int
    owner: str | None
    since: float  # our clock when this counter was first seen


@dataclass
class Interval:
    """A span of our clock during which we believed we held a stream (kept for tests and status)."""

    stream: str
    start: float
    end: float


@dataclass
class LeaseCoordinator:
    table: LeaseTable
    worker_id: str
    pipelines: Pipelines
    lease_duration: float = DEFAULT_LEASE_DURATION_S
    max_streams: int = 8
    clock: Callable[[], float] = time.monotonic
    held: dict[str, Held] = field(default_factory=dict)
    seen: dict[str, Seen] = field(default_factory=dict)
    history: list[Interval] = field(default_factory=list)
    requests: dict[str, tuple[str, float]] = field(default_factory=dict)  # stream -> (wanted_by, first seen on our clock)
    share: float = 0.0  # the environment's streams per live worker, as last seen (the fleet's scaling metric)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def interval(self) -> float:
        return self.lease_duration / 3

    def holds(self, stream: str) -> bool:
        with self._lock:
            held = self.held.get(stream)
            return held is not None and self.clock() < held.valid_until

    def fence(self, stream: str) -> Callable[[], bool]:
        """For the pipeline started for the lease held on `stream` now: whether it may still deliver. True while
        we believe in that lease (our clock before its `valid_until`); once False, False for good, so a pipeline
        whose lease ended never delivers again, even if we renew late or take the stream again (a new pipeline
        with its own fence then reads it). Checked right before every send, so nothing reaches S3 or SQS for a
        stream another worker may own: the KCL's rule that a lease holder stops processing when its lease expires,
        enforced on our own clock even while a renewal hangs or the process was paused (SIGSTOP)."""
        with self._lock:
            held = self.held.get(stream)
        believed = [held is not None]

        def may_deliver() -> bool:
            if believed[0]:
                with self._lock:
                    believed[0] = self.held.get(stream) is held and self.clock() < held.valid_until
            return believed[0]

        return may_deliver

    def expire(self) -> None:
        """The watchdog's check: stop the pipeline of each stream whose belief has ended on our clock. It leaves
        the lease to the lease loop (which may be stuck in a call that hangs): that drops it when its renewal
        fails, or releases it once the pipeline has stopped."""
        now = self.clock()
        with self._lock:
            ended = [(stream, held) for stream, held in self.held.items() if not held.ended and now >= held.valid_until]
            for _, held in ended:
                held.ended = True
        for stream, _ in ended:
            log.warning("lease on %s ended on our clock without a renewal; stopping its pipeline, delivering nothing more", stream)
            self.pipelines.stop(stream)

    def watch(self, stop: threading.Event) -> None:
        """The watchdog loop (its own thread): `expire` every tenth of the renewal interval until `stop` is set."""
        while not stop.wait(self.interval / 10):
            self.expire()

    def streams(self) -> list[str]:
        with self._lock:
            return sorted(self.held)

    def _believe(self, stream: str, start: float, valid_until: float) -> None:
        last = next((i for i in reversed(self.history) if i.stream == stream), None)
        if last is not None and last.end >= start:
            last.end = max(last.end, valid_until)
        else:
            self.history.append(Interval(stream, start, valid_until))

    def _drop(self, stream: str, at: float) -> None:
        held = self.held.pop(stream, None)
        if held is None:
            return
        for interval in reversed(self.history):
            if interval.stream == stream:
                interval.end = min(interval.end, at)
                break

    def step(self) -> None:
        """One cycle: renew, observe, hand over, take, ask. Never blocks on a pipeline."""
        self._renew()
        leases = {lease.stream: lease for lease in self.table.scan()}
        now = self.clock()
        for stream, lease in leases.items():
            seen = self.seen.get(stream)
            if seen is None or seen.counter != lease.counter or seen.owner != lease.owner:
                self.seen[stream] = Seen(lease.counter, lease.owner, now)
        for stream in set(self.seen) - set(leases):
            del self.seen[stream]
        for stream, lease in leases.items():
            if not lease.wanted_by:
                self.requests.pop(stream, None)
            elif self.requests.get(stream, ("", 0.0))[0] != lease.wanted_by:
                self.requests[stream] = (lease.wanted_by, now)
        self._finish_releases()
        self._balance(leases, now)

    def _renew(self) -> None:
        """Renew every lease held. A renewal that fails (a timeout, a throttle) leaves that lease's belief as it was
        and does not keep the others from being renewed: one slow call must not cost every stream its lease; the
        watchdog stops the pipeline if the belief runs out before a renewal succeeds."""
        for stream, held in list(self.held.items()):
            stats = self.pipelines.stats(stream) if self.pipelines.running(stream) else None
            sent = self.clock()
            try:
                lease = self.table.renew(stream, self.worker_id, held.counter, stats)
            except Exception as exc:  # botocore: timeouts, throttles, 5xx after its attempts
                log.warning("renewing the lease on %s failed: %s; trying again next cycle", stream, exc)
                continue
            with self._lock:
                if lease is None:
                    if self.table.get(stream) is None:  # `kinase stream rm` deletes the stream, then its lease
                        log.info("lease on %s deleted: the stream was removed; stopping its pipeline", stream)
                    else:
                        log.warning("lease on %s lost to another worker; stopping its pipeline", stream)
                    self._drop(stream, sent)
                    self.pipelines.stop(stream)
                    continue
                held.counter = lease.counter
                held.valid_until = sent + self.lease_duration
                self._believe(stream, self.clock(), held.valid_until)

    def _finish_releases(self) -> None:
        for stream, held in list(self.held.items()):
            if self.pipelines.running(stream):
                continue
            if not held.releasing:
                log.warning("pipeline for %s ended; releasing its lease", stream)
            with self._lock:
                self._drop(stream, self.clock())
            if self.pipelines.gone(stream):
                log.info("stream %s no longer exists; its lease is deleted", stream)
                self.table.delete(stream, owner=self.worker_id)
            elif self.table.release(stream, self.worker_id):
                log.info("released %s", stream)

    def _expired(self, stream: str) -> bool:
        seen = self.seen.get(stream)
        return seen is not None and seen.owner is not None and self.clock() - seen.since > self.lease_duration

    def _withdraw_stale_requests(self, leases: dict[str, Lease], now: float) -> None:
        """A requester renews its request every lease duration (withdraw, ask again); one standing for two
        is from a worker that is gone, and anyone may clear it. So a request in the table is fresh."""
        for stream, lease in list(leases.items()):
            if not lease.wanted_by:
                continue
            age = now - self.requests.get(stream, (lease.wanted_by, now))[1]
            if age >= (self.lease_duration if lease.wanted_by == self.worker_id else 2 * self.lease_duration):
                self.table.withdraw(stream, lease.wanted_by)
                self.requests.pop(stream, None)
                leases[stream] = replace(lease, wanted_by=None)

    def _balance(self, leases: dict[str, Lease], now: float) -> None:  # noqa: C901 one fairness decision per cycle: count, hand over, take, ask
        self._withdraw_stale_requests(leases, now)
        counts: dict[str, int] = {self.worker_id: 0}
        for stream, lease in leases.items():
            if lease.owner and lease.owner != self.worker_id and not self._expired(stream):
                counts[lease.owner] = counts.get(lease.owner, 0) + 1
        for lease in leases.values():  # a worker holding nothing shows itself by asking for a lease
            if lease.wanted_by and lease.wanted_by not in counts:
                counts[lease.wanted_by] = 0
        counts[self.worker_id] = sum(1 for h in self.held.values() if not h.releasing)
        mine = counts[self.worker_id]
        target = min(self.max_streams, math.ceil(len(leases) / len(counts))) if leases else 0
        self.share = len(leases) / len(counts)

        # Hand over: a lease someone below us asked for, one per cycle, or anything above our cap.
        for stream, held in self.held.items():
            if held.releasing:
                continue
            lease = leases.get(stream)
            wanted = lease.wanted_by if lease else None
            if mine > self.max_streams or (wanted and wanted != self.worker_id and mine >= counts.get(wanted, 0) + 2):
                log.info("handing %s over%s", stream, f" to {wanted}" if wanted else "")
                held.releasing = True
                self.pipelines.stop(stream)
                mine -= 1
                break

        # Take free and expired leases up to our share; leases asked for by us first, others' requests respected.
        candidates = []
        for stream, lease in leases.items():
            if stream in self.held:
                continue
            if lease.owner is None:
                seen = self.seen[stream]
                if (
                    lease.wanted_by
                    and lease.wanted_by != self.worker_id
                    and lease.wanted_by in counts
                    and now - seen.since < self.lease_duration
                ):
                    continue
                candidates.append((lease.wanted_by != self.worker_id, 0, stream, lease))
            elif lease.owner == self.worker_id or self._expired(stream):  # ours from before a lapse, or expired
                candidates.append((True, 1, stream, lease))
        for _, _, stream, lease in sorted(candidates):
            if mine >= target:
                break
            sent = self.clock()
            counter = self.table.take(stream, self.worker_id, lease.counter, lease.owner)
            if counter is None:
                continue
            with self._lock:
                self.held[stream] = Held(counter, sent + self.lease_duration)
                self._believe(stream, self.clock(), sent + self.lease_duration)
            log.info("took %s%s", stream, f" (expired, from {lease.owner})" if lease.owner else "")
            self.pipelines.start(stream)
            mine += 1

        # Still below our share and nothing free: ask the most loaded worker for one of its leases.
        if mine < target and not any(lease.wanted_by == self.worker_id for lease in leases.values()):
            others = {w: n for w, n in counts.items() if w != self.worker_id}
            if others:
                busiest = max(others, key=lambda w: (others[w], w))
                if others[busiest] >= mine + 2:
                    for stream, lease in sorted(leases.items()):
                        if lease.owner == busiest and not lease.wanted_by and self.table.request(stream, busiest, self.worker_id):
                            log.info("asked %s for %s", busiest, stream)
                            break

    def lapse(self) -> None:
        """Stop reading the streams whose lease could not be renewed in time: another worker may own them now."""
        now = self.clock()
        for stream, held in list(self.held.items()):
            if now >= held.valid_until:
                log.warning("lease on %s not renewed within %gs; stopping its pipeline", stream, self.lease_duration)
                with self._lock:
                    self._drop(stream, now)
                self.pipelines.stop(stream)

    def run(self, stop: threading.Event) -> None:
        """Cycle until `stop` is set; then release everything (see `shutdown`)."""
        while not stop.is_set():
            started = self.clock()
            try:
                self.step()
            except Exception as exc:  # a failed cycle is retried next interval; leases expire only if it keeps failing
                log.warning("lease cycle failed: %s", exc)
                self.lapse()
            stop.wait(max(0.0, self.interval - (self.clock() - started)))

    def shutdown(self, timeout: float) -> None:
        """Stop every pipeline (flush, checkpoint), keep renewing meanwhile, and release each lease as it stops."""
        for stream, held in self.held.items():
            held.releasing = True
            self.pipelines.stop(stream)
        deadline = self.clock() + timeout
        while self.held and self.clock() < deadline:
            try:
                self._renew()
                self._finish_releases()
            except Exception as exc:
                log.warning("lease release failed: %s", exc)
            if self.held:
                time.sleep(min(0.1, self.interval))
        for stream in list(self.held):
            log.warning("pipeline for %s did not stop in %.0fs; its lease will expire", stream, timeout)
