"""Stream leases (worker/fleet/leases.py) against DynamoDB served by a moto server in this process.

Most tests drive each coordinator's clock by hand, so expiry is decided by the test, never by the
machine's speed; the race test runs two coordinators on real threads with tiny intervals.
"""

from __future__ import annotations

import io
import json
import logging
import random
import threading
import time
import types
import uuid

import boto3
import numpy as np
import pytest
from moto.server import ThreadedMotoServer

from kinase_cli.local.moto_server import make_dynamodb_writes_atomic
from support.cli import free_port
from support.poll import until
from worker import contract, layout
from worker.fleet.leases import LeaseCheckpointStore, LeaseCoordinator, LeaseTable
from worker.frames import Frame
from worker.metrics import Metrics
from worker.sources.incarnation import Incarnation


@pytest.fixture(scope="module")
def dynamodb():
    make_dynamodb_writes_atomic()  # as `kinase local up`'s moto does: DynamoDB's conditional writes are atomic
    port = free_port()
    server = ThreadedMotoServer(ip_address="localhost", port=port, verbose=False)
    server.start()
    try:
        yield boto3.client(
            "dynamodb",
            endpoint_url=f"http://localhost:{port}",
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
    finally:
        server.stop()


@pytest.fixture
def table(dynamodb):
    name = f"leases-{uuid.uuid4().hex[:8]}"
    dynamodb.create_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": "stream", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "stream", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return LeaseTable(dynamodb, name)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakePipelines:
    """Pipelines that start and stop at once (or, with `slow_stop`, only when `finish` is called)."""

    def __init__(self, slow_stop: bool = False, stall: float = 0.0):
        self.active: set[str] = set()
        self.stopping: set[str] = set()
        self.started: list[str] = []
        self.slow_stop, self.stall = slow_stop, stall
        self.missing: set[str] = set()  # streams whose pipeline finds them deleted

    def gone(self, stream):
        return stream in self.missing

    def start(self, stream):
        self.active.add(stream)
        self.started.append(stream)

    def stop(self, stream):
        if self.slow_stop:
            self.stopping.add(stream)
        else:
            self.active.discard(stream)

    def finish(self, stream):
        self.stopping.discard(stream)
        self.active.discard(stream)

    def running(self, stream):
        return stream in self.active

    def stats(self, stream):
        if self.stall and random.random() < 0.3:
            time.sleep(random.uniform(0, self.stall))
        return {"lag_ms": 120.0, "fps": 5.0}


def coordinator(table, name, clock=None, max_streams=8, duration=10.0, pipelines=None):
    return LeaseCoordinator(
        table, name, pipelines or FakePipelines(), lease_duration=duration, max_streams=max_streams, clock=clock or Clock()
    )


def owners(table):
    return {lease.stream: lease.owner for lease in table.scan()}


def settle(*workers, rounds=30):
    for _ in range(rounds):
        for worker in workers:
            worker.step()


def test_take_and_renew(table):
    for name in ("cam-a", "cam-b"):
        assert table.ensure(name)
    assert not table.ensure("cam-a")
    worker = coordinator(table, "w1")
    worker.step()
    assert worker.streams() == ["cam-a", "cam-b"] and worker.holds("cam-a")
    assert worker.pipelines.started == ["cam-a", "cam-b"]
    before = table.get("cam-a").counter
    worker.step()
    after = table.get("cam-a")
    assert after.counter == before + 1 and after.owner == "w1"
    assert after.lag_ms == 120.0 and after.fps == 5.0


def test_belief_ends_one_lease_duration_after_the_last_renewal_was_sent(table):
    table.ensure("cam-a")
    clock = Clock()
    worker = coordinator(table, "w1", clock=clock)
    worker.step()
    clock.now += 9.9
    assert worker.holds("cam-a")
    clock.now += 0.2
    assert not worker.holds("cam-a")


def test_expired_lease_taken_over_only_after_the_counter_stood_still_on_the_takers_clock(table):
    table.ensure("cam-a")
    a, b = coordinator(table, "a"), coordinator(table, "b")
    a.step()
    b.step()
    assert owners(table) == {"cam-a": "a"}
    # a renews: b keeps seeing the counter move, so however much time passes on b's clock it never takes.
    for _ in range(5):
        b.clock.now += 8
        a.step()
        b.step()
        assert owners(table) == {"cam-a": "a"}
    # a stops renewing (killed): b takes once the counter stood still for longer than the duration on b's clock.
    b.clock.now += 9
    b.step()
    assert owners(table) == {"cam-a": "a"}
    b.clock.now += 2
    b.step()
    assert owners(table) == {"cam-a": "b"} and b.holds("cam-a")
    # a comes back: its renewal fails, it stops the pipeline and its checkpoint writes are refused.
    a.step()
    assert a.streams() == [] and not a.pipelines.running("cam-a")
    assert owners(table) == {"cam-a": "b"}


ARN = "arn:aws:kinesisvideo:us-east-1:123456789012:stream/cam-a/1700000000000"


def store(table, owner, source="kvs://cam-a", arn=ARN):
    return LeaseCheckpointStore(
        table, "cam-a", owner, source, Incarnation(arn, "2023-11-14T22:13:20Z"), Metrics("cam-a", out=io.StringIO())
    )


def test_a_worker_that_cannot_renew_stops_reading_once_its_lease_lapses(table):
    table.ensure("cam-a")
    worker = coordinator(table, "w1")
    worker.step()
    assert worker.pipelines.running("cam-a")
    worker.clock.now += 5
    worker.lapse()  # DynamoDB unreachable for a while: still within the lease
    assert worker.pipelines.running("cam-a")
    worker.clock.now += 6
    worker.lapse()
    assert worker.streams() == [] and not worker.pipelines.running("cam-a")
    worker.step()  # reachable again: it takes its own lapsed lease back
    assert worker.streams() == ["cam-a"] and worker.pipelines.running("cam-a")


def test_checkpoint_in_the_lease_is_written_only_by_the_owner(table):
    table.ensure("cam-a")
    a, b = coordinator(table, "a"), coordinator(table, "b")
    a.step()
    store(table, "a").save({"fragment_number": "100", "next_offset": None})
    assert store(table, "b").load()["fragment_number"] == "100"
    b.step()
    b.clock.now += 11
    b.step()
    assert owners(table) == {"cam-a": "b"}
    store(table, "b").save({"fragment_number": "200", "next_offset": None})
    store(table, "a").save({"fragment_number": "150", "next_offset": None})  # a late write from the old owner
    loaded = store(table, "b").load()
    assert (loaded["fragment_number"], loaded["stream_arn"]) == ("200", ARN)


def test_checkpoint_in_the_lease_keeps_the_stages_state(table):
    table.ensure("cam-a")
    coordinator(table, "a").step()
    store(table, "a").save({"fragment_number": "100", "next_offset": None, "stages": {"numbering": {"next": 5}}})
    assert store(table, "a").load()["stages"] == {"numbering": {"next": 5}}


def test_checkpoint_of_another_incarnation_is_set_aside_with_a_gap(table):
    table.ensure("cam-a")
    a = coordinator(table, "a")
    a.step()
    store(table, "a").save({"fragment_number": "100", "next_offset": None})
    recreated = store(table, "a", arn=ARN.replace("1700000000000", "1800000000000"))
    assert recreated.load() is None
    assert recreated.metrics.totals["Gaps"] == 1
    assert table.get("cam-a").checkpoint is None
    assert store(table, "a").load() is None  # set aside, not merely skipped


def test_shutdown_releases_and_another_worker_takes_at_once(table):
    for name in ("cam-a", "cam-b"):
        table.ensure(name)
    pipes = FakePipelines()
    a, b = coordinator(table, "a", pipelines=pipes), coordinator(table, "b")
    a.step()
    settle(a, b, rounds=3)
    assert sorted(owners(table).values()) == ["a", "b"]
    pipes.slow_stop = True  # releasing waits for the pipeline's flush and checkpoint
    held = a.streams()
    threading.Timer(0.3, lambda: [pipes.finish(s) for s in held]).start()
    a.shutdown(timeout=30)
    assert a.streams() == [] and all(owner != "a" for owner in owners(table).values())
    b.step()  # no waiting for expiry: b's clock did not move
    assert owners(table) == {"cam-a": "b", "cam-b": "b"}


def test_six_streams_three_workers_balance_two_each(table):
    for i in range(6):
        table.ensure(f"cam-{i}")
    first = coordinator(table, "w1")
    first.step()
    assert len(first.streams()) == 6  # alone, it takes everything
    workers = [first, coordinator(table, "w2"), coordinator(table, "w3")]
    settle(*workers)
    held = {w.worker_id: w.streams() for w in workers}
    assert sorted(len(s) for s in held.values()) == [2, 2, 2], held
    assert sorted(s for streams in held.values() for s in streams) == [f"cam-{i}" for i in range(6)]
    assert {s: w for w, streams in held.items() for s in streams} == owners(table)
    for worker in workers:  # a stream that moved was stopped at its old owner
        assert worker.pipelines.active == set(worker.streams())


def test_a_lease_handed_over_goes_to_the_worker_that_asked(table):
    """A worker holding nothing is seen by its request: a third worker below its share must not take that lease."""
    for name in ("cam-a", "cam-b", "cam-c"):
        table.ensure(name)
    a, b, c = coordinator(table, "a", max_streams=1), coordinator(table, "b", max_streams=2), coordinator(table, "c")
    a.step()
    b.step()
    assert (a.streams(), b.streams()) == (["cam-a"], ["cam-b", "cam-c"])
    a.max_streams = 8
    c.step()  # asks b, the busiest, for one
    assert sum(lease.wanted_by == "c" for lease in table.scan()) == 1
    b.step()  # stops that stream's pipeline
    b.step()  # and releases the lease once it has stopped
    a.step()
    assert a.streams() == ["cam-a"]
    c.step()
    assert [len(w.streams()) for w in (a, b, c)] == [1, 1, 1]


def test_a_request_left_by_a_worker_that_is_gone_stops_counting(table):
    for name in ("cam-a", "cam-b", "cam-c"):
        table.ensure(name)
    b = coordinator(table, "b")
    b.step()
    assert len(b.streams()) == 3
    assert table.request("cam-a", "b", "ghost")  # asked, then died before taking it
    b.step()  # hands cam-a over (3 >= 0 + 2)
    b.step()  # released; the ghost counts as a worker while its request is fresh
    assert b.streams() == ["cam-b", "cam-c"]
    b.clock.now += 21  # two lease durations on b's clock: the request is stale
    b.step()
    assert b.streams() == ["cam-a", "cam-b", "cam-c"] and table.get("cam-a").wanted_by is None


def test_at_most_max_streams_per_worker(table):
    for i in range(5):
        table.ensure(f"cam-{i}")
    worker = coordinator(table, "w1", max_streams=2)
    settle(worker, rounds=3)
    assert len(worker.streams()) == 2
    other = coordinator(table, "w2", max_streams=2)
    settle(worker, other, rounds=5)
    assert len(other.streams()) == 2
    assert sum(1 for owner in owners(table).values() if owner is None) == 1


def test_new_streams_picked_up_and_deleted_streams_stopped(table, caplog):
    table.ensure("cam-a")
    table.ensure("cam-b")
    workers = [coordinator(table, name) for name in ("w1", "w2")]
    settle(*workers, rounds=5)
    assert sorted(owners(table)) == ["cam-a", "cam-b"] and None not in owners(table).values()
    table.ensure("cam-c")  # `kinase stream create` at runtime
    settle(*workers, rounds=3)
    assert owners(table).get("cam-c") in ("w1", "w2")
    # `kinase stream rm`: the lease goes with the stream; its holder's renewal fails and it stops reading
    holder = next(w for w in workers if "cam-a" in w.streams())
    table.delete("cam-a", owner=holder.worker_id)
    with caplog.at_level(logging.INFO, logger="kinase.worker.leases"):
        settle(*workers, rounds=2)
    assert "cam-a" not in holder.streams() and not holder.pipelines.running("cam-a")
    said = [m for m in caplog.messages if "cam-a" in m]
    assert "lease on cam-a deleted: the stream was removed; stopping its pipeline" in said  # not "lost to another worker"
    assert not any("another worker" in m for m in said)
    assert "cam-a" not in owners(table)
    # a stream deleted behind the fleet's back: its pipeline ends finding it gone, and the lease is deleted
    holder = next(w for w in workers if "cam-b" in w.streams())
    holder.pipelines.missing.add("cam-b")
    holder.pipelines.active.discard("cam-b")
    settle(*workers, rounds=2)
    assert "cam-b" not in owners(table) and "cam-b" not in holder.streams()


def test_lease_race_two_workers_never_both_hold_one_lease(table):
    """Forced contention: 0.3 s leases, cycles of 0.1 s, renewals that stall past the lease duration at random."""
    table.ensure("cam-race")
    duration = 0.3
    workers = [
        LeaseCoordinator(table, name, FakePipelines(stall=duration * 1.5), lease_duration=duration, clock=time.monotonic)
        for name in ("a", "b")
    ]
    stop = threading.Event()
    threads = [threading.Thread(target=w.run, args=(stop,)) for w in workers]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        changes = sum(len(w.history) for w in workers)
        if changes >= 12 and all(w.history for w in workers):
            break
        time.sleep(0.1)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    a, b = (w.history for w in workers)
    assert a and b, "the lease never changed hands"
    for x in a:
        for y in b:
            assert x.end <= y.start or y.end <= x.start, f"both held cam-race: a {x} and b {y}"


def test_of_racing_conditional_writes_exactly_one_succeeds(table, monkeypatch):
    """DynamoDB applies a conditional write atomically (Expressions.ConditionExpressions in the DynamoDB
    developer guide); the local stack's moto is made to as well (kinase_cli/local/moto_server.py).
    Rounds of 8 threads take one free lease at once: one wins each round. moto's condition check is
    slowed down here so that, without the lock, every thread passes it before any writes."""
    from concurrent.futures import ThreadPoolExecutor

    import moto.dynamodb.models as moto_dynamodb

    parser = moto_dynamodb.create_condition_expression_parser

    def slow_parser(*args, **kwargs):
        op = parser(*args, **kwargs).parse()
        check = op.expr

        def slow(item):
            verdict = check(item)
            time.sleep(0.02)
            return verdict

        op.expr = slow
        return type("Parsed", (), {"parse": lambda self: op})()

    monkeypatch.setattr(moto_dynamodb, "create_condition_expression_parser", slow_parser)

    with ThreadPoolExecutor(8) as pool:
        for round_ in range(15):
            stream = f"cam-atomic-{round_}"
            table.ensure(stream)
            start = threading.Barrier(8)

            def take(name, stream=stream, start=start):
                start.wait()
                return table.take(stream, name, 0, None)

            won = [c for c in pool.map(take, [f"w{i}" for i in range(8)]) if c is not None]
            assert won == [1], f"round {round_}: {len(won)} conditional writes on counter 0 succeeded"


# ------------------------------------------------------------------- leases keep their promise under hangs (issue 22)
# The Kinesis Client Library's lease model: a holder stops processing once its lease has expired by its own
# clock, whether or not its renewal has answered; DESIGN.md ("Many cameras: the fleet"): the holder's belief ends
# lease_duration after it SENT its last successful renewal, before any taker's clock lets it take.


class HangingTable:
    """The lease table with renewals that hang (DynamoDB accepts the call and never answers) until `answer()`."""

    def __init__(self, table):
        self.table, self.hanging, self.answered = table, threading.Event(), threading.Event()
        self.renewing = threading.Event()

    def __getattr__(self, name):
        return getattr(self.table, name)

    def renew(self, *args, **kwargs):
        if self.hanging.is_set():
            self.renewing.set()
            self.answered.wait(30)
        return self.table.renew(*args, **kwargs)


def test_the_watchdog_stops_the_pipeline_at_belief_end_while_its_renewal_hangs(table):
    table.ensure("cam-a")
    hanging = HangingTable(table)
    worker = coordinator(hanging, "w1")
    worker.step()
    fence = worker.fence("cam-a")
    assert fence() and worker.pipelines.running("cam-a")

    hanging.hanging.set()
    cycle = threading.Thread(target=worker.step, daemon=True)
    cycle.start()
    assert hanging.renewing.wait(30)  # the lease loop is stuck in the renewal
    worker.clock.now += 9.9
    worker.expire()
    assert fence() and worker.pipelines.running("cam-a")  # within the lease: reading on
    worker.clock.now += 0.2
    assert not fence()  # past the belief end on our own clock: not one more send, though the call has not answered
    worker.expire()
    assert not worker.pipelines.running("cam-a")

    hanging.answered.set()  # the renewal comes back, successful (nobody took the lease): too late
    cycle.join(30)
    assert not fence(), "a fence never opens again"
    worker.step()  # the pipeline has stopped: the lease is released, then taken again with a new pipeline
    worker.step()
    assert worker.holds("cam-a") and worker.fence("cam-a")() and not fence()


def test_a_fence_stays_shut_after_the_lease_is_lost_and_taken_back(table):
    table.ensure("cam-a")
    a, b = coordinator(table, "a"), coordinator(table, "b")
    a.step()
    first = a.fence("cam-a")
    b.step()
    b.clock.now += 11  # a was paused (SIGSTOP): no renewal; b takes over on its own clock
    b.step()
    assert owners(table) == {"cam-a": "b"}
    a.clock.now += 11  # a resumes: before its lease loop even runs, its clock says the belief has ended
    assert not first()
    a.expire()
    assert not a.pipelines.running("cam-a")
    a.step()  # its renewal fails: the lease is gone
    assert a.streams() == [] and not first()
    assert not a.fence("cam-a")(), "no fence opens for a stream not held"


def test_a_checkpoint_is_not_written_once_the_fence_has_shut(table):
    from worker.checkpoint import Ledger
    from worker.frames import FragmentEnd

    table.ensure("cam-a")
    worker = coordinator(table, "a")
    worker.step()
    fence = worker.fence("cam-a")
    written = LeaseCheckpointStore(
        table, "cam-a", "a", "kvs://cam-a", Incarnation(ARN, "2023-11-14T22:13:20Z"), Metrics("cam-a", out=io.StringIO()), fence=fence
    )
    ledger = Ledger(written, Metrics("cam-a", out=io.StringIO()))
    ledger.fragment_end(FragmentEnd("100", {"fragment_number": "100", "next_offset": None}))
    assert table.get("cam-a").checkpoint["fragment_number"] == "100"
    worker.clock.now += 10.1
    ledger.fragment_end(FragmentEnd("200", {"fragment_number": "200", "next_offset": None}))
    assert table.get("cam-a").checkpoint["fragment_number"] == "100", "the lease is still ours in the table, but not in our belief"
    assert ledger.position["fragment_number"] == "100", "the ledger stays at the last checkpoint really written"


class Recorder:
    """S3 and SQS clients that record what reaches them."""

    def __init__(self):
        self.sent: list[tuple[str, str]] = []
        self.meta = types.SimpleNamespace(events=types.SimpleNamespace(register=lambda *_args, **_kwargs: None))

    def put_object(self, Key, **_):
        self.sent.append(("s3", Key))

    def send_message_batch(self, QueueUrl, Entries):
        self.sent += [("sqs", json.loads(e["MessageBody"])["key"]) for e in Entries]
        return {"Successful": [{"Id": e["Id"]} for e in Entries]}


def kvs_frame(fragment: str, offset: int, live: bool = False) -> Frame:
    return Frame(
        image=np.zeros((8, 8, 3), np.uint8),
        source={"type": "kvs", "uri": "kvs://cam-a", "fragment_number": fragment, "frame_in_fragment": offset},
        frame_index=offset,
        frame_time=1000.0 + offset,
        read_at=time.monotonic(),
        live=live,
        fragment=fragment,
        offset=offset,
    )


def test_nothing_is_sent_once_the_fence_shuts_and_what_was_in_flight_is_released():
    from worker.checkpoint import Ledger
    from worker.sinks import Delivery

    open_ = [True]
    metrics = Metrics("cam-a", out=io.StringIO())
    client = Recorder()
    ledger = Ledger(None, metrics)
    delivery = Delivery(
        client, client, bucket="b", queue_url="q", stream_name="cam-a", model="m", ledger=ledger, metrics=metrics, fence=lambda: open_[0]
    )
    delivery.submit(kvs_frame("100", 0), [], 1.0)
    until(lambda: metrics.totals["FramesDelivered"] == 1, "the frame in flight delivered", every=0.01)
    open_[0] = False  # the lease's belief ends
    for offset in (1, 2, 3):
        delivery.submit(kvs_frame("100", offset), [], 1.0)
    assert delivery.close(30)
    key = layout.frame_key(contract.frame_id("cam-a", kvs_frame("100", 0).source))
    assert client.sent == [("s3", key), ("sqs", key)], "nothing reaches S3 or SQS after the belief ended"
    assert (metrics.totals["FramesDelivered"], metrics.totals["FramesReleased"], metrics.totals["FramesUnfinished"]) == (1, 3, 0)


def test_live_drops_past_the_last_checkpoint_written_are_released_when_the_lease_ends():
    """The next owner resumes from the last checkpoint written and redoes what follows: a drop there is not a loss."""
    from worker import settings as worker_settings
    from worker.checkpoint import Ledger
    from worker.pipeline import FrameQueue, Worker

    settings = worker_settings.load(worker_settings.environment(source="kvs://cam-a", bucket="b", queue_url="q", stream_name="cam-a"))
    open_ = [True]
    worker = Worker(settings, session=boto3.session.Session(region_name="us-east-1"), fence=lambda: open_[0], metrics_out=io.StringIO())
    worker._ledger = Ledger(None, worker.metrics, position={"fragment_number": "100", "next_offset": 2})
    queue = FrameQueue(8, worker.metrics, threading.Event(), live_cap=1, on_drop=worker._dropped_frame)
    for fragment, offset in (("100", 0), ("100", 1), ("100", 2), ("200", 0), ("200", 1)):
        queue.put(kvs_frame(fragment, offset, live=True))  # each newer frame pushes the older one out
    assert worker.metrics.totals["FramesDropped"] == 4
    open_[0] = False
    worker._release_drops()
    # (100, 0) and (100, 1) are behind the checkpoint: lost for good; (100, 2) and (200, 0) will be redone
    assert (worker.metrics.totals["FramesDropped"], worker.metrics.totals["FramesReleased"]) == (2, 2)


class FailingRenewals:
    """The lease table with renewals of the named streams failing (a timeout or a throttle after botocore's attempts)."""

    def __init__(self, table, failing: set[str]):
        self.table, self.failing = table, failing

    def __getattr__(self, name):
        return getattr(self.table, name)

    def renew(self, stream, *args, **kwargs):
        if stream in self.failing:
            raise TimeoutError(f"renewing {stream} timed out")
        return self.table.renew(stream, *args, **kwargs)


def test_a_failing_renewal_costs_only_its_own_lease_and_only_once_its_belief_ends(table):
    """One slow or throttled renewal must not keep the worker's other leases from being renewed, nor end the
    cycle: the stream whose renewals fail keeps its belief until it runs out on our clock, then stops."""
    for stream in ("cam-a", "cam-b"):
        table.ensure(stream)
    worker = coordinator(table, "w1")
    worker.step()
    assert worker.streams() == ["cam-a", "cam-b"]
    worker.table = FailingRenewals(table, {"cam-a"})
    for _ in range(3):
        worker.clock.now += worker.interval
        worker.step()  # no exception: cam-b renewed, cam-a tried again next cycle
        worker.expire()
    assert worker.pipelines.running("cam-b") and worker.held["cam-b"].valid_until > worker.clock.now
    assert not worker.pipelines.running("cam-a")  # its belief ran out: the watchdog stopped it
