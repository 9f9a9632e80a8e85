"""The Kinesis Video reader's handling of what GetMedia answers, against a scripted media client.

The error tags are those of API_dataplane_GetMedia (AWS_KINESISVIDEO_ERROR_CODE / _ERROR_ID: 3002, 4000,
4500-4506); idle reads are boto3 issue 3532 (a silent stream holds the connection and sends nothing); the
call rate is GetMedia's 5 calls per second per stream (API_dataplane_GetMedia).
"""

from __future__ import annotations

import io
import threading
import time

import boto3
import pytest
import urllib3

from worker.metrics import Metrics
from worker.sources import kvs, mkv
from worker.sources.errors import SourceError
from worker.sources.sampling import Sampler

ARN = "arn:aws:kinesisvideo:us-east-1:123456789012:stream/cam/1790000000000"


def error_body(error_id: int, code: str) -> bytes:
    tags = {mkv.ERROR_CODE: code, mkv.ERROR_ID: str(error_id)}
    return mkv.ebml_header() + mkv.segment_start() + mkv.tags_element(tags)


class Silent(io.RawIOBase):
    """A held connection that sends nothing: every read times out, as urllib3's does."""

    def readable(self) -> bool:
        return True

    def read1(self, n: int = -1) -> bytes:
        raise urllib3.exceptions.ReadTimeoutError(None, None, "Read timed out.")

    read = read1


class Media:
    """A kinesis-video-media client whose GetMedia answers are scripted: bytes, or a body that stays silent."""

    def __init__(self, answers, stop: threading.Event, calls: int = 1000):
        self.answers, self.stop, self.limit = answers, stop, calls
        self.calls: list[tuple[float, dict]] = []

    def get_media(self, StreamName, StartSelector):
        self.calls.append((time.monotonic(), dict(StartSelector)))
        if len(self.calls) >= self.limit:
            self.stop.set()
        answer = self.answers(len(self.calls))
        return {"Payload": Silent() if answer is None else io.BytesIO(answer)}


def reader(answers, *, resume=None, calls: int = 1000, **options) -> tuple[kvs.KvsSource, Media, Metrics]:
    stop = threading.Event()
    metrics = Metrics("cam", out=io.StringIO())
    session = boto3.Session(aws_access_key_id="x", aws_secret_access_key="x", region_name="us-east-1")
    source = kvs.KvsSource(
        session, "cam", start="NOW", resume=resume, sampler=Sampler(1, 0), metrics=metrics, stop=stop, incarnation=ARN, **options
    )
    media = Media(answers, stop, calls)
    source._media_client = lambda refresh=False: media
    source._describe = lambda: ARN
    return source, media, metrics


def test_kms_error_tags_stop_the_worker_with_one_line_naming_the_cause():
    source, media, _ = reader(lambda n: error_body(4501, "Stream's KMS key is disabled"))
    with pytest.raises(SourceError) as err:
        list(source)
    assert "KMS error 4501" in str(err.value) and "KMS key" in str(err.value) and "\n" not in str(err.value)
    assert len(media.calls) == 1  # not retried: nothing changes by asking again


def test_other_error_tags_are_retried_with_backoff_then_the_worker_gives_up():
    source, media, _ = reader(lambda n: error_body(3002, "Error writing to the stream"), give_up_after=2)
    with pytest.raises(SourceError) as err:
        list(source)
    assert "failing for 2s" in str(err.value) and "3002" in str(err.value)
    gaps = [b[0] - a[0] for a, b in zip(media.calls, media.calls[1:])]
    assert len(media.calls) >= 2 and min(gaps) >= kvs.RETRY_MIN_WAIT  # never a tight loop
    assert len(media.calls) <= 2 / kvs.RETRY_MIN_WAIT + 1


def test_idle_reads_are_not_failures_and_calls_stay_within_five_a_second():
    """Silent connections for longer than the give-up window: no error; the connection is renewed, never more
    often than GetMedia's 5 calls per second per stream. A renewal does not start from NOW again, which would
    skip media that arrived between two connections: it goes on from when the first connection was asked for."""
    source, media, _ = reader(lambda n: None, give_up_after=1, calls=12)
    started, asked = time.monotonic(), time.time()
    assert list(source) == []
    assert time.monotonic() - started > 1  # past the give-up window, still reading
    gaps = [b[0] - a[0] for a, b in zip(media.calls, media.calls[1:])]
    assert min(gaps) >= kvs.MIN_CALL_INTERVAL * 0.99
    assert media.calls[0][1] == {"StartSelectorType": "NOW"}
    renewals = [selector for _, selector in media.calls[1:]]
    assert {s["StartSelectorType"] for s in renewals} == {"SERVER_TIMESTAMP"}
    (since,) = {s["StartTimestamp"] for s in renewals}
    assert asked - kvs.CLOCK_MARGIN <= since <= asked - kvs.CLOCK_MARGIN + 1


def test_a_clean_end_of_the_body_reconnects_from_where_it_was_within_the_call_rate():
    source, media, _ = reader(lambda n: b"", calls=8)
    assert list(source) == []
    gaps = [b[0] - a[0] for a, b in zip(media.calls, media.calls[1:])]
    assert min(gaps) >= kvs.MIN_CALL_INTERVAL * 0.99


def test_error_4000_for_the_checkpoint_sets_it_aside_applies_the_start_policy_and_reports_the_gap():
    checkpoint = {"fragment_number": "91343852333181432392682062000000000000000000007", "next_offset": None}
    checkpoint["continuation_token"] = checkpoint["fragment_number"]
    answers = {1: error_body(4000, "Requested fragment is not found")}
    source, media, metrics = reader(lambda n: answers.get(n), resume=checkpoint, calls=2)
    assert list(source) == []
    assert media.calls[0][1] == {"StartSelectorType": "CONTINUATION_TOKEN", "ContinuationToken": checkpoint["fragment_number"]}
    assert media.calls[1][1] == {"StartSelectorType": "NOW"}  # KINASE_START
    assert source.set_aside
    assert [(g.start, g.reason.split(":")[0]) for g in metrics.gaps] == [
        (checkpoint["fragment_number"], "GetMedia error 4000 (Requested fragment is not found)")
    ]
    assert metrics.totals["Gaps"] == 1


def test_access_errors_stop_the_worker_at_once():
    from botocore.exceptions import ClientError

    source, media, _ = reader(lambda n: b"")

    def denied(StreamName, StartSelector):
        media.calls.append((time.monotonic(), StartSelector))
        raise ClientError({"Error": {"Code": "NotAuthorizedException", "Message": "no"}}, "GetMedia")

    media.get_media = denied
    with pytest.raises(SourceError) as err:
        list(source)
    assert "NotAuthorizedException" in str(err.value) and len(media.calls) == 1


class Reset(io.RawIOBase):
    """A connection that delivers `data` and is then reset by the network (a middlebox, a session's end cut short)."""

    def __init__(self, data: bytes = b""):
        self.data = data

    def readable(self) -> bool:
        return True

    def read1(self, n: int = -1) -> bytes:
        if self.data:
            chunk, self.data = self.data[:n], self.data[n:]
            return chunk
        raise urllib3.exceptions.ProtocolError("Connection broken", ConnectionResetError(104, "Connection reset by peer"))

    read = read1


def test_connections_reset_after_they_were_open_are_not_failures():
    """A night-time camera behind a middlebox that resets idle connections sooner than the read timeout: every
    GetMedia succeeds and its connection is then reset. That is idleness, not a failing call: the reader keeps
    reconnecting (within the call rate) past its give-up window; only consecutive failed calls count (below)."""
    source, media, metrics = reader(lambda n: b"", give_up_after=0.5, calls=12)
    media.answers = lambda n: None
    media.get_media = lambda StreamName, StartSelector: (Media.get_media(media, StreamName, StartSelector), {"Payload": Reset()})[1]
    assert list(source) == []  # twelve calls at least MIN_CALL_INTERVAL apart: over five times the give-up window
    assert len(media.calls) == 12
    assert metrics.totals["Reconnects"] >= 11
    gaps = [b[0] - a[0] for a, b in zip(media.calls, media.calls[1:])]
    assert min(gaps) >= kvs.MIN_CALL_INTERVAL * 0.99


def test_failing_calls_still_give_up_between_connections_that_were_reset():
    """Consecutive GetMedia calls that fail (no connection) count towards giving up, as before."""
    from botocore.exceptions import EndpointConnectionError

    source, media, _ = reader(lambda n: b"", give_up_after=1)

    def refused(StreamName, StartSelector):
        media.calls.append((time.monotonic(), StartSelector))
        raise EndpointConnectionError(endpoint_url="http://media")

    media.get_media = refused
    with pytest.raises(SourceError) as err:
        list(source)
    assert "failing for 1s" in str(err.value) and len(media.calls) >= 2


def fragment(number: int, arrived: float, shot: float) -> mkv.Fragment:
    """A one-second fragment (ten frames) the service received at `arrived`, shot at `shot` by the producer's clock."""
    tags = {mkv.FRAGMENT_NUMBER: str(number), mkv.SERVER_TIMESTAMP: f"{arrived:.3f}", mkv.PRODUCER_TIMESTAMP: f"{shot:.3f}"}
    return mkv.Fragment(data=b"", tags=tags, cluster_timecode=0, block_timecodes=[i * 100 for i in range(10)])


@pytest.mark.parametrize(
    ("case", "fragments", "bulk"),
    [
        ("a camera at its own pace", [(t, t - 1) for t in (100, 101, 102, 103)], [False] * 4),
        ("an offline upload, five fragments a second", [(100 + i / 5, 96 + i) for i in range(4)], [True] * 4),
        ("two uploads back to back", [(100, 97), (100.2, 98), (100.4, 99), (101.0, 97), (101.2, 98)], [True] * 5),
        ("a camera whose clock is 10 s slow", [(t, t - 11) for t in (100, 101, 102, 103)], [True, False, False, False]),
    ],
)
def test_uploads_in_bulk_are_told_from_a_live_camera(case, fragments, bulk):
    source, _, _ = reader(lambda n: b"")
    assert [source._uploaded_in_bulk(fragment(i, *f)) for i, f in enumerate(fragments)] == bulk, case


def test_after_a_restart_a_backlog_older_than_the_maximum_lag_is_skipped_to_the_live_edge():
    checkpoint = {"fragment_number": "5", "continuation_token": "5", "next_offset": None}
    source, _, metrics = reader(lambda n: b"", resume=checkpoint, max_lag=30)
    now = time.time()
    assert not source._too_far_behind(fragment(6, now - 20, now - 21))
    assert source._too_far_behind(fragment(7, now - 40, now - 41))
    assert source.selector == {"StartSelectorType": "NOW"} and source.live
    source._report_gap(fragment(30, now, now - 1))
    (gap,) = metrics.gaps
    assert (gap.start, gap.end, gap.frames) == ("7", "30", 10)
    assert gap.fragments == 40  # 40 s between the two, one-second fragments
    assert "KINASE_MAX_LAG=30s" in gap.reason
    assert metrics.balance() == 0  # the ten frames read are gapped
    assert not source._too_far_behind(fragment(31, now - 100, now - 101))  # at the live edge: the live policy applies
