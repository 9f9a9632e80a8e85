"""The worker-wide frame memory budget (worker/framebudget.py) as the stream queues (worker.pipeline.FrameQueue) use it."""

from __future__ import annotations

import http.server
import json
import random
import threading
import time

import numpy as np
import pytest

from worker import settings as worker_settings
from worker.framebudget import FALLBACK_MB, FrameBudget, default_mb
from worker.frames import FragmentEnd, Frame
from worker.metrics import Metrics
from worker.pipeline import FrameQueue

SIDE = 100
FRAME = SIDE * SIDE * 3  # bytes of one test frame


def frame(n: int, live: bool = True, fragment: str = "1") -> Frame:
    return Frame(
        image=np.zeros((SIDE, SIDE, 3), np.uint8),
        source={"type": "kvs", "uri": "kvs://x"},
        frame_index=n,
        frame_time=float(n),
        read_at=time.monotonic(),
        live=live,
        fragment=fragment,
    )


def queue(budget: FrameBudget, stop: threading.Event | None = None, maxsize: int = 8) -> tuple[FrameQueue, Metrics]:
    metrics = Metrics("t")
    return FrameQueue(maxsize, metrics, stop or threading.Event(), budget=budget, max_wait=60.0), metrics


def drain(q: FrameQueue) -> list[int]:
    got = []
    while (item := q.get(0)) is not None:
        if isinstance(item, Frame):
            got.append(item.frame_index)
    return got


def test_frames_within_the_budget_are_admitted_and_counted_until_freed():
    budget = FrameBudget(3 * FRAME)
    a, metrics = queue(budget)
    for n in range(3):
        a.put(frame(n))
    assert budget.waiting == budget.peak == 3 * FRAME and metrics.totals["FramesDropped"] == 0
    assert drain(a) == [0, 1, 2]
    assert budget.waiting == 0 and budget.peak == 3 * FRAME


def test_a_frame_taken_by_inference_counts_until_its_pixels_are_freed():
    """Frames in inference and delivery take the same memory as queued ones: the budget holds them until freed."""
    budget = FrameBudget(2 * FRAME)
    q, metrics = queue(budget)
    q.put(frame(0))
    in_delivery = q.get(0)
    q.put(frame(1))
    q.put(frame(2))  # over: only frame 1 is queued, so it gives way; frame 0 is not the queue's to drop
    assert budget.waiting == 2 * FRAME and metrics.totals["FramesDropped"] == 1
    in_delivery.image = None  # the upload sink frees the pixels once the JPEG is encoded
    assert budget.waiting == FRAME
    q.put(frame(3))
    assert drain(q) == [2, 3] and metrics.totals["FramesDropped"] == 1 and budget.peak == 2 * FRAME


def test_over_the_budget_the_stream_with_the_most_waiting_gives_up_its_oldest_live_frame():
    budget = FrameBudget(4 * FRAME)
    big, big_metrics = queue(budget)  # a 4K camera's burst
    small, small_metrics = queue(budget)
    for n in range(3):
        big.put(frame(n))
    small.put(frame(100))
    small.put(frame(101))  # over: big (3 waiting) gives way, not small (1)
    assert big_metrics.totals["FramesDropped"] == 1 and small_metrics.totals["FramesDropped"] == 0
    assert budget.peak == 4 * FRAME
    assert drain(big) == [1, 2] and drain(small) == [100, 101]
    assert budget.waiting == 0


def test_a_stream_alone_over_the_budget_drops_its_own_oldest_and_keeps_the_newest():
    budget = FrameBudget(2 * FRAME)
    q, metrics = queue(budget)
    drops: list[int] = []
    q.on_drop = lambda f: drops.append(f.frame_index)
    for n in range(6):
        q.put(frame(n))
    q.put(FragmentEnd("1"))
    assert drain(q) == [4, 5] and drops == [0, 1, 2, 3] and metrics.totals["FramesDropped"] == 4
    assert budget.peak == 2 * FRAME


def test_a_live_frame_that_finds_only_recorded_frames_waiting_is_dropped_itself():
    budget = FrameBudget(2 * FRAME)
    recorded, recorded_metrics = queue(budget)
    live, live_metrics = queue(budget)
    recorded.put(frame(0, live=False))
    recorded.put(frame(1, live=False))
    live.put(frame(10))
    assert live_metrics.totals["FramesDropped"] == 1 and recorded_metrics.totals["FramesDropped"] == 0
    assert drain(live) == [] and drain(recorded) == [0, 1]


def test_a_recorded_frame_makes_room_by_dropping_live_frames_of_the_fullest_stream():
    budget = FrameBudget(2 * FRAME)
    live, live_metrics = queue(budget)
    recorded, _ = queue(budget)
    live.put(frame(0))
    live.put(frame(1))
    recorded.put(frame(10, live=False))
    assert live_metrics.totals["FramesDropped"] == 1 and drain(live) == [1] and drain(recorded) == [10]


def test_a_recorded_frame_waits_for_room_instead_of_being_dropped():
    budget = FrameBudget(2 * FRAME)
    q, metrics = queue(budget)
    q.put(frame(0, live=False))
    q.put(frame(1, live=False))
    third = threading.Thread(target=q.put, args=(frame(2, live=False),))
    third.start()
    third.join(0.3)
    assert third.is_alive()  # blocked: the queue's length (8) is not reached, the budget is
    assert q.get(0).frame_index == 0
    third.join(30)
    assert not third.is_alive()
    assert drain(q) == [1, 2] and metrics.totals["FramesDropped"] == 0 and budget.peak == 2 * FRAME


def test_a_waiting_recorded_frame_is_let_in_once_the_worker_stops():
    budget, stop = FrameBudget(FRAME), threading.Event()
    q, _ = queue(budget, stop)
    q.put(frame(0, live=False))
    second = threading.Thread(target=q.put, args=(frame(1, live=False),))
    second.start()
    stop.set()
    second.join(30)
    assert not second.is_alive()
    assert q.discard() == 2 and budget.waiting == 0


def test_a_budget_smaller_than_one_frame_lets_frames_through_one_at_a_time():
    budget = FrameBudget(FRAME // 2)
    q, metrics = queue(budget)
    q.put(frame(0))
    q.put(frame(1))
    assert drain(q) == [1] and metrics.totals["FramesDropped"] == 1 and budget.peak == FRAME


def test_no_bound_keeps_the_per_stream_frame_cap():
    budget = FrameBudget(0)
    q, metrics = queue(budget)
    q.live_cap = 4
    for n in range(6):
        q.put(frame(n))
    assert drain(q) == [2, 3, 4, 5] and metrics.totals["FramesDropped"] == 2 and budget.peak == 4 * FRAME


def test_discard_gives_the_bytes_back_and_leaves_the_budget():
    budget = FrameBudget(4 * FRAME)
    gone, gone_metrics = queue(budget)
    other, _ = queue(budget)
    for n in range(3):
        gone.put(frame(n))
    assert gone.discard() == 3 and gone_metrics.totals["FramesUnfinished"] == 3 and budget.waiting == 0
    for n in range(4):
        other.put(frame(n))
    assert drain(other) == [0, 1, 2, 3]


def test_streams_putting_and_taking_at_once_never_exceed_the_budget_and_every_frame_is_accounted_for():
    budget = FrameBudget(5 * FRAME)
    streams = [queue(budget) for _ in range(4)]
    taken = [0] * len(streams)
    done = threading.Event()
    per_stream = 200

    def camera(q: FrameQueue, seed: int) -> None:
        rng = random.Random(seed)
        for n in range(per_stream):
            q.put(frame(n, live=rng.random() < 0.8))

    def inference() -> None:
        while not done.is_set() or any(q.waiting_bytes for q, _ in streams):
            for i, (q, _) in enumerate(streams):
                if isinstance(q.get(0), Frame):
                    taken[i] += 1
                assert budget.waiting <= budget.limit

    cameras = [threading.Thread(target=camera, args=(q, i)) for i, (q, _) in enumerate(streams)]
    consumer = threading.Thread(target=inference)
    consumer.start()
    for c in cameras:
        c.start()
    for c in cameras:
        c.join(120)
    done.set()
    consumer.join(120)
    assert not consumer.is_alive()
    assert budget.peak <= budget.limit and budget.waiting == 0
    for i, (_, metrics) in enumerate(streams):
        assert taken[i] + metrics.totals["FramesDropped"] == per_stream


# ----------------------------------------------------------------------------- the default budget


class _Metadata(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"Limits": {"CPU": 1, "Memory": 2048}}).encode() if self.path == "/v4/task" else b"{}"
        self.send_response(200 if self.path == "/v4/task" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_the_default_is_a_quarter_of_the_task_memory_from_the_ecs_task_metadata(tmp_path):
    """ECS task metadata endpoint v4, task metadata response: `Limits.Memory` is the task's memory in MiB
    (AWS docs: "Task metadata v4 JSON response")."""
    server = http.server.HTTPServer(("127.0.0.1", 0), _Metadata)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {"ECS_CONTAINER_METADATA_URI_V4": f"http://127.0.0.1:{server.server_port}/v4"}
        mb, why = default_mb(env, cgroup_files=(tmp_path / "none",))
    finally:
        server.shutdown()
    assert mb == 512 and "Limits.Memory" in why


def test_the_default_falls_back_to_the_cgroup_limit_then_to_a_safe_constant(tmp_path):
    limit = tmp_path / "memory.max"
    limit.write_text(f"{1024 * 1024 * 1024}\n")
    assert default_mb({}, cgroup_files=(limit,))[0] == 256
    limit.write_text("max\n")  # cgroup v2: no limit
    assert default_mb({}, cgroup_files=(limit,))[0] == FALLBACK_MB
    unset = {"ECS_CONTAINER_METADATA_URI_V4": "http://127.0.0.1:9/v4"}  # nothing listens: unreadable
    assert default_mb(unset, cgroup_files=(tmp_path / "none",))[0] == FALLBACK_MB


def test_the_setting_is_derived_when_unset_off_at_0_and_refused_below(tmp_path):
    video = tmp_path / "v.mp4"
    video.write_bytes(b"")
    base = {"KINASE_SOURCE": str(video), "KINASE_BUCKET": "b", "KINASE_QUEUE_URL": "q"}
    assert worker_settings.load(base).frame_memory_mb is None
    assert worker_settings.load({**base, "KINASE_FRAME_MEMORY_MB": "0"}).frame_memory_mb == 0
    assert FrameBudget.for_settings(worker_settings.load({**base, "KINASE_FRAME_MEMORY_MB": "64"})).limit == 64 << 20
    with pytest.raises(worker_settings.SettingsError, match="KINASE_FRAME_MEMORY_MB"):
        worker_settings.load({**base, "KINASE_FRAME_MEMORY_MB": "-1"})


def test_a_frame_the_reader_puts_after_the_stop_emptied_the_queue_is_counted_not_lost():
    """The reader may outlive the worker's 2 s wait for it at a stop and queue one more frame after discard():
    nothing takes frames any more, so it is counted under the stop's outcome, and read still equals the sum."""
    budget = FrameBudget(4 * FRAME)
    q, metrics = queue(budget)
    q.put(frame(0))
    assert q.discard("FramesReleased") == 1
    q.put(frame(1))
    q.put(frame(2, live=False))
    assert metrics.totals["FramesReleased"] == 3 and budget.waiting == 0 and q.get(0.01) is None


def test_at_the_live_cap_a_live_frame_gives_way_never_a_recorded_one():
    """A backlog caught up on after an outage (KINASE_OUTAGE=CATCHUP) is queued as recorded frames: the live
    cap bounds memory by dropping the oldest LIVE frame, never one of the backlog."""
    q = FrameQueue(8, Metrics("t"), threading.Event(), budget=FrameBudget(100 * FRAME), max_wait=60.0, live_cap=4)
    q.put(frame(0, live=False))
    for n in range(1, 5):
        q.put(frame(n))
    assert drain(q) == [0, 2, 3, 4] and q.metrics.totals["FramesDropped"] == 1
