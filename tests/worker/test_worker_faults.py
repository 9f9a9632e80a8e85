"""The fault matrix. Faults are injected where they happen in production: in the AWS calls (botocore
event hooks on the session the worker is given: error responses, failed batch entries, a GetMedia
body that breaks off) and in the media itself (a corrupt fragment stored through PutMedia). The
code under test is not touched."""

from __future__ import annotations

import io
import random
import threading
from collections import Counter
from pathlib import Path

import pytest
import urllib3
from botocore.awsrequest import AWSResponse

from kinase_cli.aws.kvs_put import PutMediaSession, remux
from support.worker_stack import accounted, run_worker, summary
from worker import settings as worker_settings
from worker.pipeline import Worker
from worker.sources import mkv

pytestmark = pytest.mark.slow


class _Body:
    def __init__(self, data: bytes):
        self.data = data

    def stream(self, **_):
        yield self.data


def error_response(request, status: int, code: str, xml: bool = True) -> AWSResponse:
    body = (
        f"<Error><Code>{code}</Code><Message>injected</Message></Error>" if xml else f'{{"__type": "{code}", "message": "injected"}}'
    ).encode()
    return AWSResponse(request.url, status, {"x-amzn-ErrorType": code} if not xml else {}, _Body(body))


class BreaksOff:
    """A GetMedia body whose connection drops after `limit` bytes, as urllib3 reports a reset."""

    def __init__(self, body, limit: int):
        self.raw = body._raw_stream
        self.left = limit

    def read1(self, n: int = 65536) -> bytes:
        if self.left <= 0:
            raise urllib3.exceptions.ProtocolError("Connection broken: injected reset")
        data = self.raw.read1(min(n, self.left))
        self.left -= len(data)
        return data

    read = read1

    def close(self) -> None:
        self.raw.close()


def run_in_process(media, target, source: str, session, **settings) -> Worker:
    worker = Worker(worker_settings.load(media.worker_env(target, source, **settings)), session=session, metrics_out=io.StringIO())
    assert worker.run() == 0, worker.error
    return worker


def keys(messages: list[dict]) -> Counter:
    return Counter(m["key"] for m in messages)


@pytest.fixture
def video(make_clip) -> Path:
    return make_clip(frames=20, fps=15, size=(320, 240), seed=8).path


@pytest.fixture
def stream_video(make_clip) -> Path:
    return make_clip(frames=45, fps=15, size=(320, 240), gop=15, seed=9).path


def test_s3_throttled_for_a_while_loses_nothing(aws_env, video):
    media = aws_env
    target = media.fresh()
    session = media.new_session()
    calls = Counter()

    def slow_down(request, **_):
        calls["put"] += 1
        if calls["put"] <= 30:
            return error_response(request, 503, "SlowDown")

    session.events.register("before-send.s3.PutObject", slow_down)
    worker = run_in_process(media, target, str(video), session)

    messages = media.messages(target.queue_url, expect=20)
    assert keys(messages) == Counter({k: 1 for k in keys(messages)}) and len(messages) == 20
    assert media.keys(target.bucket) == sorted(keys(messages))
    assert calls["put"] >= 50
    assert worker.metrics.totals["Retries"] == calls["put"] - 20  # every PutObject sent again, botocore's own retries included


def test_sqs_partial_batch_failure_resends_only_the_failed_entries(aws_env, video):
    media = aws_env
    target = media.fresh()
    session = media.new_session()
    withheld: list[str] = []
    batches = Counter()

    uploaded = threading.Semaphore(0)

    def fail_every_other(params, **_):
        batches["sent"] += 1
        if batches["sent"] == 1:  # the first call waits until every JPEG is up: the messages behind it queue up, the next batches are full
            assert all(uploaded.acquire(timeout=120) for _ in range(20))
        elif batches["failing"] < 3 and len(params["Entries"]) > 1:
            batches["failing"] += 1
            withheld.extend(e["Id"] for e in params["Entries"][1::2])
            params["Entries"] = params["Entries"][::2]

    def report_failed(parsed, **_):
        if withheld:
            parsed.setdefault("Failed", []).extend(
                {"Id": i, "SenderFault": False, "Code": "InternalError", "Message": "injected"} for i in withheld
            )
            batches["failed"] += len(withheld)
            withheld.clear()

    session.events.register("after-call.s3.PutObject", lambda **_: uploaded.release())
    session.events.register("before-parameter-build.sqs.SendMessageBatch", fail_every_other)
    session.events.register("after-call.sqs.SendMessageBatch", report_failed)
    worker = run_in_process(media, target, str(video), session)

    messages = media.messages(target.queue_url, expect=20)
    assert sorted(m["source"]["frame_number"] for m in messages) == list(range(20))  # each exactly once
    assert batches["failed"] > 0 and worker.metrics.totals["Retries"] >= batches["failed"]
    assert worker.metrics.totals["MessagesResent"] == 0  # failed entries were not in the queue: resending them duplicates nothing


def test_getmedia_connection_drop_reconnects_without_loss(aws_env, stream_video):
    media = aws_env
    target = media.fresh(with_stream=True)
    fragments = media.put(target.stream, stream_video).acks.persisted
    session = media.new_session()
    drops = Counter()

    def break_off(parsed, **_):
        if drops["done"] < 2:
            drops["done"] += 1
            parsed["Payload"] = BreaksOff(parsed["Payload"], limit=45_000 if drops["done"] == 1 else 20_000)

    session.events.register("after-call.kinesis-video-media.GetMedia", break_off)
    worker = run_in_process(media, target, f"kvs://{target.stream}", session, start="EARLIEST", idle_exit=2)

    messages = media.messages(target.queue_url, expect=45)
    assert sorted((m["source"]["fragment_number"], m["source"]["frame_in_fragment"]) for m in messages) == [
        (f, i) for f in fragments for i in range(15)
    ]
    assert worker.metrics.totals["Reconnects"] >= 2


def test_getmedia_errors_refresh_the_data_endpoint(aws_env, stream_video):
    media = aws_env
    target = media.fresh(with_stream=True)
    media.put(target.stream, stream_video)
    session = media.new_session()
    calls = Counter()

    def unavailable(request, **_):
        calls["get_media"] += 1
        if calls["get_media"] <= 3:
            return error_response(request, 500, "InternalFailure", xml=False)

    def count_endpoint(**_):
        calls["endpoint"] += 1

    session.events.register("before-send.kinesis-video-media.GetMedia", unavailable)
    session.events.register("after-call.kinesis-video.GetDataEndpoint", count_endpoint)
    run_in_process(media, target, f"kvs://{target.stream}", session, start="EARLIEST", idle_exit=2)

    assert len(media.messages(target.queue_url, expect=45)) == 45
    assert calls["endpoint"] >= 2


def corrupt_second_cluster(video: Path) -> bytes:
    """The live Matroska `kinase stream put` would send, with the frames of the second fragment replaced by noise."""
    raw = bytearray()
    remux(video, raw.extend)
    rng = random.Random(0)
    out, clusters = [], 0
    for el in mkv.iter_level1(io.BytesIO(bytes(raw))):
        if el.id == mkv.CLUSTER:
            clusters += 1
            if clusters == 2:
                parts = []
                for cid, body in mkv.iter_children(el.body):
                    if cid == mkv.SIMPLE_BLOCK:
                        body = body[:4] + rng.randbytes(len(body) - 4)
                    parts.append(mkv.element(cid, body))
                out.append(mkv.element(mkv.CLUSTER, b"".join(parts)))
                continue
        out.append(el.raw)
    return b"".join(out)


def test_corrupt_fragment_is_skipped_and_counted(media, stream_video):
    target = media.fresh(with_stream=True)
    endpoint = media.kvs.get_data_endpoint(StreamName=target.stream, APIName="PUT_MEDIA")["DataEndpoint"]
    put = PutMediaSession(endpoint, target.stream, media.session.get_credentials().get_frozen_credentials(), "us-east-1", 1_790_000_000.0)
    put.send(corrupt_second_cluster(stream_video))
    fragments = put.finish().persisted
    assert len(fragments) == 3

    run = run_worker(media.worker_env(target, f"kvs://{target.stream}", start="EARLIEST", idle_exit=2))

    assert run.returncode == 0, run.stderr
    messages = media.messages(target.queue_url, expect=30)
    by_fragment = Counter(m["source"]["fragment_number"] for m in messages)
    assert by_fragment[fragments[0]] == by_fragment[fragments[2]] == 15
    assert by_fragment[fragments[1]] < 15
    assert "corrupt media 1," in run.stderr and f"fragment {fragments[1]}" in run.stderr
    counts = accounted(summary(run.stderr))
    assert counts["corrupt"] == 15 - by_fragment[fragments[1]] and counts["read"] == 45
    assert media.checkpoint(target)["fragment_number"] == fragments[2]


def test_truncated_file_delivers_what_is_readable(media, tmp_path, make_clip):
    data = make_clip(suffix=".mkv", frames=30, fps=15, size=(320, 240), seed=10).path.read_bytes()
    video = tmp_path / "cut.mkv"
    video.write_bytes(data[: len(data) * 6 // 10])
    target = media.fresh()

    run = run_worker(media.worker_env(target, str(video)))

    assert run.returncode == 0, run.stderr
    numbers = sorted(m["source"]["frame_number"] for m in media.messages(target.queue_url, expect=10))
    assert 0 < len(numbers) < 30 and numbers == list(range(len(numbers)))


def test_unreadable_source_fails_with_one_line(media, tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00not a video" * 100)
    target = media.fresh()

    run = run_worker(media.worker_env(target, str(junk)))

    assert run.returncode == 1
    errors = [line for line in run.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "cannot open" in errors[0] and "Traceback" not in run.stderr


def test_missing_stream_fails_with_one_line(media):
    target = media.fresh()

    run = run_worker(media.worker_env(target, "kvs://no-such-stream", idle_exit=2))

    assert run.returncode == 1
    errors = [line for line in run.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "ResourceNotFoundException" in errors[0] and "Traceback" not in run.stderr
