"""Leases keep their promise under hangs (issue 22): two fleet workers (`python -m worker.fleet`) on the local
stack, one stream put in real time, and the stream's owner cut off from DynamoDB without an error, then paused.

The design they follow: the Kinesis Client Library's lease model (a lease holder stops processing when its
lease has expired, and a lease is taken over only after its counter stood still for a lease duration on the
taker's clock) and DESIGN.md's fleet rules (the owner believes in its lease only until lease_duration after it
SENT its last successful renewal, so its belief ends before any taker's begins; every frame read ends in one
counted outcome).

Settings are scaled 4:15: a lease of LEASE seconds stands for the default 15 s, a DynamoDB hang of HANG seconds
for a minute, a pause (SIGSTOP) of PAUSE for 30 s. Each worker has its own results queue, so a message says
which worker delivered it; the owner reaches the local stack through the fault proxy (tests/support/faults.py),
which hangs its DynamoDB calls only. What must hold: the two workers never deliver the stream at the same time
(every message of the stale owner precedes every message of the new one), the stale owner sends nothing after
its belief ended (after a pause: nothing sent after it resumes), the new owner redoes only what follows the
last checkpoint written, and each stream's drop count equals the frames really lost, against the truth read
back from the stream. Every wait is on a condition (a log line, a counter), never on the machine's speed.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
import uuid
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest

from kinase_cli.workflows.samples import shapes_video
from support.faults import FaultProxy
from support.kvs import KvsEndpoint, video_positions
from support.poll import until
from support.worker_stack import OUTCOMES, SUMMARY_WORDS, Background, since
from worker.fleet.leases import LeaseTable
from worker.frames import Watermark

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

FPS, GOP = 5, 5  # one-second fragments; few frames, so that a loaded machine keeps up
LEASE = 4.0  # KINASE_LEASE_DURATION: 15 s at the scale of 4:15
HANG = 16.0  # DynamoDB accepts calls and never answers for a minute
PAUSE = 8.0  # SIGSTOP for 30 s
SCALED = {"lease_duration": LEASE, "read_timeout": 1, "call_timeout": 1, "write_warn_after": 1, "metrics_interval": 60}


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("lease-hangs") / "cam.mp4"
    shapes_video(path, frames=4 * GOP, fps=FPS, size=(320, 240), gop=GOP, seed=22)
    return path


class Fleet:
    """One stream with its lease, a lease table, and a results queue per worker."""

    def __init__(self, media):
        self.media = media
        self.target = media.fresh(with_stream=True)
        self.stream = self.target.stream
        dynamodb = media.client("dynamodb")
        self.table_name = f"leases-{uuid.uuid4().hex[:8]}"
        dynamodb.create_table(
            TableName=self.table_name,
            AttributeDefinitions=[{"AttributeName": "stream", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "stream", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        assert LeaseTable(dynamodb, self.table_name).ensure(self.stream)
        self.queues: dict[str, str] = {}

    def worker(self, name: str, endpoint: str | None = None) -> Background:
        queue = self.media.sqs.create_queue(QueueName=f"{self.target.bucket}-{name}")["QueueUrl"]
        self.queues[name] = queue
        env = self.media.worker_env(self.target, f"kvs://{self.stream}", lease_table=self.table_name, queue_url=queue, **SCALED)
        return Background({**env, "AWS_ENDPOINT_URL": endpoint or self.media.aws_endpoint}, module="worker.fleet")

    def messages(self, name: str) -> list[dict]:
        return self.media.messages(self.queues[name], wait=0)


def worker_id(worker: Background) -> str:
    line = worker.wait_for(lambda line: "fleet worker " in line and "leases in" in line)
    return re.search(r"fleet worker (\S+):", line)[1]


def summaries(stderr: str, stream: str) -> Counter:
    """The counters of every pipeline this worker ran on `stream` (one summary line each), added up; each adds up."""
    total: Counter = Counter()
    for line in stderr.splitlines():
        if "summary: " in line and f"{stream}: read" in line:
            counts = {k.replace(" ", "_"): int(v) for k, v in re.findall(rf"\b({SUMMARY_WORDS}) (\d+)", line.split("summary: ", 1)[1])}
            assert counts["read"] == sum(counts[o] for o in OUTCOMES), line
            total.update(counts)
    return total


def position(message: dict) -> tuple[str, int]:
    return message["source"]["fragment_number"], message["source"]["frame_in_fragment"]


def sent_at(message: dict) -> float:
    return datetime.fromisoformat(message["timestamp"].replace("Z", "+00:00")).timestamp()


def resumed_from(worker: Background, stream: str) -> Watermark:
    """Where the new owner resumed: the checkpoint the stale owner last wrote in the lease."""
    line = worker.wait_for(lambda line: f"resuming kvs://{stream} at fragment" in line)
    fragment, rest = re.search(r"at fragment (\d+) \((.*)\)", line).groups()
    offset = re.search(r"from frame (\d+)", rest)
    return Watermark(fragment, int(offset[1]) if offset else None)


def takeover(media, kinase_home, clip, interrupt) -> None:
    """Run the owner `a` (through a fault proxy) and `b`; `interrupt(proxy, a, taken)` cuts `a` off while the stream
    is put in real time, until `taken()` has returned (`b` took the stream over), and returns the wall-clock time
    after which `a` may send nothing (or None); then check what each delivered and counted."""
    fleet = Fleet(media)
    put_done = threading.Event()
    putter = threading.Thread(target=lambda: media.put(fleet.stream, clip, loops=0, realtime=True, stop=put_done), daemon=True)
    with FaultProxy(media.aws_endpoint) as proxy:
        a = fleet.worker("a", proxy.url)
        b = None
        try:
            a_id = worker_id(a)
            a.wait_for(lambda line: f"took {fleet.stream}" in line)
            a.wait_for(lambda line: "the stream is idle" in line)  # GetMedia is open: all media put from now on reaches it
            b = fleet.worker("b")
            worker_id(b)
            putter.start()
            until(lambda: proxy.forwarded["sqs"] >= 3, "the first owner delivers", timeout=240)
            new_owner = b

            def taken() -> None:
                new_owner.wait_for(lambda line: f"took {fleet.stream} (expired, from {a_id})" in line)

            not_after = interrupt(proxy, a, taken)
            start = resumed_from(b, fleet.stream)
            a.wait_for(lambda line: re.search(rf"lease on {fleet.stream} (ended on our clock|not renewed|lost to another worker)", line))
            queue_b = fleet.queues["b"]
            until(
                lambda: (
                    int(
                        media.sqs.get_queue_attributes(QueueUrl=queue_b, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"][
                            "ApproximateNumberOfMessages"
                        ]
                    )
                    >= GOP
                ),
                "the new owner delivers",
                timeout=240,
            )
            put_done.set()
            putter.join(120)
            b.wait_for(since(b, lambda line: "the stream is idle" in line), timeout=600)  # everything put has been read
            for worker in (a, b):
                worker.terminate()
            rc_a, _, stderr_a = a.finish(timeout=120)
            rc_b, _, stderr_b = b.finish(timeout=120)
        finally:
            put_done.set()
            a.kill()
            if b is not None:
                b.kill()
    assert (rc_a, rc_b) == (0, 0), stderr_a[-3000:] + stderr_b[-3000:]
    assert "Traceback" not in stderr_a + stderr_b

    by_a, by_b = fleet.messages("a"), fleet.messages("b")
    assert by_a and by_b, "each worker delivered while it owned the stream"
    # never two owners at once: everything the stale owner sent precedes everything the new owner sent
    assert max(map(sent_at, by_a)) < min(map(sent_at, by_b))
    if not_after is not None:
        assert max(map(sent_at, by_a)) < not_after, "nothing stale sent after the pause"
    # the new owner redid only what follows the stale owner's last checkpoint written (at least once, no more)
    twice = {position(m) for m in by_a} & {position(m) for m in by_b}
    assert not any(start.covers(*p) for p in twice) and not any(start.covers(*p) for p in map(position, by_b))

    # every frame accounted for, against the truth read back from the stream
    truth = set(video_positions(KvsEndpoint(media.kvs_endpoint, kinase_home), fleet.stream))
    delivered = {position(m) for m in by_a + by_b}
    assert delivered <= truth
    counts_a, counts_b = summaries(stderr_a, fleet.stream), summaries(stderr_b, fleet.stream)
    assert counts_a["delivered"] == len({position(m) for m in by_a}) and counts_b["delivered"] == len({position(m) for m in by_b})
    # Whether the stale owner still had frames in flight at its belief end (then released, not sent) depends on
    # where the outage or the pause caught it: not asserted; the unit tests pin the release (test_leases.py).
    assert counts_a["dropped"] + counts_b["dropped"] + counts_a["gapped"] + counts_b["gapped"] == len(truth - delivered), (
        counts_a,
        counts_b,
    )


def test_dynamodb_hanging_for_the_owner_hands_the_stream_over_without_overlap_or_false_drops(media, kinase_home, clip):
    """DynamoDB accepts the owner's calls and never answers for HANG seconds: its renewals hang (each for at most
    LEASE/8 a try), its watchdog stops the pipeline at the belief end on its own clock, the other worker takes the
    stream over once the counter stood still for LEASE, and the stale owner sends nothing more."""

    def hang(proxy: FaultProxy, _a: Background, taken) -> None:
        began = time.monotonic()
        proxy.fail("dynamodb", "hang")
        taken()
        time.sleep(max(0.0, HANG - (time.monotonic() - began)))  # the length of the outage itself
        proxy.clear("dynamodb")
        return None

    takeover(media, kinase_home, clip, hang)


def test_a_paused_owner_sends_nothing_stale_after_it_resumes(media, kinase_home, clip):
    """The owner is paused (SIGSTOP, as a stalled VM or a long GC pause) for PAUSE seconds, longer than its lease:
    the other worker takes over; after SIGCONT the owner's own clock shows its belief ended, so it sends nothing."""

    def pause(_proxy: FaultProxy, a: Background, taken) -> float:
        stopped_at, began = time.time(), time.monotonic()
        os.kill(a.proc.pid, signal.SIGSTOP)
        try:
            taken()
            time.sleep(max(0.0, PAUSE - (time.monotonic() - began)))  # the length of the pause itself
        finally:
            os.kill(a.proc.pid, signal.SIGCONT)
        return stopped_at

    takeover(media, kinase_home, clip, pause)
