"""`kinase dlq` against the local stack: bad messages reach the DLQ, `ls` says why, `redrive` brings them back."""

from __future__ import annotations

import json

import pytest

from support.cli import kinase
from support.messages import frame
from worker import contract

pytestmark = pytest.mark.e2e

WIDE = {"COLUMNS": "220"}


def dlq(stack, *args):
    return kinase("dlq", *args, "--local", env=WIDE, timeout=120)


def release(stack, messages: list[dict]) -> None:
    stack.client("sqs").change_message_visibility_batch(
        QueueUrl=stack.queue,
        Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0} for i, m in enumerate(messages)],
    )


def bad_bodies(bucket: str) -> dict[str, str]:
    """Body -> the words `dlq ls` must give as its reason."""
    missing = frame(bucket, 7, ["person"])
    del missing["frame_time"]
    return {
        "{'bucket': 'a python repr'}": "not JSON",
        json.dumps({**frame(bucket, 1, []), "schema": "kinase.frame/2"}): "wrong schema 'kinase.frame/2'",
        contract.dumps({**frame(bucket, 2, ["car"]), "bucket": "not-our-bucket"}): "foreign bucket: 'not-our-bucket'",
        json.dumps(missing): "'frame_time' is a required property",
    }


def test_bad_messages_end_in_the_dlq_ls_says_why_and_redrive_brings_them_back(fresh):
    bad = bad_bodies(fresh.bucket)
    good = [frame(fresh.bucket, i, ["person"]) for i in range(3)]
    fresh.send([contract.dumps(m) for m in good] + list(bad))

    shown = []
    for _ in range(12):  # each watch run receives the bad ones a few times; SQS moves them after maxReceiveCount
        proc = kinase("watch", "--local", "--json", "--idle-timeout", "3", timeout=120)
        assert proc.returncode == 0, proc.stderr
        shown += [json.loads(line) for line in proc.stdout.splitlines()]
        if fresh.depth(fresh.dlq)[0] == len(bad):
            break
    assert sorted(m["frame_index"] for m in shown) == [0, 1, 2]
    assert fresh.depth(fresh.dlq) == (len(bad), 0) and fresh.depth(fresh.queue) == (0, 0)

    listed = dlq(fresh, "ls", "--json")
    assert listed.returncode == 0, listed.stderr
    envelope = json.loads(listed.stdout)
    assert envelope["command"] == "dlq ls"
    letters = {m["body"]: m for m in envelope["data"]["messages"]}
    assert set(letters) == set(bad)
    for body, words in bad.items():
        assert words in letters[body]["reason"]
        assert letters[body]["receive_count"] >= fresh.max_receives
        assert contract.parse_iso(letters[body]["first_received_at"]) > 0
    assert fresh.depth(fresh.dlq) == (len(bad), 0), "ls must put back what it read"

    table = dlq(fresh, "ls")
    assert table.returncode == 0
    for message_id in (m["message_id"] for m in letters.values()):
        assert message_id in table.stdout
    for words in ("not JSON", "wrong schema", "foreign bucket", "required property"):
        assert words in table.stdout

    refused = dlq(fresh, "redrive")
    assert refused.returncode != 0 and "--yes" in refused.stderr
    assert fresh.depth(fresh.dlq) == (len(bad), 0)

    moved = dlq(fresh, "redrive", "-y")
    assert moved.returncode == 0, moved.stderr
    assert f"moved {len(bad)} message(s)" in moved.stderr
    assert fresh.depth(fresh.dlq) == (0, 0)
    assert fresh.depth(fresh.queue) == (len(bad), 0)
    back = fresh.client("sqs").receive_message(
        QueueUrl=fresh.queue, MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageSystemAttributeNames=["ApproximateReceiveCount"]
    )["Messages"]
    assert sorted(m["Body"] for m in back) == sorted(bad)
    assert all(m["Attributes"]["ApproximateReceiveCount"] == "1" for m in back)
    release(fresh, back)


def test_redrive_keeps_message_attributes(fresh):
    body = contract.dumps(frame(fresh.bucket, 5, ["person"]))
    attributes = {"origin": {"DataType": "String", "StringValue": "camera-7"}}
    fresh.client("sqs").send_message(QueueUrl=fresh.dlq, MessageBody=body, MessageAttributes=attributes)

    listed = json.loads(dlq(fresh, "ls", "--json").stdout)["data"]["messages"]
    assert [m["reason"] for m in listed] == ["valid"]
    assert dlq(fresh, "redrive", "--yes").returncode == 0

    back = fresh.client("sqs").receive_message(QueueUrl=fresh.queue, WaitTimeSeconds=1, MessageAttributeNames=["All"])["Messages"]
    assert [m["Body"] for m in back] == [body]
    assert back[0]["MessageAttributes"]["origin"]["StringValue"] == "camera-7"
    release(fresh, back)


def test_purge_asks_first_and_empties_the_dlq_with_yes(fresh):
    sqs = fresh.client("sqs")
    for i in range(3):
        sqs.send_message(QueueUrl=fresh.dlq, MessageBody=f"junk {i}")

    refused = dlq(fresh, "purge")
    assert refused.returncode != 0 and "--yes" in refused.stderr
    assert fresh.depth(fresh.dlq) == (3, 0)

    purged = dlq(fresh, "purge", "--yes")
    assert purged.returncode == 0, purged.stderr
    assert fresh.depth(fresh.dlq) == (0, 0)


def test_ls_and_redrive_of_an_empty_dlq(fresh):
    empty = dlq(fresh, "ls")
    assert empty.returncode == 0 and "empty" in empty.stderr
    assert json.loads(dlq(fresh, "ls", "--json").stdout)["data"]["messages"] == []
    nothing = dlq(fresh, "redrive", "-y")
    assert nothing.returncode == 0 and "empty" in nothing.stderr
