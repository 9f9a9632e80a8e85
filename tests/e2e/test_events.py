"""`kinase events` against the deployed local stack: its events queue (stack output EventsQueueUrl), fed directly and
through the events topic (raw delivery), read as JSON lines, plain lines, a table in an 80-column terminal, with
filters, --count, --idle-timeout and --save."""

from __future__ import annotations

import json
import re
import time

import pytest

from support.cli import kinase
from support.events import event
from support.terminal import terminal
from worker.events import contract

pytestmark = pytest.mark.e2e


class Events:
    """The stack's events queue, its dead-letter queue and the frames bucket."""

    def __init__(self, stack):
        self.stack = stack
        self.sqs = stack.client("sqs")
        self.url = stack.outputs["EventsQueueUrl"]
        redrive = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["RedrivePolicy"])["Attributes"]["RedrivePolicy"]
        dlq_name = json.loads(redrive)["deadLetterTargetArn"].rsplit(":", 1)[-1]
        self.dlq = self.sqs.get_queue_url(QueueName=dlq_name)["QueueUrl"]

    def send(self, *bodies: str) -> None:
        for start in range(0, len(bodies), 10):
            chunk = bodies[start : start + 10]
            r = self.sqs.send_message_batch(QueueUrl=self.url, Entries=[{"Id": str(i), "MessageBody": b} for i, b in enumerate(chunk)])
            assert not r.get("Failed"), r

    def total(self) -> int:
        """Messages left on the queue and its DLQ, visible or not."""
        return sum(self.stack.depth(self.url)) + sum(self.stack.depth(self.dlq))

    def reset(self) -> None:
        for _ in range(120):
            if self.total() == 0:
                return
            for url in (self.url, self.dlq):
                got = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
                if got:
                    self.sqs.delete_message_batch(
                        QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)]
                    )
            time.sleep(0.25)
        raise AssertionError(f"events queues did not drain: {self.stack.depth(self.url)} {self.stack.depth(self.dlq)}")


@pytest.fixture
def events_queue(stack):
    queue = Events(stack)
    queue.reset()
    return queue


def events(*args: str, timeout: float = 120):
    return kinase("events", "--local", *args, timeout=timeout)


def test_json_lines_one_per_event_duplicates_once_invalid_counted_and_left(events_queue):
    sent = [event(i, t) for i, t in enumerate(("line_crossed", "zone_entered", "dwell", "object_appeared", "camera_offline"))]
    hostile = event(5, stream="cam\x1b]0;pwned\x07", cls="[red]x[/red]", line="\u202edoor")
    invalid = ["not json", json.dumps({**event(6), "type": "teleported"}), json.dumps({**event(7), "schema": "kinase.event/9"})]
    events_queue.send(*(contract.dumps(e) for e in [*sent, hostile]), contract.dumps(sent[0]), *invalid)

    proc = events("--json")

    assert proc.returncode == 0, proc.stderr
    got = [json.loads(line) for line in proc.stdout.splitlines()]
    assert sorted(got, key=lambda e: e["track_id"] if e["track_id"] is not None else 99) == [*sent[:4], hostile, sent[4]]
    assert "events ended (queue drained): 6 events" in proc.stderr
    assert "invalid: 3, duplicates: 1, filtered out: 0" in proc.stderr
    assert events_queue.total() == 3  # the invalid ones, on the queue or already in its DLQ


def test_plain_lines_escape_hostile_names(events_queue):
    events_queue.send(contract.dumps(event(1, "zone_entered", stream="cam\x1b[2J", zone="[link=http://x]bay[/link]", alert=True)))

    proc = events()

    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].endswith(
        "cam\\x1b[2J  zone_entered  ALERT  person #1  [link=http://x]bay[/link]  counts occupancy person×1"
    )
    assert "\x1b" not in proc.stdout


def test_filters_count_and_idle_timeout(events_queue):
    wanted = [event(i, stream="cam-1") for i in range(4)]
    others = [event(10, "dwell", stream="cam-1"), event(11, stream="cam-2")]
    events_queue.send(*(contract.dumps(e) for e in wanted + others))

    first = events("--json", "--follow", "--type", "line_crossed", "--stream", "cam-1", "--count", "3")
    assert first.returncode == 0, first.stderr
    assert len(first.stdout.splitlines()) == 3 and "events ended (--count 3 reached): 3 events" in first.stderr

    rest = events("--json", "--follow", "--type", "line_crossed", "--type", "dwell", "--idle-timeout", "2")
    assert rest.returncode == 0, rest.stderr
    assert "events ended (idle for 2s)" in rest.stderr
    first_tracks = {json.loads(line)["track_id"] for line in first.stdout.splitlines()}
    shown = sorted(json.loads(line)["track_id"] for line in rest.stdout.splitlines())
    assert shown == sorted(({0, 1, 2, 3} - first_tracks) | {10, 11})
    assert events_queue.total() == 0


def test_save_downloads_each_snapshot_inside_the_folder(events_queue, tmp_path):
    s3 = events_queue.stack.client("s3")
    keys = ["frames/cam-1/street.mp4/00000001.jpg", "../../../outside.jpg"]
    for i, key in enumerate(keys):
        s3.put_object(Bucket=events_queue.stack.bucket, Key=key, Body=f"jpeg {i}".encode())
    events_queue.send(*(contract.dumps(event(i, snapshot_key=key)) for i, key in enumerate(keys)))
    target = tmp_path / "snaps"

    proc = events("--json", "--save", str(target))

    assert proc.returncode == 0, proc.stderr
    written = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert sorted(p.read_bytes() for p in written) == [b"jpeg 0", b"jpeg 1"]
    assert all(p.resolve().is_relative_to(target.resolve()) for p in written)
    assert "saved: 2, save errors: 0" in proc.stderr


def test_an_event_published_to_the_topic_reaches_kinase_events_as_the_event_itself(events_queue):
    sns = events_queue.stack.client("sns")
    published = event(1, "dwell", stream="dock")
    sns.publish(
        TopicArn=events_queue.stack.outputs["EventsTopicArn"],
        Message=contract.dumps(published),
        MessageAttributes={"type": {"DataType": "String", "StringValue": "dwell"}},
    )

    proc = events("--json", "--follow", "--count", "1", timeout=60)

    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line) for line in proc.stdout.splitlines()] == [published]


def test_live_table_in_an_80_column_terminal(events_queue, tmp_path):
    with terminal(f"kinase-events-{tmp_path.name}", "events", "--local", "--follow", size=(80, 24), env={}) as term:
        term.wait_for(r"events\s+0\b", r"time\s+stream\s+event\s+object\s+where\s+counts")
        events_queue.send(
            contract.dumps(event(1, stream="cam-1")),
            contract.dumps(event(2, "dwell", stream="loading-bay-cam", cls="car", zone="bay", alert=True)),
            contract.dumps(event(1, stream="cam-1")),
            "garbage",
        )
        screen = term.wait_for(r"events\s+2\b", r"invalid\s+1\b")
        assert re.search(r"\d\d:\d\d:\d\d cam-1 +line_crossed +person #1 +door in +in person×2 out 0", screen)
        assert re.search(r"loading-bay… +dwell ! +car #2 +bay +occupancy car×1", screen)
        assert all(len(line) <= 80 for line in screen.splitlines())
        term.keys("C-c")
        ended = term.wait_for(r"exit=\d+")
        assert "events ended (interrupted): 2 events" in ended and "duplicates: 1" in ended and "exit=0" in ended
