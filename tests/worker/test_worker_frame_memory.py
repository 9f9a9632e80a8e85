"""The worker's frame memory budget (KINASE_FRAME_MEMORY_MB) on the local stack: full-HD streams, a budget of a few frames.

A 1920x1080 frame decoded is 6.2 MB; a fragment of 15 of them arrives at once. Whatever the timing, the
bytes of frames waiting for inference never exceed the budget (the worker's FrameBytesPeak gauge), and
every frame read ends in one outcome.
"""

from __future__ import annotations

import threading
import uuid

import pytest

from support.poll import until
from support.worker_stack import Background, accounted, metrics_lines, run_worker, summary
from worker.fleet.leases import LeaseTable

pytestmark = pytest.mark.slow
SIZE = (1920, 1080)
FRAME_BYTES = SIZE[0] * SIZE[1] * 3
BUDGET_MB = 20  # three full-HD frames
FRAMES = 30


@pytest.fixture(scope="module")
def full_hd(tmp_path_factory, make_clip):
    video = make_clip(frames=FRAMES, fps=15, size=SIZE, gop=15, seed=11).path
    return video


def test_a_live_full_hd_stream_never_has_more_than_the_budget_waiting(media, full_hd):
    target = media.fresh(with_stream=True)
    env = media.worker_env(target, f"kvs://{target.stream}", start="NOW", idle_exit=3, frame_memory_mb=BUDGET_MB)
    worker = Background(env)
    try:
        worker.wait_for(lambda line: "GetMedia" in line)
        producer = threading.Thread(target=media.put, args=(target.stream, full_hd), kwargs={"realtime": True})
        producer.start()
        producer.join(300)
        rc, stdout, stderr = worker.finish(timeout=300)
    finally:
        worker.kill()

    assert rc == 0, stderr
    assert f"frame memory: at most {BUDGET_MB} MB" in stderr
    peak = metrics_lines(stdout)[-1]["FrameBytesPeak"]
    assert FRAME_BYTES <= peak <= BUDGET_MB << 20
    counts = accounted(summary(stderr))
    assert counts["read"] == FRAMES
    assert counts["delivered"] == len(media.messages(target.queue_url, expect=counts["delivered"]))
    assert counts["delivered"] + counts["dropped"] == FRAMES


def test_a_recorded_full_hd_stream_waits_within_the_budget_and_loses_nothing(media, full_hd):
    """From the archive (KINASE_START=EARLIEST) frames are recorded: the reader waits for room, nothing is dropped."""
    target = media.fresh(with_stream=True)
    media.put(target.stream, full_hd)

    run = run_worker(media.worker_env(target, f"kvs://{target.stream}", start="EARLIEST", idle_exit=2, frame_memory_mb=BUDGET_MB))

    assert run.returncode == 0, run.stderr
    peak = metrics_lines(run.stdout)[-1]["FrameBytesPeak"]
    assert FRAME_BYTES <= peak <= BUDGET_MB << 20
    counts = accounted(summary(run.stderr))
    assert (counts["read"], counts["delivered"], counts["dropped"]) == (FRAMES, FRAMES, 0)
    assert len(media.messages(target.queue_url, expect=FRAMES)) == FRAMES


def test_a_fleet_worker_keeps_all_its_streams_together_within_one_budget(media, full_hd):
    """Two full-HD streams on one fleet worker share one budget: one `frame memory` line, one peak for both."""
    target = media.fresh()
    streams = [f"{target.stream}-{i}" for i in range(2)]
    table = f"leases-{uuid.uuid4().hex[:8]}"
    media.client("dynamodb").create_table(
        TableName=table,
        AttributeDefinitions=[{"AttributeName": "stream", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "stream", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    leases = LeaseTable(media.client("dynamodb"), table)
    for stream in streams:
        media.kvs.create_stream(StreamName=stream, DataRetentionInHours=1)
        media.put(stream, full_hd)
        assert leases.ensure(stream)
    env = media.worker_env(target, "kvs://placeholder", start="EARLIEST", lease_table=table, env="memory", frame_memory_mb=BUDGET_MB)
    worker = Background(env, module="worker.fleet")
    messages: list[dict] = []
    try:

        def all_delivered() -> bool:
            if len(messages) >= 2 * FRAMES:
                return True
            assert worker.proc.poll() is None, "".join(worker.stderr[-40:])
            messages.extend(media.messages(target.queue_url, expect=len(messages) + 1, wait=5))
            return False

        until(all_delivered, lambda: "".join(worker.stderr[-40:]), timeout=600, every=0)
        worker.terminate()
        rc, stdout, stderr = worker.finish()
    finally:
        worker.kill()

    assert rc == 0, stderr
    assert stderr.count("frame memory: at most") == 1
    peaks = [line["FrameBytesPeak"] for line in metrics_lines(stdout)]
    assert len(peaks) >= 2 and FRAME_BYTES <= max(peaks) <= BUDGET_MB << 20
    for stream in streams:
        counts = accounted(summary("\n".join(line for line in stderr.splitlines() if f"summary: {stream}:" in line)))
        assert (counts["read"], counts["delivered"], counts["dropped"]) == (FRAMES, FRAMES, 0)
    assert sorted({m["stream_name"] for m in messages}) == streams and len(messages) == 2 * FRAMES
