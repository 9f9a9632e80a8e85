"""The fleet's decision that a leased stream is gone (worker/fleet/main.py StreamPipelines._exists), on AWS's answers.

The task role reads streams only through an aws:ResourceTag condition (infra/stacks/fleet.py,
ReadEnvironmentStreams). IAM User Guide, "IAM JSON policy elements: Condition operators": a condition
on a key the request does not carry fails, so on AWS DescribeStream of a deleted or untagged stream is
answered AccessDeniedException, never ResourceNotFoundException (tests/infra/test_iam_check.py shows the
task role's policy denying it). Both must end the lease; a transient error must not.
"""

from __future__ import annotations

import logging
import threading

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from worker.fleet.main import StreamPipelines, _Run
from worker.sources.errors import SourceError


def _answering(code: str, status: int) -> boto3.session.Session:
    """A session whose Kinesis Video DescribeStream gets AWS's error `code`, through botocore's own error path."""
    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")

    def answer(**_):
        error = {"Error": {"Code": code, "Message": f"stubbed {code}"}, "ResponseMetadata": {"HTTPStatusCode": status}}
        return AWSResponse("https://kinesisvideo.us-east-1.amazonaws.com/describeStream", status, {}, None), error

    session.events.register("before-call.kinesis-video.DescribeStream", answer)
    return session


@pytest.mark.parametrize(
    ("code", "status"),
    [("AccessDeniedException", 403), ("ResourceNotFoundException", 404)],
)
def test_a_stream_denied_or_not_found_is_no_longer_the_fleets(code, status, caplog):
    with caplog.at_level(logging.WARNING, logger="kinase.worker.fleet"):
        assert StreamPipelines._exists("cam1", _answering(code, status)) is False
    denied = [r.getMessage() for r in caplog.records if "denied" in r.getMessage()]
    assert denied == (
        ["cam1: DescribeStream denied: deleted or no longer tagged for this environment, so no longer ours"] if status == 403 else []
    )


def test_a_transient_error_keeps_the_stream():
    assert StreamPipelines._exists("cam1", _answering("ClientLimitExceededException", 400)) is True


class _DeletedUnderIt:
    """A stream's pipeline whose stream was deleted while it read: its read fails as GetMedia's would."""

    def __init__(self, session):
        self.session, self.stop = session, threading.Event()

    def run(self) -> int:
        raise SourceError("ResourceNotFoundException: stream cam1 not found")


@pytest.mark.parametrize(("code", "status"), [("AccessDeniedException", 403), ("ResourceNotFoundException", 404)])
def test_a_stream_deleted_under_its_pipeline_is_said_so_without_an_error(code, status, caplog):
    pipelines = StreamPipelines({}, None, None, "w1")
    worker = _DeletedUnderIt(_answering(code, status))
    pipelines.runs["cam1"] = _Run(worker, threading.current_thread())
    with caplog.at_level(logging.INFO, logger="kinase.worker.fleet"):
        pipelines._run("cam1", worker)
    assert "cam1: the stream was deleted; its pipeline stops" in caplog.messages
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert pipelines.runs["cam1"].gone
