"""A fleet worker (`python -m worker.fleet`) holding two streams, one with a 60 s backlog and one live camera,
on the local stack: the live stream is not queued behind the backlog.

The assertion is about order, not a wall-clock figure a loaded machine could break. The camera
runs before the worker starts, so when the worker begins reading, both streams have media waiting:
the whole backlog, and the camera's first fragments. A worker that served the backlog first would
deliver no live frame until the backlog is done (and its live policy would then drop what waited);
one that favoured it would deliver the waiting live frames only after several times as many
backlog frames. Served in turn (worker/fleet/main.py: the shared detector serves the streams in the
order they ask), the live frames waiting at the start are delivered after about as many backlog
frames, however fast or slow the machine: the live stream's latency does not grow with the
backlog. Every frame of both streams is delivered at most once, the backlog's all of them.
"""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest

from support.poll import until
from support.worker_stack import Background, accounted, frame_ids, summary
from worker.contract import parse_iso
from worker.fleet.leases import LeaseTable

pytestmark = pytest.mark.slow
BACKLOG_FPS, BACKLOG_SECONDS = 3, 60
LIVE_FPS = 5  # both clips have one-second fragments: the GOP is the frame rate


@pytest.fixture(scope="module")
def clips(make_clip) -> tuple[Path, Path]:
    backlog = make_clip(frames=BACKLOG_FPS * BACKLOG_SECONDS, fps=BACKLOG_FPS, size=(320, 240), gop=BACKLOG_FPS, seed=7)
    live = make_clip(frames=LIVE_FPS * 4, fps=LIVE_FPS, size=(320, 240), gop=LIVE_FPS, seed=8)
    return backlog.path, live.path


def lease_table(media) -> str:
    name = f"leases-{uuid.uuid4().hex[:8]}"
    media.client("dynamodb").create_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": "stream", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "stream", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


def sent_at(message: dict) -> float:
    """When the worker sent the message, on this machine's clock (which also stamped the producer times)."""
    return parse_iso(message["frame_time"]) + message["latency_ms"] / 1000.0


def stream_summary(stderr: str, stream: str) -> dict:
    return accounted(summary("\n".join(line for line in stderr.splitlines() if f"summary: {stream}:" in line)))


def test_a_live_stream_is_not_queued_behind_a_60_s_backlog_on_the_same_worker(media, clips):
    backlog_clip, live_clip = clips
    target = media.fresh()
    backlog, live = f"{target.stream}-backlog", f"{target.stream}-live"
    for stream in (backlog, live):
        media.kvs.create_stream(StreamName=stream, DataRetentionInHours=1)
    backlog_frames = BACKLOG_FPS * BACKLOG_SECONDS
    assert media.put(backlog, backlog_clip).remux.frames == backlog_frames  # 60 s of media, stamped to end now
    table = lease_table(media)
    leases = LeaseTable(media.client("dynamodb"), table)
    assert leases.ensure(backlog) and leases.ensure(live)

    persisted: list[str] = []
    first_fragment, camera_stop = threading.Event(), threading.Event()

    def progress(_remux, acks):
        persisted[:] = acks.persisted
        if persisted:
            first_fragment.set()

    camera = threading.Thread(
        target=lambda: media.put(live, live_clip, loops=0, realtime=True, stop=camera_stop, on_progress=progress), daemon=True
    )
    camera.start()
    worker = None
    messages: list[dict] = []

    def of(stream: str) -> list[dict]:
        return [m for m in messages if m["stream_name"] == stream]

    try:
        assert first_fragment.wait(120), "the camera persisted no fragment"
        env = media.worker_env(target, "kvs://placeholder", start="EARLIEST", lease_table=table, env="fairness")
        worker = Background(env, module="worker.fleet")
        worker.wait_for(lambda line: f"reading {live}" in line)
        waiting = len(persisted) * LIVE_FPS  # live frames persisted before the worker began reading the camera
        worker.wait_for(lambda line: f"reading {backlog}" in line)

        def backlog_delivered() -> bool:  # the camera goes on until the whole backlog is delivered
            if len(of(backlog)) >= backlog_frames:
                return True
            assert worker.proc.poll() is None, "".join(worker.stderr[-40:])
            messages.extend(media.messages(target.queue_url, expect=len(messages) + 1, wait=5))
            return False

        until(
            backlog_delivered,
            lambda: f"{len(of(backlog))} of {backlog_frames} backlog frames delivered\n" + "".join(worker.stderr[-40:]),
            timeout=600,
            every=0,
        )
        camera_stop.set()
        camera.join(60)
        worker.terminate()
        rc, _, stderr = worker.finish()
    finally:
        camera_stop.set()
        if worker is not None:
            worker.kill()
    messages.extend(media.messages(target.queue_url))
    assert rc == 0, stderr

    backlog_counts, live_counts = stream_summary(stderr, backlog), stream_summary(stderr, live)
    assert (backlog_counts["read"], backlog_counts["delivered"]) == (backlog_frames, backlog_frames)
    ids = frame_ids(messages)
    assert len(ids) == len(set(ids)) == backlog_frames + live_counts["delivered"]
    assert 0 < waiting < backlog_frames

    order = [m["stream_name"] for m in sorted(messages, key=sent_at)]
    assert backlog in order[order.index(live) :], "the live stream's frames were all delivered after the whole backlog"
    served_waiting = [i for i, name in enumerate(order) if name == live][waiting - 1]
    backlog_before = order[:served_waiting].count(backlog)
    # served in turn: about one backlog frame per live frame, plus a fragment of each for the moment the readers start
    assert backlog_before <= 2 * waiting + LIVE_FPS + BACKLOG_FPS, (
        f"the {waiting} live frames waiting at the start were delivered after {backlog_before} backlog frames"
    )
