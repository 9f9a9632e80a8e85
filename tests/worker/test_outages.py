"""Outages of what the worker writes to, one test per fault class, through the fault proxy (tests/support/faults.py).

The worker runs as the container runs it, talking to the local stack's S3 and SQS through the proxy;
the proxy answers 503, resets connections or never answers, for as long as the test says. Settings
are scaled 1:30 so that "5 minutes" fits a test: KINASE_WRITE_WARN_AFTER=1 stands for its default of
30 s, KINASE_CALL_TIMEOUT=1 for 10 s (30 s before this change), a metric line every second, and an
outage of OUTAGE seconds for 5 minutes: longer than the old limits in the same scale (the S3
checkpoint write gave up after 60 s = 2 s here, frame uploads and message sends after 300 s = 10 s).

What must hold (issue 22): the worker survives; it says so while the outage lasts (one WARNING per
pending write, its recovery one line) and its metric lines keep coming (nothing processed, nothing
delivered, DeliveryLagMs growing); every frame of the stream, read back from it afterwards, is read
once and ends in one counted outcome; each delivered frame has its message and its JPEG in S3.
"""

from __future__ import annotations

import io
import logging
import threading
import time
import types
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from support.faults import FaultProxy
from support.kvs import KvsEndpoint, decode
from support.worker_stack import OUTCOMES, Background, accounted, frame_ids, metrics_lines, since, summary
from worker import layout
from worker.checkpoint import CheckpointStore
from worker.fleet.leases import LeaseCheckpointStore, LeaseTable
from worker.metrics import Metrics
from worker.outage import CAUGHT_UP
from worker.retry import FatalError, WritePolicy
from worker.sources.incarnation import Incarnation

FPS, GOP = 5, 5  # one-second fragments
OUTAGE = 10.0  # seconds: 5 minutes at the scale of 1:30
SCALED = {"write_warn_after": 1, "call_timeout": 1, "metrics_interval": 1, "read_timeout": 1}
QUIET_TICKS = 3  # metric lines in a row with nothing processed or delivered: the outage has blocked the worker


@pytest.fixture(scope="module")
def clip(make_clip) -> Path:
    return make_clip(frames=4 * GOP, fps=FPS, size=(320, 240), gop=GOP, seed=22).path


def progress(line: str) -> dict | None:
    """The counters of one of the worker's periodic `metrics:` lines (None for other lines)."""
    marker = "kinase.worker: metrics: "
    return summary("summary: " + line.split(marker, 1)[1]) if marker in line else None


def delivered_at_least(n: int):
    return lambda line: (counts := progress(line)) is not None and counts["delivered"] >= n


def quiet_ticks(n: int):
    """A predicate true at the n-th metric line in a row whose processed and delivered counts did not move."""
    state = {"last": None, "quiet": 0}

    def check(line: str) -> bool:
        counts = progress(line)
        if counts is None:
            return False
        now = (counts["processed"], counts["delivered"])
        state["quiet"] = state["quiet"] + 1 if now == state["last"] else 0
        state["last"] = now
        return state["quiet"] >= n

    return check


def settled(line: str) -> bool:
    """A metric line at which every frame read has an outcome (none waits for inference or delivery)."""
    counts = progress(line)
    return counts is not None and counts["read"] == sum(counts.get(o, 0) for o in OUTCOMES)


def nth(text: str, n: int):
    state = {"seen": 0}

    def check(line: str) -> bool:
        state["seen"] += text in line
        return state["seen"] >= n

    return check


def frames_in_stream(media, home: Path, stream: str) -> int:
    """The truth: every frame the stream holds, read back with GetMedia from its start."""
    return len(decode(KvsEndpoint(media.kvs_endpoint, home).fragments(stream, StartSelectorType="EARLIEST")))


def blocked_run(lines: list[dict]) -> list[dict]:
    """The longest run of metric lines in which a frame waited in delivery and none was delivered."""
    best: list[dict] = []
    run: list[dict] = []
    for line in lines:
        run = run + [line] if line.get("DeliveryLagMs", 0) > 0 and line["FramesDelivered"] == 0 else []
        best = max(best, run, key=len)
    return best


FAULTS = [
    ("s3", "503", "S3 PutObject"),
    ("s3", "hang", "S3 PutObject"),
    ("sqs", "hang", "SQS SendMessageBatch"),
    ("sqs", "reset", "SQS SendMessageBatch"),
]


def through_outage(media, target, clip: Path, service: str, mode: str, write: str, **settings) -> tuple[str, str, int]:
    """Run a worker on a live stream (a camera sending `clip` in a loop at its pace) through an outage of `service`
    in `mode` lasting at least OUTAGE and until the worker's metric lines show it blocked; then stop the camera, let
    the worker read everything, stop it with SIGTERM. Returns its stdout, its stderr and the faults injected."""
    put_done = threading.Event()
    with FaultProxy(media.aws_endpoint) as proxy:
        env = {**media.worker_env(target, f"kvs://{target.stream}", **{**SCALED, **settings}), "AWS_ENDPOINT_URL": proxy.url}
        worker = Background(env)
        putter = threading.Thread(target=lambda: media.put(target.stream, clip, loops=0, realtime=True, stop=put_done), daemon=True)
        try:
            worker.wait_for(lambda line: "the stream is idle" in line)  # GetMedia is open: all media put from now on reaches it
            putter.start()
            worker.wait_for(delivered_at_least(2 * GOP))

            proxy.fail(service, mode)
            began = time.monotonic()
            worker.wait_for(since(worker, lambda line: "WARNING" in line and write in line and "still trying" in line))
            worker.wait_for(since(worker, quiet_ticks(QUIET_TICKS)))
            time.sleep(max(0.0, OUTAGE - (time.monotonic() - began)))
            assert worker.proc.poll() is None
            proxy.clear()

            worker.wait_for(since(worker, lambda line: write in line and "recovered after" in line))
            after = progress(next(line for line in reversed(worker.stderr) if progress(line)))["delivered"]
            worker.wait_for(since(worker, delivered_at_least(after + 2 * GOP)))  # delivering again
            put_done.set()
            putter.join(60)
            worker.wait_for(nth("the stream is idle", 2))  # everything put has been read
            worker.wait_for(since(worker, settled))  # and has ended in an outcome: nothing left in flight for SIGTERM
            worker.terminate()
            rc, stdout, stderr = worker.finish(timeout=120)
        finally:
            put_done.set()
            worker.kill()
    assert rc == 0, stderr
    assert "Traceback" not in stderr and "error:" not in stderr
    return stdout, stderr, proxy.injected[(service, mode)]


def assert_said_so(stdout: str, stderr: str, write: str) -> None:
    """The warning and the recovery were logged, and metric lines showed the worker blocked with a growing lag."""
    assert [line for line in stderr.splitlines() if write in line and "recovered after" in line]
    blocked = blocked_run(metrics_lines(stdout))
    assert sum(line["ProcessedFps"] == 0 for line in blocked) >= QUIET_TICKS, stdout
    lags = [line["DeliveryLagMs"] for line in blocked]
    assert lags == sorted(lags) and lags[-1] > lags[0], lags


def assert_delivered(media, target, counts: dict) -> list[dict]:
    """Each delivered frame has its message (duplicates only where a batch was sent again) and its JPEG."""
    messages = media.messages(target.queue_url, expect=counts["delivered"], wait=60)
    ids = frame_ids(messages)
    assert len(set(ids)) == counts["delivered"]
    assert len(ids) - len(set(ids)) <= counts["resent"]
    assert media.keys(target.bucket, "frames/") == sorted({m["key"] for m in messages})
    return messages


@pytest.mark.slow
@pytest.mark.parametrize(("service", "mode", "write"), FAULTS, ids=[f"{s}-{m}" for s, m, _ in FAULTS])
def test_an_outage_costs_no_worker_its_life_and_no_frame_silently(media, kinase_home, clip, service, mode, write):
    target = media.fresh(with_stream=True)
    stdout, stderr, injected = through_outage(media, target, clip, service, mode, write)
    assert injected > 0
    assert_said_so(stdout, stderr, write)
    counts = accounted(summary(stderr))
    assert counts["read"] == frames_in_stream(media, kinase_home, target.stream)
    assert counts["delivered"] > 0 and counts["dropped"] > 0  # the live policy dropped what came meanwhile, counted
    assert_delivered(media, target, counts)


@pytest.mark.slow
def test_catching_up_after_an_outage_processes_the_backlog_from_the_stream(media, kinase_home, clip):
    """KINASE_OUTAGE=CATCHUP: the reader holds during the outage and reads the backlog from the stream's retention
    afterwards; nothing is dropped, every frame of the stream is delivered."""
    target = media.fresh(with_stream=True)
    stdout, stderr, _ = through_outage(media, target, clip, "s3", "503", "S3 PutObject", outage="CATCHUP", max_lag=0)
    assert_said_so(stdout, stderr, "S3 PutObject")
    counts = accounted(summary(stderr))
    assert counts["dropped"] == counts["gapped"] == 0, counts
    assert counts["read"] == counts["delivered"] == frames_in_stream(media, kinase_home, target.stream), counts
    assert_delivered(media, target, counts)


@pytest.mark.slow
def test_catching_up_is_bounded_by_the_max_lag_and_the_skipped_backlog_reported(media, kinase_home, clip):
    """KINASE_OUTAGE=CATCHUP with KINASE_MAX_LAG shorter than the outage: the backlog further behind live than the
    maximum lag is skipped, reported as one gap (FramesGapped), and the rest processed without drops."""
    target = media.fresh(with_stream=True)
    stdout, stderr, _ = through_outage(media, target, clip, "s3", "hang", "S3 PutObject", outage="CATCHUP", max_lag=CAUGHT_UP)
    counts = accounted(summary(stderr))
    assert counts["read"] == frames_in_stream(media, kinase_home, target.stream)
    assert counts["gapped"] > 0 and counts["dropped"] == 0 and counts["gaps"] == 1, stderr
    assert [line for line in stderr.splitlines() if "gap in" in line and "catching up after an outage" in line]
    assert_delivered(media, target, counts)


@pytest.mark.slow
def test_sigterm_during_an_outage_stops_the_worker_and_leaves_what_is_in_flight_for_the_next_run(media, clip):
    """Keeping trying must not make the worker unstoppable: SIGTERM during an S3 hang stops it after the shutdown
    budget, with one error line, and the frames it could not deliver are unfinished: not checkpointed, so the next
    run does them again."""
    target = media.fresh(with_stream=True)
    put_done = threading.Event()
    with FaultProxy(media.aws_endpoint) as proxy:
        env = {**media.worker_env(target, f"kvs://{target.stream}", **SCALED), "AWS_ENDPOINT_URL": proxy.url}
        worker = Background(env)
        putter = threading.Thread(target=lambda: media.put(target.stream, clip, loops=0, realtime=True, stop=put_done), daemon=True)
        try:
            worker.wait_for(lambda line: "the stream is idle" in line)
            putter.start()
            worker.wait_for(delivered_at_least(GOP))
            proxy.fail("s3", "hang")
            worker.wait_for(since(worker, lambda line: "S3 PutObject" in line and "still trying" in line))
            worker.terminate()
            rc, _, stderr = worker.finish(timeout=180)
        finally:
            put_done.set()
            worker.kill()
    assert rc == 1, stderr
    errors = [line for line in stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "could not deliver the frames in flight" in errors[0] and "Traceback" not in stderr
    counts = accounted(summary(stderr))
    assert counts["unfinished"] > 0
    checkpoint = media.checkpoint(target)
    delivered = {m["source"]["fragment_number"] for m in media.messages(target.queue_url, expect=counts["delivered"])}
    assert checkpoint is None or checkpoint["fragment_number"] in delivered  # never past a frame not delivered


# ----------------------------------------------------------------------------------- the write policy


def test_a_pending_write_warns_once_past_the_threshold_and_says_when_it_recovered(caplog):
    policy = WritePolicy(warn_after=0.05)
    release, calls = threading.Event(), []

    def write():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionResetError("injected reset")
        release.wait(30)  # the third try gets no answer until the test says
        return "ok"

    caplog.set_level(logging.INFO, logger="kinase.worker.retry")
    result: list[str] = []
    thread = threading.Thread(target=lambda: result.append(policy.write(write, what="S3 PutObject for stream cam")))
    thread.start()
    while len(calls) < 3:
        time.sleep(0.01)
    time.sleep(0.1)  # pending longer than warn_after
    policy.check()
    policy.check()  # not again until its wait has doubled
    assert policy.struggling()
    release.set()
    thread.join(30)
    assert result == ["ok"] and not policy.struggling()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "S3 PutObject for stream cam pending" in warnings[0] and "injected reset, still trying" in warnings[0]
    assert any("S3 PutObject for stream cam recovered after" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)


def test_a_write_gives_up_only_past_its_patience_or_when_abandoned():
    def down():
        raise ConnectionResetError("injected reset")

    with pytest.raises(FatalError, match="still failing after"):
        WritePolicy(patience=0.3).write(down, what="S3 PutObject")
    abandoned = WritePolicy()
    threading.Timer(0.3, abandoned.abandon).start()
    with pytest.raises(FatalError, match="abandoned"):
        abandoned.write(down, what="S3 PutObject")  # patience 0: it would have kept trying


def test_an_error_retrying_cannot_fix_is_not_retried():
    calls = []

    def denied():
        calls.append(1)
        raise PermissionError("AccessDenied")

    with pytest.raises(FatalError, match="failed: AccessDenied"):
        WritePolicy().write(denied, what="S3 PutObject")
    assert calls == [1]


def test_the_lease_table_checkpoint_store_outlasts_a_throttle_longer_than_botocore_retries(media):
    """The fleet's checkpoint went through botocore's retries only (4 attempts, about 7 s): a DynamoDB throttle
    longer than that during a checkpoint ended the pipeline. Here botocore gets 2 attempts (the scale of this
    test) and the throttle lasts 5 of its calls: the write policy carries the checkpoint through.
    ThrottlingException with HTTP 400 is how DynamoDB answers (DynamoDB developer guide, "Error handling with
    DynamoDB")."""
    with FaultProxy(media.aws_endpoint) as proxy:
        client = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1").client(
            "dynamodb", endpoint_url=proxy.url, config=Config(retries={"mode": "standard", "max_attempts": 2}, read_timeout=5)
        )
        name = f"leases-{time.time_ns()}"
        client.create_table(
            TableName=name,
            AttributeDefinitions=[{"AttributeName": "stream", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "stream", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        table = LeaseTable(client, name)
        table.ensure("cam-a")
        assert table.take("cam-a", "w1", 0, None) == 1
        metrics = Metrics("cam-a", out=io.StringIO())
        store = LeaseCheckpointStore(
            table, "cam-a", "w1", "kvs://cam-a", Incarnation("arn:aws:kinesisvideo:us-east-1:1:stream/cam-a/1", "now"), metrics
        )
        proxy.fail("dynamodb", "503", count=10, code="ThrottlingException", status=400)
        store.save({"fragment_number": "100", "next_offset": None})
        assert proxy.injected[("dynamodb", "503")] == 10
        assert table.get("cam-a").checkpoint["fragment_number"] == "100"
    assert metrics.totals["Retries"] > 0  # botocore gave up, and the policy tried again


def test_the_s3_checkpoint_store_outlasts_an_outage_longer_than_its_old_limit(media):
    """The S3 checkpoint write gave up after 60 s (`write checkpoint ... still failing after 60s`) while frame
    uploads tolerated 300 s, so an S3 outage of two minutes killed a one-off worker. Now it follows the write
    policy: botocore gets one attempt here and S3 answers 503 SlowDown to the next 8 calls."""
    target = media.fresh()
    incarnation = Incarnation("arn:aws:kinesisvideo:us-east-1:1:stream/cam-b/1", "now")
    with FaultProxy(media.aws_endpoint) as proxy:
        s3 = media.session.client("s3", endpoint_url=proxy.url, config=Config(retries={"mode": "standard", "max_attempts": 1}))
        metrics = Metrics("cam-b", out=io.StringIO())
        store = CheckpointStore(s3, target.bucket, layout.checkpoint_key("cam-b"), "cam-b", "kvs://cam-b", incarnation, metrics)
        proxy.fail("s3", "503", count=8)
        store.save({"fragment_number": "100", "next_offset": None, "server_timestamp": None, "continuation_token": None})
        assert proxy.injected[("s3", "503")] == 8
    assert media.checkpoint(types.SimpleNamespace(bucket=target.bucket, stream="cam-b"))["fragment_number"] == "100"
    assert metrics.totals["Retries"] > 0  # botocore gave up, and the policy tried again
