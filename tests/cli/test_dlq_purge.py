"""`kinase dlq purge` after a recent purge: SQS allows one PurgeQueue per queue a minute and answers
PurgeQueueInProgress within it (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_PurgeQueue.html);
a confirmed purge waits that out instead of failing, and any other error still fails."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from kinase_cli.commands import dlq

URL = "https://sqs.us-east-1.amazonaws.com/123456789012/kinase-dev-dlq"


class Sqs:
    def __init__(self, *errors: str):
        self.errors = list(errors)
        self.calls = 0

    def purge_queue(self, QueueUrl):
        assert QueueUrl == URL
        self.calls += 1
        if self.errors:
            code = self.errors.pop(0)
            raise ClientError({"Error": {"Code": code, "Message": "..."}}, "PurgeQueue")


@pytest.fixture
def no_sleep(monkeypatch):
    slept = []
    monkeypatch.setattr(dlq.time, "sleep", slept.append)
    return slept


def test_a_purge_within_the_minute_waits_and_goes_ahead(no_sleep, capsys):
    sqs = Sqs("AWS.SimpleQueueService.PurgeQueueInProgress", "AWS.SimpleQueueService.PurgeQueueInProgress")
    dlq._purge(sqs, URL)
    assert sqs.calls == 3 and len(no_sleep) == 2
    assert "purged less than 60 s ago" in capsys.readouterr().err


def test_other_errors_are_not_waited_on(no_sleep):
    sqs = Sqs("AccessDenied")
    with pytest.raises(ClientError):
        dlq._purge(sqs, URL)
    assert sqs.calls == 1 and no_sleep == []


def test_the_wait_ends_after_the_interval(no_sleep, monkeypatch):
    clock = iter(range(0, 1000, 30))
    monkeypatch.setattr(dlq.time, "monotonic", lambda: next(clock))
    sqs = Sqs(*["PurgeQueueInProgress"] * 10)
    with pytest.raises(ClientError):
        dlq._purge(sqs, URL)
    assert sqs.calls <= 4
