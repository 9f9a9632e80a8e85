"""What a live stream's frames do while an outage blocks delivery (KINASE_OUTAGE).

`DROP`, the default, is the live policy: while an S3 or SQS outage blocks delivery, the frames that
arrive are dropped (FramesDropped) as when inference falls behind; latency stays bounded, and the
media of the outage is not processed.

`CATCHUP` holds the reader instead: while a write is failing (`WritePolicy.struggling`), a live frame
waits for room as a recorded one does, so the reader stops reading and GetMedia stops sending. Once
delivery is back, the reader goes on from where it stopped, in the stream's retention, and the
backlog is processed without drops until the frames are near live again. The backlog is bounded by
KINASE_MAX_LAG: frames further behind live than that are skipped and reported as one gap
(FramesGapped), so the worker never stays behind live without bound. It is meant for Kinesis Video
(a stream with retention); a source without server timestamps is live again as soon as the outage
ends.
"""

from __future__ import annotations

import time

from worker.frames import Frame
from worker.metrics import Metrics
from worker.retry import WritePolicy
from worker.settings import var

CAUGHT_UP = 3.0  # seconds behind live under which catching up ends (a frame's way through PutMedia and GetMedia)


def behind(frame: Frame) -> float | None:
    """Seconds between the frame's arrival in the stream (server clock) and now; None without a server timestamp."""
    if frame.server_time is None:
        return None
    offset = frame.frame_time - frame.fragment_time if frame.fragment_time is not None else 0.0
    return time.time() - (frame.server_time + offset)


class Outage:
    def __init__(self, policy: str, writes: WritePolicy, metrics: Metrics, max_lag: float):
        self.catchup = policy == "CATCHUP"
        self.writes, self.metrics, self.max_lag = writes, metrics, max_lag
        self._behind = False  # catching up: during an outage, and after it until the frames are near live
        self._skipped: dict | None = None  # the gap being skipped: first fragment, fragments, frames

    def holds(self, frame: Frame) -> bool:
        """Whether a live frame waits for room instead of being dropped (catch-up, during an outage and after it)."""
        if not self.catchup:
            return False
        if self.writes.struggling():
            self._behind = True
        elif self._behind:
            lag = behind(frame)
            self._behind = lag is not None and lag >= CAUGHT_UP
        return self._behind

    def skips(self, frame: Frame) -> bool:
        """Whether the reader skips this frame: catching up, it is more than the maximum lag behind live."""
        lag = behind(frame) if self.catchup and self._behind and self.max_lag else None
        if lag is None or lag <= self.max_lag:
            self.report(frame.fragment or "")
            return False
        if self._skipped is None:
            self._skipped = {"start": frame.fragment or "", "fragments": set(), "frames": 0}
        self._skipped["fragments"].add(frame.fragment)
        self._skipped["frames"] += 1
        return True

    def report(self, resumed_at: str = "") -> None:
        """Report the frames skipped so far as one gap (at the first frame processed again, or when reading ends)."""
        skipped, self._skipped = self._skipped, None
        if skipped:
            self.metrics.gap(
                skipped["start"],
                resumed_at,
                fragments=len(skipped["fragments"]),
                frames=skipped["frames"],
                reason=f"catching up after an outage, the backlog was more than {var('max_lag')}={self.max_lag:g}s behind live",
            )
