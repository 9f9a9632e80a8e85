"""Events through the fleet (issue 24 item 6): the generated events video put into a stream, read by fleet workers
(`python -m worker.fleet`, a lease table, leases of 6 s) from the earliest media, with the stream changing hands in
the middle of the video: released by its owner on SIGTERM and taken by the other worker, or its owner SIGKILLed and
the stream taken over once the lease expired. The tracker's and the analyser's state travels in the lease item's
checkpoint, so the events published to the topic count the video's ground truth exactly, with no event twice under
two ids and no track id given to two objects."""

from __future__ import annotations

import json
import uuid
from collections import Counter

import pytest

from kinase_cli.workflows.event_samples import RULES, events_video, tally
from support.events_topic import events_topic, received
from support.poll import until
from support.worker_stack import Background, summary
from worker import rules
from worker.fleet.leases import LeaseTable

pytestmark = pytest.mark.slow

LEASE = 6.0
DYNAMODB_ITEM_LIMIT = 400 * 1024


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return events_video(tmp_path_factory.mktemp("fleet-events") / "events.mp4", seed=0)


class EventsFleet:
    """One stream holding the whole video, its lease, the rules in force, and the events topic with its queue."""

    def __init__(self, media, video):
        self.media = media
        self.target = media.fresh(with_stream=True)
        self.stream = self.target.stream
        self.topic, self.events_queue = events_topic(media, self.stream)
        rules.publish(media.s3, self.target.bucket, RULES, applied_at="2026-12-07T00:00:00Z")
        self.dynamodb = media.client("dynamodb")
        self.table = f"leases-{uuid.uuid4().hex[:8]}"
        self.dynamodb.create_table(
            TableName=self.table,
            AttributeDefinitions=[{"AttributeName": "stream", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "stream", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        self.leases = LeaseTable(self.dynamodb, self.table)
        assert self.leases.ensure(self.stream)
        self.fragments = media.put(self.stream, video.path).acks.persisted
        self.largest_item = 0  # bytes of the largest lease item seen

    def worker(self) -> Background:
        env = self.media.worker_env(
            self.target,
            f"kvs://{self.stream}",
            lease_table=self.table,
            lease_duration=LEASE,
            start="EARLIEST",
            events_topic_arn=self.topic,
        )
        return Background(env, module="worker.fleet")

    def checkpoint(self) -> dict:
        item = self.dynamodb.get_item(TableName=self.table, Key={"stream": {"S": self.stream}}, ConsistentRead=True).get("Item", {})
        self.largest_item = max(self.largest_item, item_size(item))
        return json.loads(item["checkpoint"]["S"]) if "checkpoint" in item else {}

    def reached(self, fragments: list[str], *, whole: bool = False) -> bool:
        """The lease's checkpoint is at one of `fragments` (`whole`: with all of it handled)."""
        cp = self.checkpoint()
        return cp.get("fragment_number") in fragments and (not whole or cp.get("next_offset") is None)

    def done(self) -> bool:
        return self.reached(self.fragments[-1:], whole=True)


def item_size(item: dict) -> int:
    """A DynamoDB item's size as the service counts it for its 400 KB limit: names plus values (strings in UTF-8,
    numbers counted generously at their digits plus one)."""

    def value(v: dict) -> int:
        (kind, inner), *_ = v.items()
        if kind == "S":
            return len(inner.encode())
        if kind == "N":
            return len(inner) + 1
        if kind == "M":
            return sum(len(k.encode()) + value(x) for k, x in inner.items())
        if kind == "L":
            return sum(value(x) for x in inner)
        return 1

    return sum(len(name.encode()) + value(v) for name, v in item.items())


def worker_id(worker: Background) -> str:
    line = worker.wait_for(lambda line: "fleet worker " in line and "leases in" in line)
    return line.split("fleet worker ", 1)[1].split(":", 1)[0]


def assert_exact(fleet: EventsFleet, video) -> dict[str, dict]:
    """The events in the queue count the ground truth exactly, each once, one track id per object."""
    found = received(fleet.media, fleet.events_queue)
    assert {e["type"] for e in found.values()} <= {"line_crossed", "zone_entered", "zone_left", "dwell"}
    assert tally(found.values()) == video.counts
    # an event done again (a fragment redone after the hand-over) came back under the same id: never two ids for one
    assert len({(e["type"], e["rule"], e["track_id"], e["frame_id"]) for e in found.values()}) == len(found)
    assert all(e["stream_name"] == fleet.stream for e in found.values())
    # track ids: one per object (an object's events under one id, no id shared by two objects), so the events of each
    # track are the events of one object of the video
    by_track: dict[int, list] = {}
    for e in found.values():
        by_track.setdefault(e["track_id"], []).append((e["type"], e["class"]))
    by_actor: dict[int, list] = {}
    for e in video.events:
        by_actor.setdefault(e["actor"], []).append((e["type"], e["class"]))
    assert Counter(tuple(sorted(v)) for v in by_track.values()) == Counter(tuple(sorted(v)) for v in by_actor.values())
    return found


def finish(worker: Background) -> str:
    worker.terminate()
    code, _out, err = worker.finish(timeout=120)
    assert code == 0, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    return err


def test_events_exact_when_the_owner_hands_the_stream_over_on_sigterm(media, video):
    """The owner is stopped (SIGTERM, as ECS stops a task or `fleet scale` down): it flushes, checkpoints with the
    tracker's and analyser's state and releases the lease; the other worker takes it as a free lease and goes on."""
    fleet = EventsFleet(media, video)
    a = fleet.worker()
    b = None
    try:
        a_id = worker_id(a)
        a.wait_for(lambda line: f"took {fleet.stream}" in line)
        b = fleet.worker()
        worker_id(b)
        third = len(fleet.fragments) // 3
        until(lambda: fleet.reached(fleet.fragments[third:-third]), "a third of the video checkpointed")
        a.terminate()
        b.wait_for(lambda line: f"took {fleet.stream}" in line, timeout=300)
        resumed = b.wait_for(lambda line: f"resuming kvs://{fleet.stream} at fragment" in line)
        until(fleet.done, "the whole video checkpointed by the new owner", timeout=600)
        err_a, err_b = finish(a), finish(b)
    finally:
        a.kill()
        if b is not None:
            b.kill()

    assert f"released {fleet.stream}" in err_a
    took = next(line for line in err_b.splitlines() if f"took {fleet.stream}" in line)
    assert "expired" not in took and a_id not in took, took
    assert resumed.split("at fragment ", 1)[1].split()[0] != fleet.fragments[-1], "handed over in the middle of the video"
    assert summary(err_a)["delivered"] and summary(err_b)["delivered"]
    assert_exact(fleet, video)
    assert fleet.largest_item < DYNAMODB_ITEM_LIMIT / 10, fleet.largest_item
    print(f"largest lease item: {fleet.largest_item} bytes")


def test_events_exact_when_the_owner_is_killed_and_its_lease_expires(media, video):
    """The owner is SIGKILLed mid-video: nothing is released; the other worker takes the stream once the lease's
    counter stood still for a lease duration, and resumes from the last checkpoint the dead owner wrote (at most one
    fragment done again, whose events come back under the same ids)."""
    fleet = EventsFleet(media, video)
    a = fleet.worker()
    b = None
    try:
        a_id = worker_id(a)
        a.wait_for(lambda line: f"took {fleet.stream}" in line)
        b = fleet.worker()
        worker_id(b)
        third = len(fleet.fragments) // 3
        until(lambda: fleet.reached(fleet.fragments[third:-third]), "a third of the video checkpointed")
        a.kill()
        assert a.proc.returncode == -9
        b.wait_for(lambda line: f"took {fleet.stream} (expired, from {a_id})" in line, timeout=300)
        b.wait_for(lambda line: f"resuming kvs://{fleet.stream} at fragment" in line)
        until(fleet.done, "the whole video checkpointed by the new owner", timeout=600)
        finish(b)
    finally:
        a.kill()
        if b is not None:
            b.kill()

    assert_exact(fleet, video)
    assert fleet.largest_item < DYNAMODB_ITEM_LIMIT / 10, fleet.largest_item
    print(f"largest lease item: {fleet.largest_item} bytes")
