"""One bound, in bytes, on the decoded frames a worker process holds (KINASE_FRAME_MEMORY_MB).

A decoded frame is width x height x 3 bytes: 25 MB at 4K, 6 MB at 1080p. Kinesis Video hands over a
fragment at a time, so a 2 s key-frame interval at 30 fps is a burst of 60 decoded frames, and a
per-stream cap counted in frames (worker.pipeline.LIVE_MAX_FRAMES) let one 4K camera take 1.5 GB of
a fleet task that has 2 GB for 8 streams. So every stream's queue of a worker (the one-off worker's
one, the fleet worker's several) shares one `FrameBudget`, and the camera no longer decides memory.
A frame counts from when it joins a queue until its pixels are freed, wherever that happens (after
its JPEG is encoded, when it is dropped or discarded): frames in inference and in delivery (up to a
dozen per stream in the upload sink) count too, since they take the same memory.

- a frame joins its queue only within the budget; over it, the oldest queued live frame of the
  stream with the most bytes queued gives way (dropped and counted as FramesDropped, as the live
  policy drops), again until the frame fits, so one 4K camera cannot crowd out the others;
- when no queued live frame could give way, a live frame is dropped itself (it never blocks its
  reader), and a recorded frame (a file, an S3 object, a stream's archive), which is never
  dropped, waits for room: its reader blocks, as it blocks on a full queue;
- a frame is always admitted when the worker holds no frame at all, so a budget smaller than one
  frame still lets frames through one at a time (the peak is then that one frame).

The default is a quarter of the task's memory: the ECS task metadata endpoint v4's `Limits.Memory`
(on ECS and Fargate, the task's memory in MiB), else the cgroup's memory limit (a container run
with `--memory`), else FALLBACK_MB, which fits the fleet task's 2 GiB (infra/naming.py
TASK_MEMORY_MIB). The other three quarters hold the model, the runtime and the frames in delivery.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import urllib.request
import weakref
from pathlib import Path

log = logging.getLogger("kinase.worker")

SHARE = 4  # the budget is the task's memory divided by this
FALLBACK_MB = 512  # when the task's memory cannot be read: a quarter of the fleet task's 2 GiB
METADATA_TIMEOUT = 1.0  # seconds; the endpoint is on the task's own link-local network
CGROUP_LIMITS = (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"))  # v2, v1
NO_LIMIT = 1 << 60  # cgroup v1 writes "no limit" as a number near 2**63
MB = 1 << 20
WAKE = 0.05  # seconds at most before a reader waiting for room sees the bytes a freed frame gave back


def task_memory_mb(env=None, cgroup_files=CGROUP_LIMITS) -> tuple[int | None, str]:
    """The task's memory in MiB and where it was read, or (None, why not)."""
    env = os.environ if env is None else env
    uri = env.get("ECS_CONTAINER_METADATA_URI_V4")
    if uri:
        try:
            with urllib.request.urlopen(f"{uri}/task", timeout=METADATA_TIMEOUT) as answer:
                memory = json.load(answer).get("Limits", {}).get("Memory")
            if memory:
                return int(memory), "the task metadata's Limits.Memory"
        except (OSError, ValueError) as exc:
            log.warning("task metadata unreadable (%s); trying the cgroup's memory limit", exc)
    for path in cgroup_files:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < NO_LIMIT:
            return int(text) // MB, f"the cgroup's {path.name}"
    return None, "no task metadata, no cgroup memory limit"


def default_mb(env=None, cgroup_files=CGROUP_LIMITS) -> tuple[int, str]:
    """A quarter of the task's memory, or FALLBACK_MB when it cannot be read; and how it was found."""
    memory, where = task_memory_mb(env, cgroup_files)
    if memory is None:
        return FALLBACK_MB, f"{FALLBACK_MB} MB ({where})"
    return max(1, memory // SHARE), f"1/{SHARE} of {memory} MiB ({where})"


class FrameBudget:
    """Bytes of decoded frames held by the worker whose queues share it (see the module docstring).

    The queues (worker.pipeline.FrameQueue) use `cond` as their own lock and condition, so admitting a
    frame to one queue can drop a frame from another without two locks to order. A queue offers:
    `waiting_bytes` (its queued frames), `has_live()` and `drop_oldest_live()`. A frame's bytes are given
    back by a finalizer on its pixels (weakref.finalize), which may run in any thread holding any lock:
    it takes only a lock of its own, and wakes waiting readers only when it can without waiting."""

    @classmethod
    def for_settings(cls, settings) -> FrameBudget:
        """The worker's budget: KINASE_FRAME_MEMORY_MB when set (0 = no bound), else derived from the task's memory."""
        from worker.settings import var

        if settings.frame_memory_mb is not None:
            mb, why = settings.frame_memory_mb, var("frame_memory_mb")
        else:
            mb, why = default_mb()
        if mb:
            log.info("frame memory: at most %d MB of decoded frames wait for inference, across all streams (%s)", mb, why)
        else:
            log.info("frame memory: no bound (%s=0): each live stream queues up to its frame cap", var("frame_memory_mb"))
        return cls(mb * MB)

    def __init__(self, limit: int = 0):
        self.limit = limit  # bytes; 0 = no bound
        self.cond = threading.Condition()  # re-entrant: a frame freed while it is held gives its bytes back
        self._count = threading.Lock()  # guards `waiting`; never held while taking another lock
        self.waiting = 0  # bytes of the frames admitted and not freed yet
        self.peak = 0  # the most bytes that waited at once: the worker's high-water mark
        self._queues: list = []

    def join(self, queue) -> None:
        with self.cond:
            self._queues.append(queue)

    def leave(self, queue) -> None:
        with self.cond:
            if queue in self._queues:
                self._queues.remove(queue)

    def admit(self, queue, image, live: bool, stop: threading.Event) -> bool:
        """With `cond` held: make room for a frame whose pixels are `image` (a numpy array), about to join `queue`,
        and count its bytes until the array is freed.

        False: a live frame that does not fit once every queued live frame that could give way has; it is not
        admitted (the caller drops it). A recorded frame waits for room until `stop` is set, then is admitted."""
        nbytes = image.nbytes
        if self.limit:
            while self.waiting and self.waiting + nbytes > self.limit:
                victim = max((q for q in self._queues if q.has_live()), key=lambda q: q.waiting_bytes, default=None)
                if victim is not None:
                    victim.drop_oldest_live()
                elif live:
                    return False
                elif stop.is_set():
                    break
                else:
                    self.cond.wait(WAKE)
        with self._count:
            self.waiting += nbytes
            self.peak = max(self.peak, self.waiting)
        weakref.finalize(image, self._freed, nbytes)
        return True

    def _freed(self, nbytes: int) -> None:
        with self._count:
            self.waiting -= nbytes
        if self.cond.acquire(blocking=False):  # else the waiting reader sees the room within WAKE
            try:
                self.cond.notify_all()
            finally:
                self.cond.release()
