"""`kinase events` in process against moto's SQS and S3: what it shows, what it deletes, what it leaves, how it ends;
its table at 80 columns with hostile names; and the command line's refusals."""

from __future__ import annotations

import json
import re

import pytest
from rich.console import Console

from kinase_cli.watch import events_view
from kinase_cli.watch.event_stats import EventStats
from kinase_cli.watch.events_session import EventFilter, EventOptions, EventSession
from kinase_cli.watch.session import Resources
from support.cli import kinase, one_error_line
from support.events import event
from worker.events import contract

MAX_RECEIVES = 5
BUCKET = "kinase-dev-frames"


class Queue:
    """An events queue with its dead-letter queue and the frames bucket, on moto."""

    def __init__(self, sqs, s3):
        self.sqs, self.s3 = sqs, s3
        self.dlq = sqs.create_queue(QueueName="events-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=self.dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVES})
        self.url = sqs.create_queue(QueueName="events", Attributes={"RedrivePolicy": redrive, "VisibilityTimeout": "120"})["QueueUrl"]
        s3.create_bucket(Bucket=BUCKET)

    def send(self, *bodies: str) -> None:
        for body in bodies:
            self.sqs.send_message(QueueUrl=self.url, MessageBody=body)

    def depth(self, url: str | None = None) -> tuple[int, int]:
        a = self.sqs.get_queue_attributes(
            QueueUrl=url or self.url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        return int(a["ApproximateNumberOfMessages"]), int(a["ApproximateNumberOfMessagesNotVisible"])

    def left(self) -> list[tuple[dict, int]]:
        """What is left on the queue: each body with how many receives it has had before this one."""
        got = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageSystemAttributeNames=["All"])
        return [(json.loads(m["Body"]), int(m["Attributes"]["ApproximateReceiveCount"]) - 1) for m in got.get("Messages", [])]

    def run(self, **options) -> tuple[dict, str, EventSession]:
        resources = Resources(self.sqs, self.s3, self.url, self.dlq, BUCKET)
        session = EventSession(resources, EventOptions(**options), Console(record=True, width=80), Console(stderr=True))
        summary, reason = session.run()
        return summary, reason, session


@pytest.fixture
def queue(monkeypatch):
    import boto3
    from moto import mock_aws

    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        yield Queue(boto3.client("sqs"), boto3.client("s3"))


def shown(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_json_shows_each_event_once_deletes_it_and_drains(queue, capsys):
    sent = [event(i) for i in range(4)]
    queue.send(*(contract.dumps(e) for e in sent), contract.dumps(sent[2]))  # published twice (at least once): two messages

    summary, reason, _ = queue.run(json=True)

    assert reason == "queue drained"
    got = shown(capsys)
    assert sorted(e["track_id"] for e in got) == [0, 1, 2, 3]
    assert {e["event_id"] for e in got} == {e["event_id"] for e in sent}
    assert summary["events"] == 4 and summary["duplicates"] == 1 and summary["types"] == {"line_crossed": 4}
    assert queue.depth() == (0, 0)


def test_invalid_messages_are_counted_once_and_left_for_the_dead_letter_queue(queue, capsys):
    wrong = {**event(9), "type": "exploded"}
    queue.send(contract.dumps(event(0)), "{'python': 'repr'}", json.dumps(wrong), json.dumps({**event(8), "schema": "kinase.frame/1"}))

    summary, _, _ = queue.run(json=True)

    assert [e["track_id"] for e in shown(capsys)] == [0]
    assert summary["invalid"] == 3 and summary["events"] == 1
    assert sum(queue.depth()) + sum(queue.depth(queue.dlq)) == 3


def test_filters_show_what_they_match_and_leave_the_rest_on_the_queue_received_once(queue, capsys):
    matching = [event(i, stream="cam-1") for i in range(3)]
    others = [event(10, "zone_entered", stream="cam-1"), event(11, stream="cam-2"), event(12, "dwell", stream="cam-2")]
    queue.send(*(contract.dumps(e) for e in matching + others))

    summary, reason, _ = queue.run(json=True, filter=EventFilter(streams=frozenset({"cam-1"}), types=frozenset({"line_crossed"})))

    assert reason == "queue drained"
    assert sorted(e["track_id"] for e in shown(capsys)) == [0, 1, 2]
    assert summary["filtered"] == 3
    left = queue.left()
    assert sorted(e["event_id"] for e, _ in left) == sorted(e["event_id"] for e in others)
    assert [receives for _, receives in left] == [1, 1, 1]  # held while the session ran, not received over and over


def test_peek_shows_everything_and_leaves_it_all(queue, capsys):
    sent = [event(i, t) for i, t in enumerate(("line_crossed", "zone_entered", "zone_left", "dwell", "camera_offline"))]
    queue.send(*(contract.dumps(e) for e in sent))

    summary, _, _ = queue.run(json=True, peek=True)

    assert sorted(e["event_id"] for e in shown(capsys)) == sorted(e["event_id"] for e in sent)
    assert summary["events"] == 5
    assert sorted(e["event_id"] for e, _ in queue.left()) == sorted(e["event_id"] for e in sent)


def test_count_stops_after_n_shown_events_and_leaves_the_others(queue, capsys):
    queue.send(*(contract.dumps(event(i)) for i in range(7)))

    summary, reason, _ = queue.run(json=True, count=3, follow=True)

    assert reason == "--count 3 reached"
    assert len(shown(capsys)) == 3 and summary["events"] == 3
    assert sum(queue.depth()) == 4


def test_follow_ends_on_idle_timeout_and_an_empty_queue_drains_at_once(queue):
    _, reason, _ = queue.run(follow=True, idle_timeout=1)
    assert reason == "idle for 1s"
    summary, reason, _ = queue.run()
    assert reason == "queue drained" and summary["events"] == 0


def test_save_downloads_snapshots_inside_the_folder_whatever_the_key(queue, capsys, tmp_path):
    keys = ["frames/cam-1/street.mp4/00000001.jpg", "../../escaped.jpg", "frames/../../../up.jpg"]
    for i, key in enumerate(keys):
        queue.s3.put_object(Bucket=BUCKET, Key=key, Body=f"jpeg {i}".encode())
    queue.send(*(contract.dumps(event(i, snapshot_key=key)) for i, key in enumerate(keys)), contract.dumps(event(7)))
    target = tmp_path / "inside"

    summary, _, _ = queue.run(json=True, save=target)

    assert len(shown(capsys)) == 4
    written = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert all(p.resolve().is_relative_to(target.resolve()) for p in written)
    assert sorted(p.read_bytes() for p in written) == [b"jpeg 0", b"jpeg 1", b"jpeg 2"]
    assert summary["saved"] == 3 and summary["save_errors"] == 0
    assert queue.depth() == (0, 0)


def test_table_at_80_columns_names_each_event_and_keeps_hostile_names_inert():
    stats = EventStats()
    stats.event(event(3, stream="cam-1", cls="person"))
    stats.event(event(4, "dwell", stream="lobby", cls="car", zone="bay", alert=True))
    stats.event(event(5, stream="[b]x\x1b[2J", cls="\u202eevil", line="[link=http://a]door[/link]"))
    stats.event(event(6, "camera_offline", stream="yard"))
    stats.bad("m1", "not JSON: Expecting value at char 0")
    screen = Console(record=True, width=80, height=40)

    screen.print(events_view.live(stats, "kinase-dev-events"))

    text = screen.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert re.search(r"\d\d:\d\d:\d\d cam-1 +line_crossed +person #3 +door in +in person×4 out 0", text)
    assert re.search(r"lobby +dwell ! +car #4 +bay +occupancy car×1", text)
    assert re.search(r"yard +camera_offline +- +- +-", text)
    assert "[b]x\\x1b[2J" in text and "\x1b" not in text and "\u202e" not in text and "\\u202eevil" in text
    assert "[link=http" in text
    assert "invalid" in text and "not JSON" in text
    assert re.search(r"events\s+4\b.*alerts 1", text) and "types" in text


def test_plain_lines_and_summary_say_what_happened():
    stats = EventStats()
    row = stats.event(event(1, "zone_entered", zone="bay\x07", alert=True))
    line = events_view.line(row)
    assert "zone_entered  ALERT  person #1  bay\\x07  counts occupancy person×1" in line
    text = events_view.summary_text(stats.summary(), "queue drained").plain
    assert text.startswith("events ended (queue drained): 1 events, 1 alerts")


def test_an_unknown_type_is_one_error_line_before_any_aws_call():
    proc = kinase("events", "--local", "--type", "line_crosed")
    line = one_error_line(proc)
    assert "unknown event type 'line_crosed'" in line and "line_crossed" in line
    assert proc.returncode == 2


def test_count_must_be_positive():
    proc = kinase("events", "--local", "--count", "0")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
